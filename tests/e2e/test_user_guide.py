"""Every fenced command of docs/user-guide.md, run through the door it is written for, on a hub
like the README's (run as root, servers in KubeStudio's single-user image, the shipped profiles):
the bash blocks line by line in a JupyterLab terminal of the user's server (curl from a shell on
the machine), the Python blocks as cells of a notebook kernel in that server.

A block is run as written. Where the guide has a placeholder, or names something this machine
cannot reach (quay.io), the test swaps in its own value through ``swap``, which first checks that
the guide still says what is swapped: a guide that changes breaks the test, not the other way
round. ``test_every_fenced_block_of_the_guide_is_run`` fails for a block that no test runs.
"""

import os
import pwd
import re
import subprocess

import pytest
import requests

from kubestudio.testing.doors import Kernel, run_in_terminal
from kubestudio.testing.localhub import LocalHub

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the README's hub runs as root (servers in images)")

GUIDE = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "user-guide.md")
USER = "nora"
END = "END-$((6*7))"  # typed, so the terminal's echo of the command never matches "END-42"

# each fenced block of the guide, by a line only it has, and the test that runs it
RUN_BY = {
    "curl -X POST": "test_a_server_started_through_the_rest_api",
    "kubestudio images build projects/trainer": "test_the_images_commands",
    "images = ImagesClient()": "test_the_images_commands",
    'jobs.create(name="mnist"': "test_the_jobs_commands",
    "kubestudio jobs submit train.py": "test_the_jobs_commands",
    "trial.report(epoch": "test_the_experiments_commands",
    "experiments = ExperimentsClient()": "test_the_experiments_commands",
    "name: mnist-grid": "test_the_experiments_commands",
    "kubestudio experiments run": "test_the_experiments_commands",
    "name: nightly": "test_the_pipelines_commands",
    "kubestudio pipelines run": "test_the_pipelines_commands",
    '@pipeline(name="sums"': "test_the_pipelines_commands",
    'jobs.serve(model="models/iris")': "test_the_serving_commands",
    "kubestudio serve models/iris": "test_the_serving_commands",
    "TensorBoardsClient().open([": "test_the_tensorboard_commands",
    "kubestudio tensorboard open runs/exp1": "test_the_tensorboard_commands",
}

TRAIN = """\
import argparse, os
parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float)
args = parser.parse_args()
print(f"rank {os.environ['RANK']} of {os.environ['WORLD_SIZE']} lr {args.lr} gpus {os.environ.get('CUDA_VISIBLE_DEVICES')!r}")
"""

# what the user has in their workspace before they follow the guide (made in their own kernel)
SETUP = f"""\
import os, pathlib
ws = pathlib.Path(os.environ["KUBESTUDIO_WORKSPACE"])
for folder in ("projects/mnist", "projects/trainer", "runs/exp1", "runs/exp2"):
    (ws / folder).mkdir(parents=True, exist_ok=True)
(ws / "projects/mnist/train.py").write_text({TRAIN!r})
(ws / "train.py").write_text({TRAIN!r})
# the hub's own Python base (a tenth of the single-user image: the build, not the copy, is tested)
base = os.environ["KUBESTUDIO_IMAGE"].split("/", 1)[0] + "/base/python:3.11"
(ws / "projects/trainer/Dockerfile").write_text(f"FROM {{base}}\\nRUN echo trainer > /opt/trainer.txt\\n")
print("ready in", ws)
"""


