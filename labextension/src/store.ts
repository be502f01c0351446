/**
 * The user's items, from one request held open until something changes (the server's shared
 * poll answers it): never a request per row. Items that end while the user is elsewhere are
 * passed to `ended` (notifications).
 *
 * Only one tab of a server holds that request: the tabs elect one with a Web Lock and it passes
 * each answer to the others over a BroadcastChannel. A browser keeps at most 6 connections to a
 * host over HTTP/1.1; a held request per tab would starve JupyterLab's own requests from the 6th
 * tab on. When the leading tab closes, its lock passes to another.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { IItem, kindOf } from './kinds';

export interface ISnapshot {
  version: string;
  items: IItem[];
  errors: { [service: string]: string };
}

export type Fetcher = (after: string) => Promise<ISnapshot>;

/** What the tabs of one server share: a lock that elects the one that asks, a channel for the answers. */
export interface ITabs {
  request(name: string, leading: () => Promise<void>): Promise<void>;
  channel: { postMessage(message: unknown): void; onmessage: ((event: { data: any }) => void) | null };
}

/** The browser's own Web Locks and BroadcastChannel, where it has them (else every tab asks). */
export function browserTabs(name: string): ITabs | null {
  const locks = (globalThis.navigator as any)?.locks;
  if (!locks || typeof BroadcastChannel === 'undefined') {
    return null;
  }
  return { request: (lock, leading) => locks.request(lock, leading), channel: new BroadcastChannel(name) as any };
}

export class ItemsStore {
  constructor(fetcher: Fetcher, retrySeconds = 10, tabs: ITabs | null = null, name = 'kubestudio-items') {
    this._fetch = fetcher;
    this._retry = retrySeconds * 1000;
    this._tabs = tabs;
    this._name = name;
  }

  /** Whether this tab is the one that asks the server (the others hear its answers). */
  get leading(): boolean {
    return this._leading;
  }

  get items(): IItem[] {
    return this._items;
  }

  get errors(): { [service: string]: string } {
    return this._errors;
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** An item that went from changing to an ending, after the first listing. */
  get ended(): ISignal<this, IItem> {
    return this._ended;
  }

  get running(): boolean {
    return this._running;
  }

  /** Take a snapshot (the poll's own, or an action's answer) and tell the listeners. */
  apply(snapshot: ISnapshot): void {
    const before = this._byKey;
    this._byKey = new Map(snapshot.items.map(item => [`${item.kind}/${item.id}`, item]));
    if (this._seen) {
      for (const [key, item] of this._byKey) {
        const previous = before.get(key);
        const kind = kindOf(item.kind);
        if (kind && previous && previous.status !== item.status && item.status in kind.endings) {
          this._ended.emit(item);
        }
      }
    }
    this._seen = true;
    this._last = snapshot;
    this._version = snapshot.version;
    this._items = snapshot.items;
    this._errors = snapshot.errors || {};
    this._changed.emit();
  }

  /** Add or replace one item now (what an action answered), ahead of the next listing. */
  upsert(item: IItem): void {
    const items = this._items.filter(i => !(i.kind === item.kind && i.id === item.id));
    this._byKey.set(`${item.kind}/${item.id}`, item);
    this._items = [item, ...items];
    this._changed.emit();
  }

  byKind(kind: string): IItem[] {
    return this._items.filter(item => item.kind === kind);
  }

  /** Follow the items until `stop()`; each answer comes when something changed. */
  async start(): Promise<void> {
    if (this._running) {
      return;
    }
    this._running = true;
    const tabs = this._tabs;
    if (!tabs) {
      return this._ask();
    }
    tabs.channel.onmessage = event => {
      const message = event.data;
      if (this._leading && message?.type === 'ask' && this._seen) {
        tabs.channel.postMessage({ type: 'snapshot', snapshot: this._last });
      } else if (!this._leading && message?.type === 'snapshot' && message.snapshot.version !== this._version) {
        this.apply(message.snapshot);
      }
    };
    tabs.channel.postMessage({ type: 'ask' }); // what the leading tab has, at once
    await tabs.request(this._name, async () => {
      this._leading = true;
      await this._ask();
      this._leading = false;
    });
  }

  stop(): void {
    this._running = false;
  }

  private async _ask(): Promise<void> {
    while (this._running) {
      try {
        const snapshot = await this._fetch(this._version);
        this.apply(snapshot);
        this._tabs?.channel.postMessage({ type: 'snapshot', snapshot });
      } catch (error) {
        if (!this._running) {
          return;
        }
        await new Promise(resolve => setTimeout(resolve, this._retry));
      }
    }
  }

  private _fetch: Fetcher;
  private _retry: number;
  private _tabs: ITabs | null;
  private _name: string;
  private _leading = false;
  private _last: ISnapshot | null = null;
  private _running = false;
  private _seen = false;
  private _version = '';
  private _items: IItem[] = [];
  private _errors: { [service: string]: string } = {};
  private _byKey = new Map<string, IItem>();
  private _changed = new Signal<this, void>(this);
  private _ended = new Signal<this, IItem>(this);
}
