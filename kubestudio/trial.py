"""Inside a trial of an experiment: the parameters it was given, and what it reports.

    from kubestudio import trial
    p = trial.params()                       # {"lr": 0.01, "bs": 32}
    for epoch in range(10):
        ...
        if trial.report(epoch, val_acc=acc):  # True: the search stops this trial early
            break
    trial.report(val_acc=acc)                # no step: the trial's final value

Reports go to the jobs service over HTTP with the token the service gave this trial (no sidecar).
A report the service refuses (a NaN, say) or cannot take is said on stderr and the training goes
on. In a job of several ranks only rank 0 reports. Outside a trial, :func:`params` is ``{}`` and a
report is printed as ``name=value`` lines, which an experiment also reads from a trial's log
(Katib's StdOut convention), so the same script runs by hand and as a trial.

Light on purpose: the standard library only (a trial starts many times).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

_pruned = False
FINAL_REPORT_PATIENCE = 120  # seconds a final report waits for the service (a restart)
STEP_REPORT_PATIENCE = 10


def params():
    """The parameters of this trial (``{}`` outside a trial)."""
    return json.loads(os.environ.get("KUBESTUDIO_TRIAL_PARAMS") or "{}")


def number():
    """This trial's number in its experiment (None outside a trial)."""
    value = os.environ.get("KUBESTUDIO_TRIAL_NUMBER")
    return int(value) if value else None


def objective():
    """The name of the metric the experiment optimizes (None outside a trial)."""
    return os.environ.get("KUBESTUDIO_TRIAL_METRIC") or None


def in_trial():
    return bool(os.environ.get("KUBESTUDIO_TRIAL_URL"))


def report(step=None, **metrics):
    """Report ``metrics`` (name=value) at ``step`` (None: the trial's final values). Returns True
    when the search has decided to stop this trial early (it will be cancelled): stop training."""
    global _pruned
    if not metrics:
        raise TypeError("report() needs at least one metric, e.g. report(step, val_acc=0.91)")
    if os.environ.get("RANK", "0") != "0":
        return _pruned  # one report per trial: rank 0's
    if not in_trial():
        where = f"step {step}: " if step is not None else ""
        print(where + " ".join(f"{name}={value}" for name, value in metrics.items()), flush=True)
        return False
    body = {"metrics": metrics}
    if step is not None:
        body["step"] = step
    # the service may be restarting: a final report waits for it up to two minutes, an
    # intermediate one a few seconds (training goes on; the next report tries again)
    deadline = time.monotonic() + (FINAL_REPORT_PATIENCE if step is None else STEP_REPORT_PATIENCE)
    pause = 0.5
    while True:
        request = urllib.request.Request(
            os.environ["KUBESTUDIO_TRIAL_URL"],
            data=json.dumps(body).encode(),
            headers={
                "Authorization": f"Bearer {os.environ.get('KUBESTUDIO_TRIAL_TOKEN', '')}",
                "Content-Type": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                answer = json.loads(response.read() or b"{}")
            break
        except urllib.error.HTTPError as e:
            if e.code in (502, 503, 504) and time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 5)
                continue
            try:
                message = json.loads(e.read()).get("message", "")
            except ValueError:
                message = ""
            print(f"kubestudio.trial: report not recorded: {message or e}", file=sys.stderr, flush=True)
            return _pruned
        except (OSError, ValueError) as e:
            if time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 5)
                continue
            print(f"kubestudio.trial: the jobs service could not be reached ({e}); training goes on", file=sys.stderr)
            return _pruned
    _pruned = _pruned or bool(answer.get("prune"))
    return _pruned


def should_prune():
    """Whether the search has decided to stop this trial (the answer to the last report)."""
    return _pruned
