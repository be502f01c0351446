/**
 * The KubeStudio panel: the user's builds, jobs, servings and boards with their status, a
 * progress bar for builds, and each item's verbs (logs, cancel, stop, rerun, open, copy URL, try).
 * It draws what the store holds; it asks nothing itself.
 */
import { Widget } from '@lumino/widgets';

import { IItem, IKind, KINDS, VERB_LABELS } from './kinds';
import { ItemsStore } from './store';

export interface ISidebarActions {
  verb(item: IItem, verb: string): void;
  predict(item: IItem, body: string): Promise<string>;
}

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text) {
    node.textContent = text;
  }
  return node;
}

export class KubeStudioSidebar extends Widget {
  constructor(store: ItemsStore, actions: ISidebarActions) {
    super();
    this.id = 'kubestudio-sidebar';
    this.title.caption = 'KubeStudio';
    this.addClass('ks-Sidebar');
    this._store = store;
    this._actions = actions;
    store.changed.connect(() => this.render(), this);
    this.render();
  }

  /** Which services the hub runs: a kind whose service is missing is not shown. */
  setAvailable(kinds: string[]): void {
    this._available = new Set(kinds);
    this.render();
  }

  render(): void {
    const open = new Set(
      Array.from(this.node.querySelectorAll<HTMLElement>('.ks-Try[data-open="true"]')).map(n => n.dataset.key)
    );
    const drafts = new Map(
      Array.from(this.node.querySelectorAll<HTMLTextAreaElement>('.ks-Try textarea')).map(n => [
        n.dataset.key,
        n.value
      ])
    );
    // a redraw while the user types in a try box keeps the caret where it was, and the panel
    // where it was scrolled to
    const active = document.activeElement;
    const typing =
      active instanceof HTMLTextAreaElement && this.node.contains(active)
        ? { key: active.dataset.key, start: active.selectionStart, end: active.selectionEnd }
        : null;
    const scrolled = this.node.scrollTop;
    this.node.replaceChildren();
    const header = element('div', 'ks-Sidebar-header', 'KubeStudio');
    this.node.append(header);
    const errors = Object.entries(this._store.errors);
    for (const [service, message] of errors) {
      this.node.append(element('div', 'ks-Sidebar-error', `${service}: ${message}`));
    }
    for (const kind of KINDS) {
      if (this._available && !this._available.has(kind.name)) {
        continue;
      }
      this.node.append(this._section(kind, open, drafts));
    }
    this.node.scrollTop = scrolled;
    if (typing) {
      const again = Array.from(this.node.querySelectorAll<HTMLTextAreaElement>('.ks-Try textarea')).find(
        n => n.dataset.key === typing.key
      );
      again?.focus();
      again?.setSelectionRange(typing.start, typing.end);
    }
  }

  private _section(kind: IKind, open: Set<string | undefined>, drafts: Map<string | undefined, string>): HTMLElement {
    const section = element('section', 'ks-Section');
    section.dataset.kind = kind.name;
    const items = this._store.byKind(kind.name);
    section.append(element('h3', 'ks-Section-title', `${kind.title} (${items.length})`));
    if (!items.length) {
      section.append(element('div', 'ks-Empty', `No ${kind.noun}s yet.`));
    }
    for (const item of items) {
      section.append(this._row(kind, item, open, drafts));
    }
    return section;
  }

  private _row(
    kind: IKind,
    item: IItem,
    open: Set<string | undefined>,
    drafts: Map<string | undefined, string>
  ): HTMLElement {
    const key = `${item.kind}/${item.id}`;
    const row = element('div', 'ks-Item');
    row.dataset.key = key;
    row.dataset.status = item.status;
    const top = element('div', 'ks-Item-top');
    top.append(element('span', 'ks-Item-name', item.name), element('span', `ks-Status ks-Status-${item.status}`, item.status));
    row.append(top);
    if (item.message) {
      row.append(element('div', 'ks-Item-message', item.message));
    }
    if (item.progress && item.changing) {
      const bar = element('progress', 'ks-Progress');
      bar.max = item.progress.steps;
      bar.value = item.progress.step;
      bar.title = `step ${item.progress.step} of ${item.progress.steps}`;
      row.append(bar);
    }
    const buttons = element('div', 'ks-Item-verbs');
    for (const verb of item.verbs) {
      if ((verb === 'cancel' && !item.changing) || (verb === 'stop' && item.status === 'stopped')) {
        continue;
      }
      const button = element('button', `ks-Verb ks-Verb-${verb}`, VERB_LABELS[verb] || verb);
      button.onclick = () => this._actions.verb(item, verb);
      buttons.append(button);
    }
    if (item.url && kind.open) {
      const link = element('a', 'ks-Verb ks-Open', kind.open);
      link.href = item.url;
      link.target = '_blank';
      link.rel = 'noopener';
      buttons.append(link);
      const copy = element('button', 'ks-Verb ks-Copy', 'Copy URL');
      copy.onclick = () => {
        const absolute = new URL(item.url as string, window.location.href).href;
        void navigator.clipboard?.writeText(absolute);
        copy.textContent = 'Copied';
        copy.dataset.copied = absolute;
      };
      buttons.append(copy);
    }
    row.append(buttons);
    if (kind.tryIt && item.status === 'ready') {
      row.append(this._tryBox(item, key, open.has(key), drafts.get(key)));
    }
    return row;
  }

  private _tryBox(item: IItem, key: string, isOpen: boolean, draft: string | undefined): HTMLElement {
    const box = element('details', 'ks-Try');
    box.dataset.key = key;
    box.open = isOpen;
    box.dataset.open = String(isOpen);
    box.ontoggle = () => (box.dataset.open = String(box.open));
    box.append(element('summary', '', 'Try it'));
    const input = element('textarea', 'ks-Try-input');
    input.dataset.key = key;
    input.rows = 3;
    input.value = draft ?? '{"instances": [[5.1, 3.5, 1.4, 0.2]]}';
    const send = element('button', 'ks-Verb ks-Try-send', 'Predict');
    const output = element('pre', 'ks-Try-output', this._outputs.get(key) || '');
    send.onclick = async () => {
      output.textContent = '...';
      output.textContent = await this._actions.predict(item, input.value);
      this._outputs.set(key, output.textContent);
    };
    box.append(input, send, output);
    return box;
  }

  private _store: ItemsStore;
  private _actions: ISidebarActions;
  private _available: Set<string> | null = null;
  private _outputs = new Map<string, string>();
}
