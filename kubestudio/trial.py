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
        try:
            status, text = _post(os.environ["KUBESTUDIO_TRIAL_URL"], json.dumps(body).encode())
        except OSError as e:
            if time.monotonic() < deadline:
                time.sleep(pause)
                pause = min(pause * 2, 5)
                continue
            print(f"kubestudio.trial: the jobs service could not be reached ({e}); training goes on", file=sys.stderr)
            return _pruned
        if status in (502, 503, 504) and time.monotonic() < deadline:
            time.sleep(pause)
            pause = min(pause * 2, 5)
            continue
        try:
            answer = json.loads(text or "{}")
        except ValueError:
            answer = {"message": text[:200]}
        if status >= 400:
            message = answer.get("message") or f"HTTP {status}"
            print(f"kubestudio.trial: report not recorded: {message}", file=sys.stderr, flush=True)
            return _pruned
        break
    _pruned = _pruned or bool(answer.get("prune"))
    return _pruned


def _post(url, data):
    """(status, body text) of a JSON POST. Plain HTTP (the service on the machine, or in the
    cluster) is written on a socket: a trial starts many times, and urllib's imports alone take
    longer than the report; HTTPS goes through urllib."""
    token = os.environ.get("KUBESTUDIO_TRIAL_TOKEN", "")
    if not url.startswith("http://"):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(
            url,
            data=data,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode("utf-8", "replace")
    import socket

    rest = url[len("http://") :]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":") if ":" in hostport else (hostport, "", "80")
    head = (
        f"POST /{path} HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host.strip("[]"), int(port)), timeout=30) as connection:
        connection.sendall(head.encode("latin-1") + data)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    header, _, content = answer.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    if not lines or len(lines[0].split()) < 2:
        raise OSError(f"not an HTTP answer from {hostport}")
    status = int(lines[0].split()[1])
    if any(line.lower().startswith("transfer-encoding:") and "chunked" in line.lower() for line in lines[1:]):
        content = _unchunk(content)
    return status, content.decode("utf-8", "replace")


def _unchunk(content):
    body, rest = b"", content
    while rest:
        size, _, rest = rest.partition(b"\r\n")
        length = int(size.split(b";")[0] or b"0", 16)
        if not length:
            break
        body, rest = body + rest[:length], rest[length + 2 :]
    return body


def should_prune():
    """Whether the search has decided to stop this trial (the answer to the last report)."""
    return _pruned
