import {
  checkJob,
  checkTune,
  DEFAULT_JOB,
  DEFAULT_TUNE,
  gpuLimit,
  JobDialogBody,
  rememberedJob,
  rememberedTune,
  rememberJob,
  rememberTune,
  TuneDialogBody
} from '../dialogs';

describe('the job dialog', () => {
  it('refuses what the service would, naming the field', () => {
    expect(checkJob(DEFAULT_JOB)).toEqual({});
    expect(checkJob({ ...DEFAULT_JOB, nodes: 0 })).toEqual({ nodes: 'nodes: a whole number from 1 to 1024' });
    expect(checkJob({ ...DEFAULT_JOB, procs_per_node: 1.5 }).procs_per_node).toContain('whole number');
    expect(checkJob({ ...DEFAULT_JOB, gpus: 'lots' }).gpus).toContain('1(A100)');
    expect(checkJob({ ...DEFAULT_JOB, gpus: '2(A100)' })).toEqual({});
    const limit = { total: 2, why: 'at most 2 GPUs in all (project public allows 2 per user)' };
    expect(checkJob({ ...DEFAULT_JOB, gpus: '2' }, limit)).toEqual({});
    expect(checkJob({ ...DEFAULT_JOB, nodes: 2, gpus: '2' }, limit).gpus).toBe(
      'gpus: 4 asked (2 per node × 2 nodes); at most 2 GPUs in all (project public allows 2 per user)'
    );
  });

  it('says the GPU limit from the project quota and the machine', () => {
    expect(gpuLimit(null)).toEqual({ total: null, why: '' });
    expect(gpuLimit({ projects: { public: { max_gpus: null } }, machine_gpus: null })).toEqual({ total: null, why: '' });
    expect(gpuLimit({ projects: { public: { max_gpus: 2 } }, machine_gpus: { A100: 4 } })).toEqual({
      total: 2,
      why: 'at most 2 GPUs in all (project public allows 2 per user; this machine has 4 × A100)'
    });
    expect(gpuLimit({ projects: { public: { max_gpus: null } }, machine_gpus: { A100: 1, T4: 2 } }).total).toBe(3);
    expect(gpuLimit({ projects: {}, machine_gpus: {} })).toEqual({
      total: 0,
      why: 'no GPUs (this machine has none)'
    });
  });

  it('remembers the settings per file', () => {
    window.localStorage.clear();
    expect(rememberedJob('train.py')).toEqual(DEFAULT_JOB);
    rememberJob('train.py', { ...DEFAULT_JOB, nodes: 2, args: '--lr 0.1' });
    expect(rememberedJob('train.py')).toEqual({ ...DEFAULT_JOB, nodes: 2, args: '--lr 0.1' });
    expect(rememberedJob('other.py')).toEqual(DEFAULT_JOB);
    window.localStorage.setItem('kubestudio:job:broken.py', '{not json');
    expect(rememberedJob('broken.py')).toEqual(DEFAULT_JOB);
  });

  it('reads back what was typed', () => {
    const limit = { total: 4, why: 'at most 4 GPUs in all (this machine has 4 × A100)' };
    const body = new JobDialogBody('train.py', { ...DEFAULT_JOB, procs_per_node: 4, packages: 'numpy' }, limit);
    expect(body.node.querySelector('.ks-FieldNote')?.textContent).toBe('At most 4 GPUs in all (this machine has 4 × A100)');
    const input = body.node.querySelector('input[name="gpus"]') as HTMLInputElement;
    input.value = ' 1(A100) ';
    expect(body.getValue()).toEqual({ nodes: 1, procs_per_node: 4, gpus: '1(A100)', args: '', packages: 'numpy' });
  });
});

describe('the tune dialog', () => {
  it('refuses what the service would, naming the field', () => {
    expect(checkTune(DEFAULT_TUNE)).toEqual({});
    expect(checkTune({ ...DEFAULT_TUNE, metric: 'val acc' }).metric).toContain('metric: the name the script reports');
    expect(checkTune({ ...DEFAULT_TUNE, space: '  ' }).space).toContain('space: give at least one parameter');
    expect(checkTune({ ...DEFAULT_TUNE, max_trials: 0 }).max_trials).toBe('max_trials: a whole number from 1 to 1000');
    expect(checkTune({ ...DEFAULT_TUNE, max_trials: 2, parallel_trials: 3 }).parallel_trials).toBe(
      'parallel_trials: 3 is more than max_trials (2)'
    );
  });

  it('reads back what was typed, and remembers it per script', () => {
    const body = new TuneDialogBody('train.py', DEFAULT_TUNE);
    (body.node.querySelector('select[name="direction"]') as HTMLSelectElement).value = 'minimize';
    (body.node.querySelector('textarea[name="space"]') as HTMLTextAreaElement).value = 'x: {type: uniform, low: 0, high: 1}';
    (body.node.querySelector('input[name="metric"]') as HTMLInputElement).value = ' loss ';
    const typed = body.getValue();
    expect(typed).toEqual({ ...DEFAULT_TUNE, metric: 'loss', direction: 'minimize', space: 'x: {type: uniform, low: 0, high: 1}' });
    window.localStorage.clear();
    rememberTune('train.py', typed);
    expect(rememberedTune('train.py')).toEqual(typed);
    expect(rememberedTune('other.py')).toEqual(DEFAULT_TUNE);
  });
});
