import { IItem } from '../kinds';
import { ISnapshot, ItemsStore } from '../store';

function item(kind: string, id: string, status: string, changing = false): IItem {
  return {
    kind,
    id,
    name: `${kind}-${id}`,
    status,
    message: '',
    created: null,
    finished: null,
    changing,
    progress: null,
    url: null,
    verbs: [],
    detail: {}
  };
}

function snapshot(version: string, ...items: IItem[]): ISnapshot {
  return { version, items, errors: {} };
}

describe('ItemsStore', () => {
  it('tells of an item that ends, not of what the first listing finds ended', () => {
    const store = new ItemsStore(() => Promise.reject(new Error('unused')));
    const ended: IItem[] = [];
    store.ended.connect((_, i) => ended.push(i));
    store.apply(snapshot('1', item('job', 'a', 'failed'), item('build', 'b', 'running', true)));
    expect(ended).toEqual([]);
    store.apply(snapshot('2', item('job', 'a', 'failed'), item('build', 'b', 'succeeded')));
    expect(ended.map(i => `${i.kind}/${i.id}:${i.status}`)).toEqual(['build/b:succeeded']);
    // a status that is no ending (queued -> running) says nothing
    store.apply(snapshot('3', item('job', 'c', 'queued', true)));
    store.apply(snapshot('4', item('job', 'c', 'running', true)));
    expect(ended.length).toBe(1);
  });

  it('asks with the version it has, and each answer replaces the list', async () => {
    const asked: string[] = [];
    const answers = [snapshot('v1', item('job', 'a', 'running', true)), snapshot('v2', item('job', 'a', 'succeeded'))];
    let store: ItemsStore;
    const fetcher = async (after: string) => {
      asked.push(after);
      const next = answers.shift();
      if (!next) {
        store.stop();
        throw new Error('no more');
      }
      return next;
    };
    store = new ItemsStore(fetcher, 0);
    const changes: number[] = [];
    store.changed.connect(() => changes.push(store.items.length));
    await store.start();
    expect(asked).toEqual(['', 'v1', 'v2']);
    expect(store.items[0].status).toBe('succeeded');
    expect(changes).toEqual([1, 1]);
  });

  it('waits before asking again after an error, and keeps what it had', async () => {
    let calls = 0;
    let store: ItemsStore;
    const fetcher = async () => {
      calls += 1;
      if (calls === 1) {
        return snapshot('v1', item('board', 'x', 'running'));
      }
      if (calls === 2) {
        throw new Error('server restarting');
      }
      store.stop();
      throw new Error('done');
    };
    store = new ItemsStore(fetcher, 0.05);
    const started = Date.now();
    await store.start();
    expect(calls).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(store.byKind('board').map(i => i.id)).toEqual(['x']);
  });

  it('shows an action at once, ahead of the next listing', () => {
    const store = new ItemsStore(() => Promise.reject(new Error('unused')));
    store.apply(snapshot('1', item('job', 'a', 'succeeded')));
    store.upsert(item('job', 'b', 'queued', true));
    store.upsert(item('job', 'b', 'running', true));
    expect(store.byKind('job').map(i => `${i.id}:${i.status}`)).toEqual(['b:running', 'a:succeeded']);
  });
});

/** Tabs of one server in one test: a lock granted in turn, a channel that reaches the other tabs. */
class FakeTabs {
  private holders: Array<() => void> = [];
  private busy = false;
  readonly channels: Array<{ postMessage(m: unknown): void; onmessage: ((e: { data: any }) => void) | null }> = [];

  tab() {
    const channel = {
      onmessage: null as ((e: { data: any }) => void) | null,
      postMessage: (message: unknown) => {
        for (const other of this.channels) {
          if (other !== channel) {
            other.onmessage?.({ data: JSON.parse(JSON.stringify(message)) });
          }
        }
      }
    };
    this.channels.push(channel);
    return {
      channel,
      request: async (_name: string, leading: () => Promise<void>) => {
        while (this.busy) {
          await new Promise<void>(resolve => this.holders.push(resolve));
        }
        this.busy = true;
        try {
          await leading();
        } finally {
          this.busy = false;
          this.holders.shift()?.();
        }
      }
    };
  }
}

describe('ItemsStore across tabs', () => {
  it('lets one tab ask, the others hear its answers, and another take over when it stops', async () => {
    const tabs = new FakeTabs();
    const asked: string[] = [];
    let next = 1;
    let release: () => void = () => undefined;
    const fetcher = (who: string) => async (after: string) => {
      asked.push(`${who}:${after}`);
      if (after) {
        await new Promise<void>(resolve => (release = resolve)); // held until something changes
      }
      const version = `v${next++}`;
      return snapshot(version, item('job', 'a', version === 'v1' ? 'running' : 'succeeded', version === 'v1'));
    };
    const first = new ItemsStore(fetcher('first'), 0, tabs.tab());
    const second = new ItemsStore(fetcher('second'), 0, tabs.tab());
    const ended: string[] = [];
    second.ended.connect((_, i) => ended.push(i.status));
    void first.start();
    void second.start();
    await new Promise(resolve => setTimeout(resolve, 10));
    expect(first.leading).toBe(true);
    expect(second.leading).toBe(false);
    expect(second.items[0].status).toBe('running'); // heard, not asked
    release();
    await new Promise(resolve => setTimeout(resolve, 10));
    expect(second.items[0].status).toBe('succeeded');
    expect(ended).toEqual(['succeeded']);
    expect(asked.filter(a => a.startsWith('second'))).toEqual([]);
    first.stop();
    release(); // the leader's held request ends; its lock passes to the other tab
    await new Promise(resolve => setTimeout(resolve, 10));
    expect(second.leading).toBe(true);
    expect(asked.filter(a => a.startsWith('second')).length).toBeGreaterThan(0);
    second.stop();
    release();
  });
});