def fenced_blocks(text):
    """(language, code) of each fenced block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def guide_block(marker):
    with open(GUIDE, encoding="utf-8") as f:
        found = [code for _, code in fenced_blocks(f.read()) if marker in code]
    assert len(found) == 1, f"{len(found)} fenced blocks of the user guide hold {marker!r}"
    return found[0]


def swap(code, *pairs):
    """``code`` with each (what the guide says, what this test runs) swapped; the guide must say it."""
    for theirs, ours in pairs:
        assert theirs in code, f"the user guide no longer says {theirs!r}: update this test with it"
        code = code.replace(theirs, ours)
    return code


def commands(block):
    """The block's commands, one per line (a trailing backslash joins lines, as the shell does)."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    root = tmp_path_factory.mktemp("user-guide")
    # the shipped profiles, on a workstation with four GPUs
    local = LocalHub(
        root / "hub",
        base_images=True,
        extra_config='c.LocalWorkspaceSpawner.gpus = ["0:A100", "1:A100", "2:A100", "3:A100"]\n',
    )
    local.start()
    try:
        local.create_user(USER)
        local.wait_for_server_image(USER)
        local.spawn(USER, timeout=300)
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def kernel(hub):
    with Kernel(f"{hub.url}/user/{USER}/", hub.user_token(USER)) as k:
        assert "ready in /mnt/" + USER in k.execute(SETUP)
        yield k


def terminal(hub, line, timeout=300):
    """(what ``line`` printed, its exit code), typed into a new terminal of the user's server."""
    out = run_in_terminal(
        f"{hub.url}/user/{USER}/",
        hub.user_token(USER),
        f"{line}\recho EXIT=$?; echo {END}",
        r"EXIT=(\d+)\s+END-42",
        timeout=timeout,
    )
    printed = out.split("\n", 1)[-1]  # what follows the shell's echo of the typed line
    code = int(re.findall(r"EXIT=(\d+)", printed)[-1])
    return printed, code


def run_lines(hub, lines, expected):
    """Each of ``lines`` in the terminal; ``expected[i]``: (regex its output must match, its exit
    code). Returns the outputs."""
    assert len(lines) == len(expected), lines
    outputs = []
    for line, (pattern, code) in zip(lines, expected):
        printed, exit_code = terminal(hub, line)
        assert re.search(pattern, printed) and exit_code == code, (line, printed, exit_code)
        outputs.append(printed)
    return outputs


def test_every_fenced_block_of_the_guide_is_run():
    with open(GUIDE, encoding="utf-8") as f:
        blocks = fenced_blocks(f.read())
    for language, code in blocks:
        markers = [m for m in RUN_BY if m in code]
        assert len(markers) == 1, f"no test runs this {language} block of the user guide (add it to RUN_BY):\n{code}"
    assert len(blocks) == len(RUN_BY)
    assert set(RUN_BY.values()) <= set(globals())


