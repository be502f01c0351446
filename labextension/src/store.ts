/**
 * The user's items, from one request held open until something changes (the server's shared
 * poll answers every tab): never a request per row. Items that end while the user is elsewhere
 * are passed to `ended` (notifications).
 */
import { ISignal, Signal } from '@lumino/signaling';

import { IItem, kindOf } from './kinds';

export interface ISnapshot {
  version: string;
  items: IItem[];
  errors: { [service: string]: string };
}

export type Fetcher = (after: string) => Promise<ISnapshot>;

export class ItemsStore {
  constructor(fetcher: Fetcher, retrySeconds = 10) {
    this._fetch = fetcher;
    this._retry = retrySeconds * 1000;
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
    while (this._running) {
      try {
        this.apply(await this._fetch(this._version));
      } catch (error) {
        if (!this._running) {
          return;
        }
        await new Promise(resolve => setTimeout(resolve, this._retry));
      }
    }
  }

  stop(): void {
    this._running = false;
  }

  private _fetch: Fetcher;
  private _retry: number;
  private _running = false;
  private _seen = false;
  private _version = '';
  private _items: IItem[] = [];
  private _errors: { [service: string]: string } = {};
  private _byKey = new Map<string, IItem>();
  private _changed = new Signal<this, void>(this);
  private _ended = new Signal<this, IItem>(this);
}
