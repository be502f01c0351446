/**
 * The dialog of "Run as training job...": nodes, processes, GPUs, arguments and packages,
 * remembered per file (the browser's storage) so the next run of the same script starts from them.
 */
import { Widget } from '@lumino/widgets';

export interface IJobSettings {
  nodes: number;
  procs_per_node: number;
  gpus: string;
  args: string;
  packages: string;
}

export const DEFAULT_JOB: IJobSettings = { nodes: 1, procs_per_node: 1, gpus: '', args: '', packages: '' };

const STORAGE_PREFIX = 'kubestudio:job:';

export function rememberedJob(path: string, storage: Storage | null = window.localStorage): IJobSettings {
  try {
    const saved = storage?.getItem(STORAGE_PREFIX + path);
    return saved ? { ...DEFAULT_JOB, ...JSON.parse(saved) } : { ...DEFAULT_JOB };
  } catch {
    return { ...DEFAULT_JOB };
  }
}

export function rememberJob(path: string, settings: IJobSettings, storage: Storage | null = window.localStorage): void {
  try {
    storage?.setItem(STORAGE_PREFIX + path, JSON.stringify(settings));
  } catch {
    // storage full or off: the defaults are not remembered, the job still runs
  }
}

/** What is wrong with `settings` (field: message), empty when they can be sent. */
export function checkJob(settings: IJobSettings, maxGpus: number | null = null): { [field: string]: string } {
  const problems: { [field: string]: string } = {};
  for (const field of ['nodes', 'procs_per_node'] as const) {
    const value = settings[field];
    if (!Number.isInteger(value) || value < 1 || value > 1024) {
      problems[field] = `${field}: a whole number from 1 to 1024`;
    }
  }
  const gpus = settings.gpus.trim();
  if (gpus && !/^\d+(\([A-Za-z0-9._-]+\))?$/.test(gpus)) {
    problems.gpus = 'gpus: a count, or a count and a type, e.g. 1(A100)';
  } else if (gpus && maxGpus !== null && parseInt(gpus, 10) > maxGpus) {
    problems.gpus = `gpus: your profile and project allow at most ${maxGpus}`;
  }
  return problems;
}

function field(label: string, name: string, value: string, type = 'text', hint = ''): HTMLElement {
  const row = document.createElement('label');
  row.className = 'ks-Field';
  const caption = document.createElement('span');
  caption.textContent = label;
  const input = document.createElement('input');
  input.name = name;
  input.type = type;
  input.value = value;
  if (type === 'number') {
    input.min = '1';
    input.max = '1024';
  }
  input.placeholder = hint;
  row.append(caption, input);
  return row;
}

/** The dialog's body: its value is the settings as typed. */
export class JobDialogBody extends Widget {
  constructor(path: string, settings: IJobSettings) {
    super();
    this.addClass('ks-JobDialog');
    const what = document.createElement('p');
    what.textContent = `Runs ${path} as a job in your server's image, with your files at the same paths.`;
    this.node.append(
      what,
      field('Nodes', 'nodes', String(settings.nodes), 'number'),
      field('Processes per node', 'procs_per_node', String(settings.procs_per_node), 'number'),
      field('GPUs per node', 'gpus', settings.gpus, 'text', 'none, 1, or 1(A100)'),
      field('Arguments', 'args', settings.args, 'text', '--epochs 3 --lr 0.01'),
      field('Packages', 'packages', settings.packages, 'text', 'installed first, e.g. scikit-learn')
    );
  }

  getValue(): IJobSettings {
    const value = (name: string) => (this.node.querySelector(`input[name="${name}"]`) as HTMLInputElement).value;
    return {
      nodes: Number(value('nodes')),
      procs_per_node: Number(value('procs_per_node')),
      gpus: value('gpus').trim(),
      args: value('args'),
      packages: value('packages')
    };
  }
}
