"""The embedded default under attack: a user with an account of their own (mallory) tries, from a job
of hers and from her server's terminal, to become root, to reach another user's (victor's)
servings, boards and servers on the loopback, to make root re-own folders through links, to slip
a rank into victor's folder, and to outlive every limit. Each attack is a script of hers run as
she would run it; each test asserts that it fails and that victor's files, modes and processes are
unchanged afterwards. A real hub run as root, real accounts, real processes."""

import json
import os
import pickle
import pwd
import re
import stat
import subprocess
import time

import pytest
import requests

from kubestudio.accounts import make_traversable
from kubestudio.cgroups import detect
from kubestudio.testing.doors import run_in_terminal
from kubestudio.testing.localhub import LocalHub
from kubestudio.testing.servicehub import BoardsHub, JobsHub
from kubestudio.testing.wait import wait_for

from ..tensorboards.events import write_scalars

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="accounts of their own need a hub run as root")

DONE = "echo END-$((6*7))"
PIDS_LIMIT = 64
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]

# every variable a dynamic loader or an interpreter reads at start, pointed at mallory's payloads
PRELOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
#include <fcntl.h>
#include <string.h>
__attribute__((constructor)) static void mark(void) {
    char exe[256] = {0}, line[512];
    readlink("/proc/self/exe", exe, sizeof exe - 1);
    int fd = open("%(evidence)s", O_WRONLY | O_APPEND | O_CREAT, 0666);
    if (fd < 0) return;
    int n = snprintf(line, sizeof line, "preload uid=%%d euid=%%d exe=%%s\n", getuid(), geteuid(), exe);
    write(fd, line, n);
    close(fd);
}
"""
MARK_SHELL = 'echo "{var} uid=$(id -u) euid=$(id -u) exe=$0" >> {evidence}\n'
SITECUSTOMIZE = """import os, sys
with open({evidence!r}, "a") as f:
    f.write(f"python uid={{os.getuid()}} euid={{os.geteuid()}} exe={{sys.executable}}\\n")
"""
PERL_MODULE = """package Mark;
open(my $f, '>>', '{evidence}'); print $f "perl uid=$< euid=$> exe=$^X\\n"; close($f);
1;
"""
NODE_MARK = """require('fs').appendFileSync({evidence!r}, `node uid=${{process.getuid()}} euid=${{process.geteuid()}} exe=${{process.execPath}}\\n`);
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    local = LocalHub(
        tmp_path_factory.mktemp("attacks"),
        settings={"keep_servers_running": True},
        extra_config=f"c.Containment.pids_limit = {PIDS_LIMIT}\n",
    )
    local.start()
    try:
        for user in ("mallory", "victor"):
            local.create_user(user)
            local.spawn(user)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def jobs(hub):
    return JobsHub(hub)


@pytest.fixture(scope="module")
def evidence_dir(tmp_path_factory):
    """A folder every account may write (sticky), where payloads record who ran them."""
    folder = tmp_path_factory.mktemp("evidence")
    os.chmod(folder, 0o1777)
    make_traversable(str(folder))
    return folder


def uid(hub, user):
    return pwd.getpwnam(hub.account_prefix + user).pw_uid


def terminal(hub, user, command, timeout=120):
    out = run_in_terminal(
        f"{hub.url}/user/{user}/", hub.user_token(user), f"{command}; {DONE}", "END-42", timeout=timeout
    )
    return out.split(DONE, 1)[-1]


def run_job(jobs, user, timeout=180, **spec):
    """Submit a job of ``user``'s and wait until it ends: (record, log)."""
    client = jobs.client(user)
    record = client.create(**spec)
    done = client.wait(record["id"], status=("succeeded", "failed", "cancelled"), timeout=timeout)
    return done, client.logs(record["id"])


def victor_state(hub):
    """What mallory must not change: victor's folders' owners and modes, and his files."""
    root = os.path.join(hub.data_dir, "users", "victor")
    state = {}
    for name in ("", "mnt", "archives", "home"):
        info = os.lstat(os.path.join(root, name))
        state[name] = (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode), stat.S_ISDIR(info.st_mode))
    users = os.stat(os.path.join(hub.data_dir, "users"))
    state["users"] = (users.st_uid, stat.S_IMODE(users.st_mode))
    secret = os.path.join(root, "mnt", "project", "secret.txt")
    state["secret"] = open(secret).read() if os.path.exists(secret) else None
    return state


