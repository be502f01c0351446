/**
 * The kinds of items the sidebar lists, one entry each: its title, the words for its verbs, and
 * what a finished one says in a notification. The server's twin is KINDS in
 * kubestudio/extensions/bridge.py; pipelines join both tables next.
 */

export interface IItem {
  kind: string;
  id: string;
  name: string;
  status: string;
  message: string;
  created: string | null;
  finished: string | null;
  changing: boolean;
  progress: { step: number; steps: number } | null;
  url: string | null;
  verbs: string[];
  detail: { [key: string]: unknown };
}

export interface IKind {
  /** the server's name of the kind */
  name: string;
  /** the sidebar's section */
  title: string;
  /** one of them, in messages */
  noun: string;
  /** statuses that end it, and whether each is good news */
  endings: { [status: string]: boolean };
  /** what opening its URL means (a board opens in a new tab) */
  open?: string;
  /** a serving: the try-it box */
  tryIt?: boolean;
}

export const KINDS: IKind[] = [
  {
    name: 'build',
    title: 'Image builds',
    noun: 'build',
    endings: { succeeded: true, exists: true, failed: false, cancelled: false }
  },
  {
    name: 'job',
    title: 'Jobs',
    noun: 'job',
    endings: { succeeded: true, failed: false, cancelled: false }
  },
  {
    name: 'experiment',
    title: 'Experiments',
    noun: 'experiment',
    endings: { succeeded: true, failed: false, cancelled: false }
  },
  {
    name: 'serving',
    title: 'Servings',
    noun: 'serving',
    endings: { ready: true, failed: false },
    open: 'Open',
    tryIt: true
  },
  {
    name: 'board',
    title: 'TensorBoards',
    noun: 'board',
    endings: { running: true, failed: false },
    open: 'Open board'
  }
];

export function kindOf(name: string): IKind | undefined {
  return KINDS.find(kind => kind.name === name);
}

export const VERB_LABELS: { [verb: string]: string } = {
  logs: 'Logs',
  cancel: 'Cancel',
  stop: 'Stop',
  rerun: 'Rerun'
};
