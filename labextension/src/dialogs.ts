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

/** The dialog of "Tune...": what to search, what the script reports, how many trials. */
export interface ITuneSettings {
  metric: string;
  direction: string;
  space: string;
  max_trials: number;
  parallel_trials: number;
  early_stopping: string;
}

export const DEFAULT_TUNE: ITuneSettings = {
  metric: 'val_acc',
  direction: 'maximize',
  space: 'lr: {type: loguniform, low: 0.0001, high: 0.1}\nbs: {type: choice, values: [32, 64]}\n',
  max_trials: 10,
  parallel_trials: 2,
  early_stopping: 'none'
};

const TUNE_PREFIX = 'kubestudio:tune:';

export function rememberedTune(path: string, storage: Storage | null = window.localStorage): ITuneSettings {
  try {
    const saved = storage?.getItem(TUNE_PREFIX + path);
    return saved ? { ...DEFAULT_TUNE, ...JSON.parse(saved) } : { ...DEFAULT_TUNE };
  } catch {
    return { ...DEFAULT_TUNE };
  }
}

export function rememberTune(path: string, settings: ITuneSettings, storage: Storage | null = window.localStorage): void {
  try {
    storage?.setItem(TUNE_PREFIX + path, JSON.stringify(settings));
  } catch {
    // not remembered; the experiment still runs
  }
}

/** What is wrong with `settings` (field: message); the service checks the space itself. */
export function checkTune(settings: ITuneSettings): { [field: string]: string } {
  const problems: { [field: string]: string } = {};
  if (!/^[A-Za-z_][A-Za-z0-9_.\-/]{0,62}$/.test(settings.metric.trim())) {
    problems.metric = "metric: the name the script reports, e.g. val_acc (letters, digits, '_', '.', '-', '/')";
  }
  if (!settings.space.trim()) {
    problems.space = 'space: give at least one parameter, e.g. lr: {type: loguniform, low: 0.0001, high: 0.1}';
  }
  for (const field of ['max_trials', 'parallel_trials'] as const) {
    const value = settings[field];
    if (!Number.isInteger(value) || value < 1 || value > 1000) {
      problems[field] = `${field}: a whole number from 1 to 1000`;
    }
  }
  if (!problems.max_trials && !problems.parallel_trials && settings.parallel_trials > settings.max_trials) {
    problems.parallel_trials = `parallel_trials: ${settings.parallel_trials} is more than max_trials (${settings.max_trials})`;
  }
  return problems;
}

function choice(label: string, name: string, value: string, options: string[]): HTMLElement {
  const row = document.createElement('label');
  row.className = 'ks-Field';
  const caption = document.createElement('span');
  caption.textContent = label;
  const select = document.createElement('select');
  select.name = name;
  for (const option of options) {
    const item = document.createElement('option');
    item.value = item.textContent = option;
    select.append(item);
  }
  select.value = value;
  row.append(caption, select);
  return row;
}

/** The body of the Tune dialog: its value is the settings as typed. */
export class TuneDialogBody extends Widget {
  constructor(path: string, settings: ITuneSettings) {
    super();
    this.addClass('ks-JobDialog');
    const what = document.createElement('p');
    what.textContent =
      `Runs ${path} once per trial with the parameters as --name=value arguments (and in ` +
      'kubestudio.trial.params()); the script reports the metric with kubestudio.trial.report(...) or prints name=value.';
    const space = document.createElement('label');
    space.className = 'ks-Field ks-Space';
    const caption = document.createElement('span');
    caption.textContent = 'Space (YAML; NNI’s form too)';
    const text = document.createElement('textarea');
    text.name = 'space';
    text.rows = 4;
    text.value = settings.space;
    space.append(caption, text);
    this.node.append(
      what,
      field('Metric the script reports', 'metric', settings.metric),
      choice('Direction', 'direction', settings.direction, ['maximize', 'minimize']),
      space,
      field('Trials', 'max_trials', String(settings.max_trials), 'number'),
      field('At once', 'parallel_trials', String(settings.parallel_trials), 'number'),
      choice('Stop bad trials early', 'early_stopping', settings.early_stopping, ['none', 'median', 'hyperband'])
    );
  }

  getValue(): ITuneSettings {
    const value = (name: string) =>
      (this.node.querySelector(`[name="${name}"]`) as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement).value;
    return {
      metric: value('metric').trim(),
      direction: value('direction'),
      space: value('space'),
      max_trials: Number(value('max_trials')),
      parallel_trials: Number(value('parallel_trials')),
      early_stopping: value('early_stopping')
    };
  }
}