@pytest.fixture(scope="module")
def victor_files(hub, jobs):
    """Victor's private project (0600) and his job that proves he still works in it."""
    jobs.write("victor", "project/secret.txt", "victor's secret\n")
    os.chmod(os.path.join(jobs.workspace("victor"), "project", "secret.txt"), 0o600)
    return victor_state(hub)


def victor_still_works(hub, jobs, before):
    assert victor_state(hub) == before
    done, log = run_job(
        jobs, "victor", name=f"still-{int(time.time() * 1000) % 100000}", command=["cat", "project/secret.txt"]
    )
    assert done["status"] == "succeeded" and "victor's secret" in log, (done, log)


# ---------------------------------------------------------------------- 1. root through env


def payloads(jobs, evidence):
    """Mallory's payloads in her workspace, and the env that points every loader variable at them."""
    workspace = jobs.workspace("mallory")
    attack = os.path.join(workspace, "attack")
    os.makedirs(os.path.join(attack, "py"), exist_ok=True)
    os.makedirs(os.path.join(attack, "perl"), exist_ok=True)
    with open(os.path.join(attack, "preload.c"), "w") as f:
        f.write(PRELOAD_C % {"evidence": evidence})
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", os.path.join(attack, "preload.so"), os.path.join(attack, "preload.c")],
        check=True,
    )
    with open(os.path.join(attack, "py", "sitecustomize.py"), "w") as f:
        f.write(SITECUSTOMIZE.format(evidence=str(evidence)))
    with open(os.path.join(attack, "perl", "Mark.pm"), "w") as f:
        f.write(PERL_MODULE.format(evidence=evidence))
    with open(os.path.join(attack, "mark.js"), "w") as f:
        f.write(NODE_MARK.format(evidence=str(evidence)))
    for var in ("BASH_ENV", "ENV"):
        with open(os.path.join(attack, f"{var}.sh"), "w") as f:
            f.write(MARK_SHELL.format(var=var, evidence=evidence))
    jobs.hand_over("mallory")
    return {
        "LD_PRELOAD": f"{attack}/preload.so",
        "LD_AUDIT": f"{attack}/preload.so",
        "LD_LIBRARY_PATH": attack,
        "GCONV_PATH": attack,
        "PYTHONPATH": f"{attack}/py",
        "PYTHONSTARTUP": f"{attack}/py/sitecustomize.py",
        "PYTHONWARNINGS": "default",
        "BASH_ENV": f"{attack}/BASH_ENV.sh",
        "ENV": f"{attack}/ENV.sh",
        "PERL5LIB": f"{attack}/perl",
        "PERL5OPT": "-MMark",
        "NODE_OPTIONS": f"--require {attack}/mark.js",
    }


def read_marks(evidence):
    try:
        with open(evidence) as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        return []


def test_no_loader_or_interpreter_variable_in_a_jobs_or_servings_env_runs_as_root(
    hub, jobs, evidence_dir, victor_files
):
    evidence = evidence_dir / "env-marks"
    env = payloads(jobs, evidence)
    mallory = uid(hub, "mallory")
    # the job's own processes read the payloads too (as mallory: proof that each one works)
    jobs.write(
        "mallory",
        "use_them.py",
        "import subprocess\n"
        "for argv in (['bash', '-c', 'true'], ['sh', '-c', 'true'], ['perl', '-e', '1'],"
        " ['node', '-e', '1']):\n"
        "    try: subprocess.run(argv)\n"
        "    except FileNotFoundError: pass\n",
    )
    done, log = run_job(jobs, "mallory", name="env-sweep", script="use_them.py", env=env)
    assert done["status"] == "succeeded", (done, log)
    marks = read_marks(evidence)
    assert any(m.startswith("preload ") for m in marks) and any(m.startswith("python ") for m in marks), marks
    assert any(m.startswith("BASH_ENV ") for m in marks), marks
    assert all(f"uid={mallory} euid={mallory}" in m for m in marks), marks
    # the same job submitted from her terminal, with the notebook's CLI
    flags = " ".join(f"--env {name}={value!r}" for name, value in env.items())
    out = terminal(hub, "mallory", f"kubestudio jobs submit use_them.py --name env-terminal {flags}", timeout=180)
    assert "succeeded" in out, out
    marks, before = read_marks(evidence), len(marks)
    assert any(m.startswith("preload ") for m in marks[before:]), marks[before:]
    assert all(f"uid={mallory} euid={mallory}" in m for m in marks), marks

    # a serving with the same env: its runtime and its start
    model = os.path.join(jobs.workspace("mallory"), "models", "m")
    _train(model)
    jobs.hand_over("mallory")
    client = jobs.client("mallory")
    client.serve(model="models/m", name="env-model", env=env)
    try:
        client.wait_ready("env-model", timeout=180)
    finally:
        client.delete_serving("env-model")
    marks, before = read_marks(evidence), len(marks)
    assert any(m.startswith("python ") for m in marks[before:]), marks[before:]
    assert all(f"uid={mallory} euid={mallory}" in m for m in marks), [m for m in marks if f"uid={mallory}" not in m]
    victor_still_works(hub, jobs, victor_files)


