import { checkJob, DEFAULT_JOB, JobDialogBody, rememberedJob, rememberJob } from '../dialogs';

describe('the job dialog', () => {
  it('refuses what the service would, naming the field', () => {
    expect(checkJob(DEFAULT_JOB)).toEqual({});
    expect(checkJob({ ...DEFAULT_JOB, nodes: 0 })).toEqual({ nodes: 'nodes: a whole number from 1 to 1024' });
    expect(checkJob({ ...DEFAULT_JOB, procs_per_node: 1.5 }).procs_per_node).toContain('whole number');
    expect(checkJob({ ...DEFAULT_JOB, gpus: 'lots' }).gpus).toContain('1(A100)');
    expect(checkJob({ ...DEFAULT_JOB, gpus: '2(A100)' })).toEqual({});
    expect(checkJob({ ...DEFAULT_JOB, gpus: '4' }, 2).gpus).toBe('gpus: your profile and project allow at most 2');
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
    const body = new JobDialogBody('train.py', { ...DEFAULT_JOB, procs_per_node: 4, packages: 'numpy' });
    const input = body.node.querySelector('input[name="gpus"]') as HTMLInputElement;
    input.value = ' 1(A100) ';
    expect(body.getValue()).toEqual({ nodes: 1, procs_per_node: 4, gpus: '1(A100)', args: '', packages: 'numpy' });
  });
});
