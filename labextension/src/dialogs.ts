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

/** What the jobs service says one job of the user may hold (its GET api/limits). */
export interface ILimits {
  projects: { [name: string]: { max_gpus: number | null } };
  machine_gpus: { [type: string]: number } | null;
}

/** The most GPUs one job may hold in all (null: no limit known) and why, in the user's words. */
export interface IGpuLimit {
  total: number | null;
  why: string;
}

/** The GPU limit of a job in `project`: the project's quota per user and the machine's GPUs. */
export function gpuLimit(limits: ILimits | null, project = 'public'): IGpuLimit {
  if (!limits) {
    return { total: null, why: '' };
  }
  const reasons: string[] = [];
  let total: number | null = null;
  const quota = limits.projects[project]?.max_gpus;
  if (quota !== undefined && quota !== null) {
    total = quota;
    reasons.push(`project ${project} allows ${quota} per user`);
  }
  if (limits.machine_gpus) {
    const types = Object.entries(limits.machine_gpus);
    const count = types.reduce((sum, [, n]) => sum + n, 0);
    total = total === null ? count : Math.min(total, count);
    reasons.push(
      count ? `this machine has ${types.map(([type, n]) => `${n} × ${type}`).join(', ')}` : 'this machine has none'
    );
  }
  if (total === null) {
    return { total, why: '' };
  }
  if (total === 0) {
    return { total, why: `no GPUs (${reasons.join('; ')})` };
  }
  return { total, why: `at most ${total} GPU${total === 1 ? '' : 's'} in all (${reasons.join('; ')})` };
}

/** What is wrong with `settings` (field: message), empty when they can be sent. */
export function checkJob(settings: IJobSettings, limit: IGpuLimit | null = null): { [field: string]: string } {
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
  } else if (gpus && limit && limit.total !== null && !problems.nodes) {
    const asked = parseInt(gpus, 10) * settings.nodes;
    if (asked > limit.total) {
      problems.gpus = `gpus: ${asked} asked (${parseInt(gpus, 10)} per node × ${settings.nodes} nodes); ${limit.why}`;
    }
  }
  return problems;
}

function field(label: string, name: string, value: string, type = 'text', hint = '', note = ''): HTMLElement {
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
  if (note) {
    const small = document.createElement('small');
    small.className = 'ks-FieldNote';
    small.textContent = note;
    row.append(small);
  }
  return row;
}

/** The dialog's body: its value is the settings as typed. */
export class JobDialogBody extends Widget {
  constructor(path: string, settings: IJobSettings, limit: IGpuLimit | null = null) {
    super();
    this.addClass('ks-JobDialog');
    const what = document.createElement('p');
    what.textContent = `Runs ${path} as a job in your server's image, with your files at the same paths.`;
    this.node.append(
      what,
      field('Nodes', 'nodes', String(settings.nodes), 'number'),
      field('Processes per node', 'procs_per_node', String(settings.procs_per_node), 'number'),
      field(
        'GPUs per node',
        'gpus',
        settings.gpus,
        'text',
        limit?.total === 0 ? 'none' : 'none, 1, or 1(A100)',
        limit?.why ? limit.why.charAt(0).toUpperCase() + limit.why.slice(1) : ''
      ),
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
