/**
 * A log in the main area, followed live: the replay first, then each new line as it comes, and
 * the final status. Closing the tab stops following.
 */
import { Widget } from '@lumino/widgets';

import { followEvents } from './api';
import { IItem } from './kinds';

export class LogViewer extends Widget {
  constructor(item: IItem) {
    super();
    this.id = `kubestudio-log-${item.kind}-${item.id}`;
    this.title.label = `${item.name} log`;
    this.title.closable = true;
    this.addClass('ks-LogViewer');
    this._status = document.createElement('div');
    this._status.className = 'ks-LogViewer-status';
    this._status.textContent = `${item.kind} ${item.name}: following the log...`;
    this._pre = document.createElement('pre');
    this.node.append(this._status, this._pre);
    void this._follow(item);
  }

  dispose(): void {
    this._abort.abort();
    super.dispose();
  }

  get text(): string {
    return this._pre.textContent || '';
  }

  private _append(lines: string[]): void {
    if (!lines.length) {
      return;
    }
    const atEnd = this.node.scrollTop + this.node.clientHeight >= this.node.scrollHeight - 4;
    this._pre.append(document.createTextNode(lines.join('\n') + '\n'));
    if (atEnd) {
      this.node.scrollTop = this.node.scrollHeight;
    }
  }

  private async _follow(item: IItem): Promise<void> {
    const path = `items/${item.kind}/${encodeURIComponent(item.id)}/logs`;
    try {
      await followEvents(
        path,
        event => {
          switch (event.type) {
            case 'log':
              this._append([event.line]);
              break;
            case 'lines':
              this._append(event.lines);
              break;
            case 'progress':
              if (event.steps) {
                this._status.textContent = `${item.name}: step ${event.step} of ${event.steps}`;
              }
              break;
            case 'status':
              this._append([`--- ${event.status}${event.message ? ': ' + event.message : ''}`]);
              break;
            case 'result':
              this._status.textContent = `${item.name}: ${event.status}${event.message ? ' (' + event.message + ')' : ''}`;
              this._status.dataset.status = event.status;
              break;
          }
        },
        this._abort.signal
      );
      if (!this._status.dataset.status) {
        this._status.textContent = `${item.name}: the log ended`;
        this._status.dataset.status = 'ended';
      }
    } catch (error) {
      if (!this._abort.signal.aborted) {
        this._status.textContent = `${item.name}: ${(error as Error).message}`;
        this._status.dataset.status = 'error';
      }
    }
  }

  private _abort = new AbortController();
  private _pre: HTMLPreElement;
  private _status: HTMLDivElement;
}