def _train(folder):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    os.makedirs(folder, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    with open(os.path.join(folder, "model.pkl"), "wb") as f:
        pickle.dump(LogisticRegression(max_iter=300).fit(x, y), f)


# ---------------------------------------------------------------------- 2. loopback backends

PROBE = r"""
import json, sys, urllib.request, urllib.error
victim = int(sys.argv[1])
# the hub's own ports (root's): its API, the proxy's, the services', the registry gate
hub_ports = [int(p) for p in sys.argv[2].split(",")] if len(sys.argv) > 2 else []


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None  # a redirect is the answer (to a login page): never followed


opener = urllib.request.build_opener(NoRedirect)
ports = set()
for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    try:
        lines = open(table).read().splitlines()[1:]
    except OSError:
        continue
    for line in lines:
        fields = line.split()
        if fields[3] == "0A" and int(fields[7]) == victim:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
results = {}
paths = [("GET", "/"), ("GET", "/data/runs"), ("GET", "/data/plugin/scalars/scalars?run=runs_secret&tag=loss"),
         ("GET", "/v1/models/secret"), ("POST", "/v1/models/secret:predict"), ("POST", "/v2/models/secret/infer"),
         ("GET", "/user/victor/api/contents/project/secret.txt?content=1"), ("GET", "/user/victor/files/project/secret.txt"),
         ("GET", "/vscode-remote-resource?path=/etc/hostname")]
# what `ps` shows of the victim's processes: a board's path prefix (TensorBoard answers under it)
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
    except OSError:
        continue
    if "--path_prefix" in argv:
        prefix = argv[argv.index("--path_prefix") + 1]
        paths += [("GET", prefix + "/data/runs"),
                  ("GET", prefix + "/data/plugin/scalars/scalars?run=runs_secret&tag=loss")]
hub_paths = [("GET", "/hub/api/users"), ("GET", "/hub/api/users/victor/tokens"), ("GET", "/api/routes"),
             ("GET", "/services/jobs/api/jobs"), ("GET", "/services/jobs/api/servings"),
             ("GET", "/services/tensorboards/api/boards"), ("GET", "/services/images/api/images"),
             ("GET", "/api/jobs"), ("GET", "/api/boards"), ("GET", "/api/images"), ("GET", "/v2/_catalog"),
             ("GET", "/services/jobs/serve/victor/secret/v1/models/secret"),
             ("POST", "/services/jobs/serve/victor/secret/v1/models/secret:predict")]
for port in sorted(set(ports) | set(hub_ports)):
    for method, path in (paths if port in ports else []) + (hub_paths if port in hub_ports else []):
        body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode() if method == "POST" else None
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with opener.open(request, timeout=5) as r:
                results[f"{port} {method} {path}"] = [r.status, r.read(300).decode(errors="replace")]
        except urllib.error.HTTPError as e:
            results[f"{port} {method} {path}"] = [e.code, ""]
        except Exception as e:
            results[f"{port} {method} {path}"] = [0, type(e).__name__]
print("PROBE " + json.dumps({"ports": sorted(ports), "hub_ports": hub_ports, "results": results}))
"""


@pytest.fixture(scope="module")
def victor_backends(hub, jobs, victor_files):
    """Victor's serving and board, running while mallory probes."""
    client = jobs.client("victor")
    _train(os.path.join(jobs.workspace("victor"), "models", "secret"))
    write_scalars(os.path.join(jobs.workspace("victor"), "runs", "secret"), values=(0.25,))
    jobs.hand_over("victor")
    client.serve(model="models/secret", name="secret")
    client.wait_ready("secret", timeout=180)
    boards = BoardsHub(hub)
    boards._tokens["victor"] = hub.user_token("victor")
    board = boards.client("victor").open_board("runs/secret")
    token = {"Authorization": f"token {hub.user_token('victor')}"}
    wait_for(
        lambda: requests.get(hub.url + board["url"] + "data/runs", headers=token, timeout=30).status_code == 200,
        timeout=90,
        interval=0.3,
        what="victor's board to answer him",
    )
    yield {"serving": "secret", "board": board}
    boards.client("victor").stop(board["id"])
    client.delete_serving("secret")


def _probe_results(text):
    match = re.search(r"PROBE (\{.*\})", text)
    assert match, text[-2000:]
    return json.loads(match.group(1))


def _assert_refused(found, hub):
    assert found["ports"], "victor has no listening port: the probe proves nothing"
    assert len(found["hub_ports"]) >= 4, found["hub_ports"]
    answered = {k: v for k, v in found["results"].items() if 200 <= v[0] < 300}
    assert not answered, answered
    assert not any("secret" in v[1] and "victor" in v[1] for v in found["results"].values())


def test_no_loopback_port_of_another_user_answers_a_job_or_a_terminal(hub, jobs, victor_backends):
    victor = uid(hub, "victor")
    jobs.write("mallory", "probe.py", PROBE)
    from urllib.parse import urlparse

    hub_ports = ",".join(str(p) for p in sorted({*hub.ports().values(), urlparse(hub.url).port}))
    done, log = run_job(jobs, "mallory", name="probe", script="probe.py", args=[str(victor), hub_ports])
    assert done["status"] == "succeeded", (done, log)
    from_job = _probe_results(log)
    _assert_refused(from_job, hub)
    # victor's serving and board are among the ports found, and refuse (403)
    statuses = {v[0] for k, v in from_job["results"].items() if "predict" in k or "/data/runs" in k}
    assert 403 in statuses, from_job
    out = terminal(hub, "mallory", f"python probe.py {victor} {hub_ports}")
    _assert_refused(_probe_results(out), hub)
    # through the hub, victor still reaches both; mallory gets 404
    victor_token = {"Authorization": f"token {hub.user_token('victor')}"}
    mallory_token = {"Authorization": f"token {hub.user_token('mallory')}"}
    predict = f"{hub.url}/services/jobs/serve/victor/secret/v1/models/secret:predict"
    assert requests.post(predict, json={"instances": ROWS}, headers=victor_token, timeout=30).status_code == 200
    assert requests.post(predict, json={"instances": ROWS}, headers=mallory_token, timeout=30).status_code == 404
    runs = hub.url + victor_backends["board"]["url"] + "data/runs"
    assert requests.get(runs, headers=victor_token, timeout=30).json() == ["runs_secret"]
    assert requests.get(runs, headers=mallory_token, timeout=30).status_code == 404


def test_an_invalid_token_is_a_401_never_a_reason_to_skip_the_xsrf_check(hub, victor_backends):
    """Victor's browser (his cookie) made to post by a page that adds a bogus Authorization header."""
    session = hub.login("victor")
    predict = f"{hub.url}/services/jobs/serve/victor/secret/v1/models/secret:predict"
    # his cookie works for the page (after the OAuth dance) ...
    assert session.get(f"{hub.url}/services/jobs/", timeout=30).status_code == 200
    r = session.post(predict, json={"instances": ROWS}, headers={"Authorization": "token not-a-token"}, timeout=30)
    assert r.status_code == 401 and "not valid" in r.json()["message"], r.text
    # ... and without the XSRF token a cookie alone predicts nothing
    r = session.post(predict, json={"instances": ROWS}, timeout=30)
    assert r.status_code in (401, 403), r.text


# ---------------------------------------------------------------------- 3. re-own through a link


def test_root_never_re_owns_through_a_link_the_user_planted(hub, jobs, victor_files):
    users = os.path.join(hub.data_dir, "users")
    before = os.stat(users)
    # mallory's home (her own folder) becomes a link to the users' folder, then she starts a job
    out = terminal(hub, "mallory", f"cd ..; mv home home.old; ln -s {users} home; ls -ld home")
    assert "home -> " in out, out
    done, log = run_job(jobs, "mallory", name="relink", command=["true"])
    assert done["status"] == "succeeded", (done, log)
    after = os.stat(users)
    assert (after.st_uid, stat.S_IMODE(after.st_mode)) == (before.st_uid, stat.S_IMODE(before.st_mode))
    # her link was replaced by a fresh folder of hers; where it led is untouched
    home = os.path.join(users, "mallory", "home")
    info = os.lstat(home)
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == uid(hub, "mallory") and stat.S_IMODE(info.st_mode) == 0o700
    # the same through the workspace itself
    out = terminal(
        hub,
        "mallory",
        f"cd /; mv {users}/mallory/archives {users}/mallory/archives.old; "
        f"ln -s {users}/victor/mnt {users}/mallory/archives; echo linked",
    )
    assert "linked" in out, out
    done, log = run_job(jobs, "mallory", name="relink-2", command=["true"])
    assert done["status"] == "succeeded", (done, log)
    victor_still_works(hub, jobs, victor_files)


# ---------------------------------------------------------------------- 4. working folder swapped


SWAP = r"""
import os, sys, time
rank = int(os.environ["RANK"])
wd = os.path.join(os.environ["KUBESTUDIO_WORKSPACE"], "wd")
if rank == 0:
    os.rename(wd, wd + ".real")
    os.symlink(sys.argv[1], wd)
    print("swapped", flush=True)
else:
    deadline = time.time() + 20
    while not os.path.islink(wd) and time.time() < deadline:
        time.sleep(0.01)
    print(f"rank {rank} in {os.getcwd()} sees {sorted(os.listdir('.'))}", flush=True)
"""


def test_every_rank_starts_in_the_folder_checked_even_if_rank_0_swaps_it(hub, jobs, victor_files):
    victor_project = os.path.join(jobs.workspace("victor"), "project")
    jobs.write("mallory", "swap.py", SWAP)
    jobs.write("mallory", "wd/mine.txt", "mallory's\n")
    done, log = run_job(
        jobs,
        "mallory",
        name="swap",
        script="swap.py",
        args=[victor_project],
        working_dir="wd",
        nodes=1,
        procs_per_node=6,
    )
    assert done["status"] == "succeeded", (done, log)
    assert "swapped" in log and "secret.txt" not in log, log
    seen = re.findall(r"rank \d+ in (\S+) sees (\[.*\])", log)
    assert len(seen) == 5 and all("mine.txt" in files for _, files in seen), log
    victor_still_works(hub, jobs, victor_files)


# mallory's terminal swaps the folder back and forth, as fast as it can, while her jobs start
RACE = r"""
import os, sys, threading, time
from kubestudio.jobs.client import JobsClient
from kubestudio.services.client import ServiceError
ws = os.environ["KUBESTUDIO_WORKSPACE"]
wd, real = os.path.join(ws, "wd2"), os.path.join(ws, "wd2.real")
os.makedirs(wd, exist_ok=True)
open(os.path.join(wd, "mine.txt"), "w").write("mallory's")
open(os.path.join(ws, "look.py"), "w").write(
    "import os\nprint('rank', os.environ['RANK'], 'sees', sorted(os.listdir('.')), flush=True)\n")
stop = threading.Event()
def swap():
    while not stop.is_set():
        os.rename(wd, real); os.symlink(sys.argv[1], wd); time.sleep(0.005)
        os.unlink(wd); os.rename(real, wd); time.sleep(0.015)
swapper = threading.Thread(target=swap)
swapper.start()
client, started = JobsClient(), 0
try:
    for i in range(60):
        try:
            job = client.create(name=f"race-{i}", script="look.py", working_dir="wd2", procs_per_node=6)
        except ServiceError as e:
            print("REFUSED", e)
            continue
        done = client.wait(job["id"], status=("succeeded", "failed", "cancelled"), timeout=120)
        print("JOB", done["status"], done["message"], client.logs(job["id"]).replace("\n", " | "))
        started += done["status"] == "succeeded"
        if started == 3:
            break
finally:
    stop.set()
    swapper.join()
"""


def test_a_terminal_swapping_the_folder_while_jobs_start_never_gets_a_rank_into_victors(hub, jobs, victor_files):
    victor_project = os.path.join(jobs.workspace("victor"), "project")
    jobs.write("mallory", "race.py", RACE)
    out = terminal(hub, "mallory", f"python race.py {victor_project}", timeout=300)
    assert "secret.txt" not in out, out
    ran = re.findall(r"JOB succeeded .*", out)
    assert len(ran) == 3, out  # the race was run: jobs did start while the folder moved
    for line in ran:
        assert line.count("'mine.txt'") == 6, line
    victor_still_works(hub, jobs, victor_files)


# ---------------------------------------------------------------------- 5. limits


def _processes_with(marker):
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


needs_cgroups = pytest.mark.skipif(detect() is None, reason="no writable cgroups on this machine")


@needs_cgroups
def test_what_a_job_starts_ends_with_it_whatever_the_end(hub, jobs):
    for end in ("succeeded", "cancelled", "max_runtime"):
        tag = f"{end}-{time.monotonic_ns()}"
        marker = f"ks-escape-{tag}"
        # the escapees' names are made at run time: the job's own command line never holds them
        script = (
            f'm="ks-esc""ape-{tag}"; setsid -f bash -c "exec -a $m-a sleep 119" </dev/null >/dev/null 2>&1; '
            'nohup bash -c "exec -a $m-b sleep 118" >/dev/null 2>&1 & '
            "echo started; " + ("sleep 60" if end != "succeeded" else "sleep 0.5")
        )
        client = jobs.client("mallory")
        spec = {"name": f"escape-{end.replace('_', '-')}", "command": ["bash", "-c", script]}
        if end == "max_runtime":
            spec["max_runtime"] = 3
        record = client.create(**spec)
        wait_for(lambda: len(_processes_with(marker)) == 2, timeout=60, interval=0.1, what="the escapees to start")
        if end == "cancelled":
            client.delete(record["id"])
        done = client.wait(record["id"], status=("succeeded", "failed", "cancelled"), timeout=120)
        assert done["status"] == {"succeeded": "succeeded", "cancelled": "cancelled", "max_runtime": "failed"}[end], (
            done
        )
        wait_for(
            lambda: not _processes_with(marker),
            timeout=10,
            interval=0.1,
            what=f"what the job started to end with it ({end})",
        )


ESCAPE = """import os, subprocess, sys, time
mark = "ks-esc" "ape-" + sys.argv[1]
child = subprocess.Popen(["bash", "-c", f"exec -a {mark}-a sleep 119"], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("started escapee", child.pid, flush=True)
time.sleep(60)
"""


@needs_cgroups
def test_a_job_from_the_terminal_is_held_to_its_limits_too(hub, jobs):
    jobs.write("mallory", "escape.py", ESCAPE)
    tag = f"terminal-{time.monotonic_ns()}"
    out = terminal(
        hub,
        "mallory",
        f"kubestudio jobs submit escape.py --name escape-terminal --max-runtime 4s --memory 200Mi -- {tag}",
        timeout=180,
    )
    assert "stopped after max_runtime" in out, out
    escapee = int(re.search(r"started escapee (\d+)", out).group(1))
    wait_for(
        lambda: not _processes_with(f"ks-escape-{tag}") and not os.path.exists(f"/proc/{escapee}"),
        timeout=10,
        interval=0.1,
        what="the setsid child of a job submitted from the terminal to end with it",
    )


@needs_cgroups
def test_memory_and_process_limits_are_the_kernels(hub, jobs):
    hog = "import time; x = bytearray(300 * 2**20); x[::4096] = b'x' * len(x[::4096]); time.sleep(60)"
    done, log = run_job(
        jobs,
        "mallory",
        name="hog",
        command=["bash", "-c", f"setsid -f python3 -c '{hog}'; python3 -c '{hog}'"],
        resources={"memory": "100Mi"},
    )
    assert done["status"] == "failed" and "OOMKilled" in done["message"], (done, log)
    assert not _processes_with("bytearray(300")
    forks = (
        "import subprocess\nstarted = []\ntry:\n    for _ in range(600):\n"
        "        started.append(subprocess.Popen(['sleep', '30']))\n"
        "except OSError as e:\n    print('refused after', len(started), type(e).__name__)\n"
        "for p in started:\n    p.kill()\n"
    )
    jobs.write("mallory", "forks.py", forks)
    done, log = run_job(jobs, "mallory", name="forks", script="forks.py")
    match = re.search(r"refused after (\d+)", log)
    assert match and int(match.group(1)) < PIDS_LIMIT, (done, log)