def test_a_server_started_through_the_rest_api(hub):
    block = swap(guide_block("curl -X POST"), ("<you>", USER), ("http://127.0.0.1:8000", hub.url))
    env = {"PATH": "/usr/bin:/bin", "TOKEN": hub.user_token(USER)}
    shell = subprocess.run(["bash", "-c", block], capture_output=True, text=True, timeout=120, env=env)
    assert shell.returncode == 0, shell.stderr
    hub.wait_ready(USER, "train", timeout=180)
    model = hub.server_model(USER, "train")
    options = model["user_options"]
    assert (options["profile"], options["gpus"], options["ide"]) == ("gpu", 2, "vscode"), model
    assert len(hub.server_env(USER, "train")["CUDA_VISIBLE_DEVICES"].split(",")) == 2
    # with its GPUs and the default server's, a third server asking for 2 more of 4 is refused as the guide says
    hub.spawn(USER, "two", options={"profile": "gpu", "gpus": 1}, timeout=180)
    again = subprocess.run(
        ["bash", "-c", block.replace("servers/train", "servers/more")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert '"status": 409' in again.stdout and "gpus: not enough free GPUs" in again.stdout, again.stdout
    hub.stop_server(USER, "two")
    hub.stop_server(USER, "train")


def test_the_lab_extension_in_the_local_single_user_image(hub):
    """The server in KubeStudio's local single-user image has the JupyterLab extension (from the
    wheel, no Node.js there) and its handlers reach the hub's services."""
    printed, code = terminal(hub, "jupyter labextension list 2>&1 | grep kubestudio")
    assert code == 0 and re.search(r"@kubestudio/jupyterlab v\S+ .*enabled.* .*OK", printed), printed
    http = requests.Session()
    http.headers["Authorization"] = f"token {hub.user_token(USER)}"
    server = f"{hub.url}/user/{USER}/"
    assert "@kubestudio/jupyterlab" in http.get(server + "lab").text
    services = http.get(server + "api/kubestudio/services").json()
    assert services["user"] == USER and all(services["services"].values()), services
    assert http.get(server + "api/kubestudio/items").status_code == 200


def test_the_images_commands(hub, kernel):
    block = guide_block("kubestudio images build projects/trainer")
    lines = commands(block)
    [printed] = run_lines(hub, lines[:1], [(rf"build \w+: succeeded\s+\S+/kubestudio/{USER}/trainer:", 0)])
    build_id = re.search(r"build (\w+): succeeded", printed).group(1)
    example_id = re.search(r"images logs (\w+)", block).group(1)  # the guide's example id: this build's here
    run_lines(
        hub,
        commands(swap(block, (example_id, build_id)))[1:],
        [
            (rf"/kubestudio/{USER}/trainer:", 0),
            (r"RUN echo trainer", 0),
            (rf"build {build_id} already finished \(succeeded\)", 2),  # the CLI says why, and fails
        ],
    )
    # from Python: quay.io is out of reach here, so the base is the hub's Python base, and a 3 kB
    # package stands for lightgbm (the call is what is tested, not PyPI's bandwidth, nor vfs
    # copying the whole single-user image: test_server_images builds on that one)
    cell = swap(
        guide_block("images = ImagesClient()"),
        ('"quay.io/jupyter/scipy-notebook:2024-05-27"', "base"),
        ('"lightgbm"', '"nothing==0.0.3"'),
    )
    printed = kernel.execute(cell, timeout=600)
    assert "pip install" in printed and "nothing==0.0.3" in printed, printed
    final = kernel.execute("print(images.get(build['id'])['status'], images.get(build['id'])['image'])")
    assert final.startswith("succeeded ") and f"/kubestudio/{USER}/scipy-lgbm:" in final, final


def test_the_jobs_commands(hub, kernel):
    printed = kernel.execute(guide_block('jobs.create(name="mnist"'), timeout=600)
    ranks = re.findall(r"\[(?:master|worker)-\d\] rank (\d) of 2 lr 0\.1 gpus '(\d)'", printed)
    assert sorted(rank for rank, _ in ranks) == ["0", "1"], printed
    assert len({gpu for _, gpu in ranks}) == 2, printed  # 1(A100) per node: a GPU each
    assert "job train-1: train on 2 x 1 ranks" in printed, printed
    done = kernel.execute('jobs.wait("train-1"); print(jobs.logs("train-1"))', timeout=300)
    assert "rank 0 of 2, lr 0.1" in done and "rank 1 of 2, lr 0.1" in done, done
    run_lines(
        hub,
        commands(guide_block("kubestudio jobs submit train.py")),
        [
            (r"rank 1 of 2 lr 0\.1 gpus '\d'[\s\S]*job train[-\w]* \(\w+\): succeeded", 0),
            (r"mnist\s+succeeded", 0),
            (r"rank 0 of 2 lr 0\.1", 0),
            (r"job mnist \(\w+\): succeeded", 0),  # a finished job is answered as it is
            (r"rank 0 of 2 lr 0\.2[\s\S]*job mnist-r2 \(\w+\): succeeded", 0),  # the first copy of mnist
        ],
    )


def test_the_experiments_commands(hub, kernel):
    """The guide's trial script and YAML file written where it says, its Python cell run in the
    notebook, its commands in a terminal: trials run as jobs in the server's image and report
    from there."""
    for marker, path in (
        ("trial.report(epoch", "projects/mnist/tune.py"),
        ("name: mnist-grid", "projects/mnist/tune.yaml"),
    ):
        kernel.execute(f"(ws / {path!r}).write_text({guide_block(marker)!r})")
    printed = kernel.execute(guide_block("experiments = ExperimentsClient()"), timeout=600)
    assert re.search(r"'number': \d+, 'value': 0\.\d+", printed), printed
    assert len(re.findall(r"^\d+ (?:complete|pruned) ", printed, re.M)) == 4, printed
    run_lines(
        hub,
        commands(guide_block("kubestudio experiments run")),
        [
            (
                r"trial 2: complete[\s\S]*experiment mnist-grid \(\w+\): succeeded[\s\S]*best: trial \d, 0\.9\d* \(lr=0\.01\)",
                0,
            ),
            (r"mnist-grid\s+succeeded[\s\S]*mnist-lr\s+succeeded|mnist-lr\s+succeeded[\s\S]*mnist-grid\s+succeeded", 0),
            (r"trial\s+state\s+val_acc\s+parameters", 0),
            (r"val_acc=|\S", 0),
            (r"experiment mnist-lr \(\w+\): succeeded", 0),  # a finished one is answered as it is
        ],
    )


def test_the_pipelines_commands(hub, kernel):
    """The guide's pipeline written where it says and its commands typed in a terminal: the tasks
    run as jobs in the server's image, outputs flow downstream, a rerun keeps what is upstream."""
    kernel.execute(f"(ws / 'projects/mnist/pipeline.yaml').write_text({guide_block('name: nightly')!r})")
    # the Python pipeline, as a notebook cell: its tasks are jobs in the server's image
    printed = kernel.execute(guide_block('@pipeline(name="sums"'), timeout=300)
    assert re.search(r"succeeded (\[rank-0\] )?total 10", printed), printed
    run_lines(
        hub,
        commands(guide_block("kubestudio pipelines run")),
        [
            (r"evaluate: succeeded[\s\S]*alert: skipped[\s\S]*run \w+ of nightly: succeeded", 0),
            (r"train\s+succeeded\s+1 model=runs/\w+/model\.txt", 0),
            (r"accuracy=0\.10", 0),
            (r"prepare: succeeded \(kept from run \w+\)[\s\S]*evaluate: succeeded[\s\S]*of nightly: succeeded", 0),
            (r"nightly\s+succeeded[\s\S]*nightly\s+succeeded", 0),
        ],
    )


def test_the_serving_commands(hub, kernel):
    iris = os.path.join(hub.data_dir, "users", USER, "mnt", "models", "iris")
    account = pwd.getpwnam(hub.account_prefix + USER)
    trained_in_the_notebook(iris, account)
    printed = kernel.execute(guide_block('jobs.serve(model="models/iris")'), timeout=300)
    assert "[0]" in printed, printed  # the cell's last line, as the notebook shows it
    first = kernel.execute('print(jobs.predict("iris", [[5.1, 3.5, 1.4, 0.2]]))')
    assert first.strip() == "[0]", first
    kernel.execute('jobs.delete_serving("iris")')  # the terminal's turn: the same name again
    run_lines(
        hub,
        commands(guide_block("kubestudio serve models/iris")),
        [
            (rf"/services/jobs/serve/{USER}/iris/", 0),
            (r'\{"predictions": \[0\]\}', 0),
            (r"iris\s+ready", 0),
            (r"\S", 0),
            (r"serving iris: deleted", 0),
        ],
    )
    assert "iris" not in kernel.execute("print([s['name'] for s in jobs.servings()])")


def trained_in_the_notebook(folder, account):
    """model.joblib as the guide's notebook would have saved it (scikit-learn is not in the image)."""
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.joblib")
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    for made in (os.path.dirname(folder), folder, path):
        os.chown(made, account.pw_uid, account.pw_gid)


def test_the_tensorboard_commands(hub, kernel):
    printed = kernel.execute(guide_block("TensorBoardsClient().open(["), timeout=300)
    assert re.search(r"/services/tensorboards/b/\w+/", printed), printed
    block = guide_block("kubestudio tensorboard open runs/exp1")
    lines = commands(block)
    [opened] = run_lines(hub, lines[:1], [(r"http://\S+/services/tensorboards/b/\w+/", 0)])
    board = re.search(r"/services/tensorboards/b/(\w+)/", opened).group(1)
    run_lines(
        hub,
        commands(swap(block, ("<name or id>", board)))[1:],
        [
            (board, 0),
            (rf"board {board}: stopped", 0),
        ],
    )
