import { IItem } from '../kinds';
import { KubeStudioSidebar } from '../sidebar';
import { ItemsStore } from '../store';

function item(fields: Partial<IItem>): IItem {
  return {
    kind: 'job',
    id: 'a',
    name: 'train-1',
    status: 'running',
    message: '',
    created: null,
    finished: null,
    changing: true,
    progress: null,
    url: null,
    verbs: ['cancel', 'rerun', 'logs'],
    detail: {},
    ...fields
  };
}

describe('the KubeStudio panel', () => {
  const store = () => new ItemsStore(() => Promise.reject(new Error('unused')));

  it('draws one section per kind the hub runs, and each item with its verbs', () => {
    const items = store();
    const verbs: string[] = [];
    const panel = new KubeStudioSidebar(items, { verb: (i, v) => verbs.push(`${i.id}:${v}`), predict: async () => '' });
    panel.setAvailable(['build', 'job']);
    items.apply({
      version: '1',
      errors: {},
      items: [
        item({}),
        item({ kind: 'build', id: 'b', name: 'trainer:abc', progress: { step: 2, steps: 5 }, verbs: ['cancel', 'logs'] }),
        item({ id: 'c', name: 'old', status: 'succeeded', changing: false })
      ]
    });
    const sections = Array.from(panel.node.querySelectorAll('section')).map(s => (s as HTMLElement).dataset.kind);
    expect(sections).toEqual(['build', 'job']);
    const bar = panel.node.querySelector('.ks-Item[data-key="build/b"] progress') as HTMLProgressElement;
    expect([bar.value, bar.max]).toEqual([2, 5]);
    // a finished job has no cancel; a running one has
    expect(panel.node.querySelector('.ks-Item[data-key="job/c"] .ks-Verb-cancel')).toBeNull();
    (panel.node.querySelector('.ks-Item[data-key="job/a"] .ks-Verb-cancel') as HTMLButtonElement).click();
    (panel.node.querySelector('.ks-Item[data-key="job/c"] .ks-Verb-rerun') as HTMLButtonElement).click();
    expect(verbs).toEqual(['a:cancel', 'c:rerun']);
  });

  it("keeps a try box's request and answer across redraws", async () => {
    const items = store();
    const panel = new KubeStudioSidebar(items, { verb: () => undefined, predict: async (_, body) => `sent ${body}` });
    const serving = item({
      kind: 'serving',
      id: 's',
      name: 'iris',
      status: 'ready',
      changing: false,
      url: '/services/jobs/serve/lara/iris/',
      verbs: ['stop', 'logs']
    });
    items.apply({ version: '1', errors: {}, items: [serving] });
    const box = () => panel.node.querySelector('.ks-Item[data-key="serving/s"] .ks-Try') as HTMLDetailsElement;
    box().open = true;
    box().dataset.open = 'true';
    (box().querySelector('textarea') as HTMLTextAreaElement).value = '{"instances": [[1, 2, 3, 4]]}';
    (box().querySelector('.ks-Try-send') as HTMLButtonElement).click();
    await new Promise(resolve => setTimeout(resolve, 0));
    items.apply({ version: '2', errors: { images: 'the image service is not reachable' }, items: [serving] });
    expect(box().open).toBe(true);
    expect((box().querySelector('textarea') as HTMLTextAreaElement).value).toBe('{"instances": [[1, 2, 3, 4]]}');
    expect(box().querySelector('.ks-Try-output')?.textContent).toBe('sent {"instances": [[1, 2, 3, 4]]}');
    expect(panel.node.querySelector('.ks-Sidebar-error')?.textContent).toBe('images: the image service is not reachable');
    expect(panel.node.querySelector('.ks-Open')?.getAttribute('target')).toBe('_blank');
  });

  it('keeps the caret of a try box being typed in across a redraw', () => {
    const items = store();
    const panel = new KubeStudioSidebar(items, { verb: () => undefined, predict: async () => '' });
    document.body.append(panel.node);
    const serving = item({ kind: 'serving', id: 's', name: 'iris', status: 'ready', changing: false, verbs: ['stop'] });
    items.apply({ version: '1', errors: {}, items: [serving] });
    const textarea = () => panel.node.querySelector('.ks-Try textarea') as HTMLTextAreaElement;
    textarea().focus();
    textarea().setSelectionRange(3, 7);
    items.apply({ version: '2', errors: {}, items: [{ ...serving, message: 'a new replica' }] });
    expect(document.activeElement).toBe(textarea());
    expect([textarea().selectionStart, textarea().selectionEnd]).toEqual([3, 7]);
    panel.node.remove();
  });
});
