"""The JupyterLab extension on a real hub: a real single-user server with the built extension, its
handlers (kubestudio/extensions/bridge.py) calling the real image, jobs and TensorBoard services,
and Debian chromium clicking through the file browser's context menu and the KubeStudio panel.

The user's files are made through the server's own contents API (as the user), the way they would
be from JupyterLab.
"""

import json
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from kubestudio.testing.imageshub import start_images_hub
from kubestudio.testing.localhub import browser_login

USER = "lara"

TRAIN = """\
import sys
print("hello from the job", sys.argv[1:])
"""

# a model and a log folder, made by a job of the user's (as their own account, in their workspace)
MAKE_MODEL_AND_LOGS = """\
import os, joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from torch.utils.tensorboard import SummaryWriter

X, y = load_iris(return_X_y=True)
os.makedirs("models/iris", exist_ok=True)
joblib.dump(LogisticRegression(max_iter=300).fit(X, y), "models/iris/model.joblib")
writer = SummaryWriter("runs/exp1")
for step in range(5):
    writer.add_scalar("loss", 1.0 / (step + 1), step)
writer.close()
print("saved")
"""

NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code",
            "execution_count": None,
            "metadata": {},
            "outputs": [],
            "source": ["print(6 * 7)"],
        }
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


@pytest.fixture(scope="module")
def lab(tmp_path_factory, registry):
    """A hub with every service, and USER's server running (on the hub's Python, as a profile
    without an image runs)."""
    # one GPU, named here rather than found on the machine, for what the job dialog says
    images = start_images_hub(
        tmp_path_factory.mktemp("lab-hub"), registry, extra='c.LocalWorkspaceSpawner.gpus = ["0:T4"]\n'
    )
    hub = images.hub
    try:
        hub.create_user(USER)
        hub.spawn(USER, timeout=120)
        yield Lab(hub, registry)
    finally:
        hub.stop()


class Lab:
    def __init__(self, hub, registry):
        self.hub, self.registry = hub, registry
        self.server = f"{hub.url}/user/{USER}/"
        self.api = self.server + "api/kubestudio/"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {hub.user_token(USER)}"

    def put(self, path, content=None):
        """A folder (content None), a text file, or a notebook (a dict), made by the server as the user."""
        if content is None:
            body = {"type": "directory"}
        elif isinstance(content, dict):
            body = {"type": "notebook", "format": "json", "content": content}
        else:
            body = {"type": "file", "format": "text", "content": content}
        r = self.http.put(self.server + "api/contents/" + path, json=body)
        assert r.status_code in (200, 201), r.text

    def exists(self, path):
        return self.http.get(self.server + "api/contents/" + path, params={"content": 0}).status_code == 200

    def post(self, path, body=None):
        return self.http.post(self.api + path, json=body or {})

    def items(self):
        return self.http.get(self.api + "items").json()["items"]

    def wait_item(self, kind, name, until, timeout=120):
        """The item once ``until(item)`` holds (the panel's own listing, as the browser reads it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [i for i in self.items() if i["kind"] == kind and i["name"] == name]
            if found and until(found[0]):
                return found[0]
            time.sleep(0.5)
        raise TimeoutError(f"{kind} {name}: {found}")


def test_the_lab_extension_is_installed_enabled_and_ok(lab):
    """`jupyter labextension list` of the server's environment, and the page config of the lab the
    browser loads."""
    jupyter = os.path.join(os.path.dirname(sys.executable), "jupyter")
    listed = subprocess.run([jupyter, "labextension", "list"], capture_output=True, text=True, timeout=120)
    text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    assert re.search(r"@kubestudio/jupyterlab v\S+ enabled OK", text), text
    page = lab.http.get(lab.server + "lab")
    assert page.status_code == 200 and "@kubestudio/jupyterlab" in page.text


def test_the_bridge_checks_what_it_is_sent(lab):
    lab.put("reqs")
    lab.put("reqs/requirements.txt", "requests\n")
    lab.put("plain")
    services = lab.http.get(lab.api + "services").json()
    assert services["user"] == USER and services["services"] == {"images": True, "jobs": True, "tensorboards": True}
    # what the job dialog says of GPUs: the jobs service's limits for this user
    assert lab.http.get(lab.api + "limits").json() == {
        "projects": {"public": {"max_gpus": None}},
        "machine_gpus": {"T4": 1},
    }

    # a folder without a Dockerfile: refused, with what can be done instead
    r = lab.post("actions/build", {"path": "reqs"})
    assert r.status_code == 409 and r.json()["offer"] == "requirements.txt", r.text
    assert "no Dockerfile" in r.json()["message"] and r.json()["status"] == 409
    r = lab.post("actions/build", {"path": "plain"})
    assert r.status_code == 409 and "offer" not in r.json(), r.text
    # paths outside the server's files, bad fields, unknown verbs: 4xx naming the field
    for body, status, said in (
        ({"path": "../../etc"}, 400, "path: ../../etc is outside"),
        ({"path": ""}, 400, "path: give the file"),
        ({"path": "reqs", "nodes": "two"}, 400, "nodes: 'two' is not a whole number"),
        ({"path": "reqs", "nodes": 0}, 400, "nodes: 0 is not between 1 and 1024"),
        ({"path": "reqs", "args": "'unclosed"}, 400, "args: "),
    ):
        r = lab.post("actions/job", body)
        assert r.status_code == status and said in r.json()["message"], (body, r.text)
    r = lab.post("actions/launch-missiles")
    assert r.status_code == 404 and "build, job, notebook" in r.json()["message"]
    r = lab.http.post(lab.api + "actions/job", data="not json")
    assert r.status_code == 400 and "not JSON" in r.json()["message"]
    r = lab.post("items/job/nosuchjob/cancel")
    assert r.status_code == 404 and r.json()["message"], r.text
    r = lab.post("items/board/x/rerun")
    assert r.status_code == 400 and "verb: a board takes stop" in r.json()["message"]
    r = lab.http.get(lab.api + "items/job/nosuchjob/logs")
    assert r.status_code == 404 and "nosuchjob" in r.json()["message"], r.text

    # without the XSRF token a browser's cookie cannot post (the server's own check)
    browser = lab.hub.login(USER)
    browser.get(lab.server + "lab")
    r = browser.post(lab.api + "actions/job", json={"path": "x.py"})
    assert r.status_code == 403, r.text


def test_changes_are_waited_for_not_polled(lab):
    """A request with the version it has is held until something changes (or ``wait``)."""
    version = lab.http.get(lab.api + "items").json()["version"]
    started = time.monotonic()
    held = lab.http.get(lab.api + "items", params={"after": version, "wait": 1.5}).json()
    assert time.monotonic() - started >= 1.4 and held["version"] == version
    # an action answers at once, and the held request of another tab returns with it
    lab.put("hold.py", TRAIN)
    import threading

    answers = []
    waiter = threading.Thread(
        target=lambda: answers.append(lab.http.get(lab.api + "items", params={"after": version, "wait": 20}).json())
    )
    started = time.monotonic()
    waiter.start()
    time.sleep(0.3)
    assert lab.post("actions/job", {"path": "hold.py"}).status_code == 200
    waiter.join(25)
    assert answers and answers[0]["version"] != version and time.monotonic() - started < 15
    assert any(i["kind"] == "job" and i["name"].startswith("hold") for i in answers[0]["items"])


def test_a_notebook_runs_as_a_job_with_its_outputs_saved_beside_it(lab):
    lab.put("nb")
    lab.put("nb/answer.ipynb", NOTEBOOK)
    r = lab.post("actions/notebook", {"path": "nb/answer.ipynb"})
    assert r.status_code == 200, r.text
    item = r.json()["item"]
    assert item["kind"] == "job" and item["name"].startswith("answer")
    done = lab.wait_item("job", item["name"], lambda i: not i["changing"], timeout=180)
    log = lab.http.get(lab.api + f"items/job/{item['id']}/logs").text
    assert done["status"] == "succeeded", (done, log)
    output = lab.http.get(lab.server + "api/contents/nb/answer.output.ipynb").json()
    printed = output["content"]["cells"][0]["outputs"]
    assert printed and "42" in printed[0]["text"], printed
    r = lab.post("actions/notebook", {"path": "hold.py"})
    assert r.status_code == 400 and "not a notebook" in r.json()["message"]


def test_a_job_reruns_and_the_environment_is_saved_as_an_image(lab):
    lab.put("again.py", TRAIN)
    first = lab.post("actions/job", {"path": "again.py", "args": ["--seed", "1"]}).json()["item"]
    lab.wait_item("job", first["name"], lambda i: i["status"] == "succeeded")
    r = lab.post(f"items/job/{first['id']}/rerun")
    assert r.status_code == 200, r.text
    again = r.json()["record"]
    assert again["name"] == first["name"] + "-r2" and again["spec"]["args"] == ["--seed", "1"]
    lab.wait_item("job", again["name"], lambda i: i["status"] == "succeeded")
    assert "hello from the job ['--seed', '1']" in lab.http.get(lab.api + f"items/job/{again['id']}/logs").text

    r = lab.post("actions/environment", {"name": "my-env"})
    assert r.status_code == 200, r.text
    build, record = r.json()["item"], r.json()["record"]
    assert build["kind"] == "build" and build["name"].startswith("my-env:")
    # this server's packages on its image (the image service's from_server, tested with it; this
    # hub makes no base image for a server that runs none, so the build itself is not waited for)
    assert record["kind"] == "from_server" and record["spec"]["from_server"] == "", record


TUNED = """\
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
print(f"loss={(parser.parse_args().x - 1) ** 2}")
"""


def test_a_script_is_tuned_and_the_experiment_listed_with_its_progress(lab):
    """Tune... on a .py: the bridge makes the experiment from the dialog's fields (its space as
    YAML text), and the panel lists it with its trials done of max_trials and the best."""
    lab.put("tuned.py", TUNED)
    body = {
        "path": "tuned.py",
        "metric": "loss",
        "direction": "minimize",
        "space": "x: {type: choice, values: [0, 1, 2]}",
        "max_trials": 3,
        "parallel_trials": 3,
    }
    r = lab.post("actions/experiment", body)
    assert r.status_code == 200, r.text
    item = r.json()["item"]
    assert item["kind"] == "experiment" and item["name"] == "tuned-1" and item["verbs"] == ["cancel"], item
    done = lab.wait_item("experiment", "tuned-1", lambda i: not i["changing"], timeout=120)
    assert done["status"] == "succeeded", done
    # TPE (the dialog's search) may draw a choice twice: the best is the best of what it drew
    best = done["detail"]["best"]
    assert best["value"] == (best["params"]["x"] - 1) ** 2 and best["params"]["x"] in (0, 1, 2), best
    assert done["progress"] == {"step": 3, "steps": 3}, done  # trials ended of max_trials
    for bad, said in (
        ({"space": "x: [unclosed"}, "space: not YAML"),
        ({"space": "x: {type: choice, values: []}"}, "space.x.values: a choice needs at least one value"),
        ({"metric": ""}, "objective.metric: required"),
        ({"path": "../../etc/passwd"}, "path: ../../etc/passwd is outside"),
    ):
        r = lab.post("actions/experiment", {**body, **bad})
        assert r.status_code == 400 and said in r.json()["message"], (bad, r.text)


def test_jupyterlab_of_a_vs_code_server_has_the_extension_too(lab):
    """A VS Code profile's server opens VS Code, and its JupyterLab (at lab/) has the same verbs."""
    from .test_local_hub import code_server_available

    if not code_server_available():
        pytest.skip("code-server is not installed (scripts/install-code-server.sh)")
    r = lab.hub.spawn(USER, "code", {"profile": "vscode"})
    assert r.status_code in (201, 202), r.text
    try:
        server = f"{lab.hub.url}/user/{USER}/code/"
        assert lab.hub.server_env(USER, "code")["JUPYTERHUB_DEFAULT_URL"] == "/vscode/"
        page = lab.http.get(server + "lab")
        assert page.status_code == 200 and "@kubestudio/jupyterlab" in page.text
        services = lab.http.get(server + "api/kubestudio/services").json()
        assert services["services"] == {"images": True, "jobs": True, "tensorboards": True}
        lab.put("code.py", TRAIN)
        r = lab.http.post(server + "api/kubestudio/actions/job", json={"path": "code.py", "args": "--from vscode"})
        assert r.status_code == 200, r.text
        done = lab.wait_item("job", r.json()["item"]["name"], lambda i: not i["changing"])
        assert done["status"] == "succeeded"
        assert "['--from', 'vscode']" in lab.http.get(lab.api + f"items/job/{done['id']}/logs").text
    finally:
        lab.hub.stop_server(USER, "code")


# --- in the browser ---------------------------------------------------------------------------


def open_lab(page, lab):
    browser_login(page, lab.hub, USER)
    page.wait_for_load_state()
    page.goto(lab.server + "lab?reset")  # the layout as a first visit has it, whatever the last test left
    page.wait_for_selector(".jp-DirListing-content", state="attached", timeout=90_000)
    page.wait_for_selector("li[data-id='kubestudio-sidebar']", timeout=30_000)


def show_files(page):
    """The file browser in the left area (an action shows the KubeStudio panel there)."""
    if not page.locator("li[data-id='filebrowser'].lm-mod-current").count():
        page.locator("li[data-id='filebrowser']").first.click()


def go_home(page):
    show_files(page)
    page.locator(".jp-BreadCrumbs-home").click()


def listed(page, name):
    """``name`` in the file browser's folder."""
    return page.locator(".jp-DirListing-item").filter(
        has=page.locator(".jp-DirListing-itemText").get_by_text(name, exact=True)
    )


def context_menu(page, name, command):
    """Right-click ``name`` in the file browser's folder and pick ``command`` (hidden items skipped)."""
    show_files(page)
    try:
        listed(page, name).click(button="right", timeout=30_000)
    except Exception:
        page.screenshot(path=os.path.join(os.environ.get("KUBESTUDIO_SHOTS", "/tmp"), "context-menu-failed.png"))
        raise
    page.locator(".lm-Menu-item:not(.lm-mod-hidden)", has_text=command).click()


def open_folder(page, name):
    show_files(page)
    listed(page, name).dblclick()
    page.locator(".jp-BreadCrumbs-item", has_text=name).wait_for()


def panel_item(page, kind, name):
    return page.locator(f"#kubestudio-sidebar section[data-kind='{kind}'] .ks-Item", has_text=name)


@pytest.mark.browser
def test_builds_from_the_file_browser(lab, page, tmp_path):
    """Right-click a folder -> build: the panel follows it to succeeded and the image is then on the
    spawn form; a failing build shows its notification; a running build is cancelled from the panel."""
    base = lab.registry.base
    lab.put("trainer")
    lab.put("trainer/Dockerfile", f"FROM {base}\nRUN echo built > /built.txt\n")
    lab.put("broken")
    lab.put("broken/Dockerfile", f"FROM {base}\nRUN echo about to fail && false\n")
    lab.put("slow")
    lab.put("slow/Dockerfile", f"FROM {base}\nRUN sleep 120\n")
    open_lab(page, lab)

    context_menu(page, "trainer", "Build image from this folder")
    row = panel_item(page, "build", "trainer:")
    row.wait_for(timeout=30_000)
    page.screenshot(path=str(tmp_path / "build-started.png"))
    page.wait_for_selector(
        "#kubestudio-sidebar section[data-kind='build'] .ks-Item[data-status='succeeded']", timeout=180_000
    )
    page.screenshot(path=str(tmp_path / "build-succeeded.png"))
    built = [i for i in lab.items() if i["kind"] == "build" and i["name"].startswith("trainer:")][0]
    form = lab.hub.login(USER).get(f"{lab.hub.url}/hub/spawn/{USER}/second")
    assert built["detail"]["image"] in form.text

    context_menu(page, "broken", "Build image from this folder")
    toast = page.locator(".Toastify__toast", has_text="broken:")
    toast.wait_for(timeout=180_000)
    assert "failed" in toast.inner_text()
    page.screenshot(path=str(tmp_path / "build-failed-notification.png"))

    context_menu(page, "slow", "Build image from this folder")
    slow = panel_item(page, "build", "slow:")
    slow.locator(".ks-Verb-cancel").click(timeout=60_000)
    page.wait_for_selector(
        "#kubestudio-sidebar section[data-kind='build'] .ks-Item[data-status='cancelled']", timeout=60_000
    )
    page.screenshot(path=str(tmp_path / "build-cancelled.png"))


@pytest.mark.browser
def test_a_script_runs_as_a_job_from_the_file_browser(lab, page, tmp_path):
    lab.put("proj")
    lab.put("proj/train.py", TRAIN)
    open_lab(page, lab)
    open_folder(page, "proj")
    context_menu(page, "train.py", "Run as training job...")
    dialog = page.locator(".jp-Dialog")
    # the GPU limit is said before anything is sent
    assert dialog.locator(".ks-FieldNote").inner_text() == "At most 1 GPU in all (this machine has 1 × T4)"
    dialog.locator("input[name=args]").fill("--lr 0.1")
    page.screenshot(path=str(tmp_path / "job-dialog.png"))
    dialog.locator("button.jp-mod-accept").click()
    viewer = page.locator(".ks-LogViewer")
    viewer.wait_for(timeout=30_000)
    page.wait_for_selector(".ks-LogViewer-status[data-status='succeeded']", timeout=120_000)
    assert "hello from the job ['--lr', '0.1']" in viewer.locator("pre").inner_text()
    page.screenshot(path=str(tmp_path / "job-log.png"))
    # the settings are remembered for the same file
    context_menu(page, "train.py", "Run as training job...")
    assert page.locator(".jp-Dialog input[name=args]").input_value() == "--lr 0.1"
    page.locator(".jp-Dialog button.jp-mod-reject").click()


@pytest.mark.browser
def test_a_script_is_tuned_from_the_file_browser(lab, page, tmp_path):
    lab.put("tune_me")
    lab.put("tune_me/search.py", TUNED)
    open_lab(page, lab)
    open_folder(page, "tune_me")
    context_menu(page, "search.py", "Tune...")
    dialog = page.locator(".jp-Dialog")
    dialog.locator("input[name=metric]").fill("loss")
    dialog.locator("select[name=direction]").select_option("minimize")
    dialog.locator("textarea[name=space]").fill("x: {_type: choice, _value: [3, 1, 2]}")
    dialog.locator("input[name=max_trials]").fill("3")
    dialog.locator("input[name=parallel_trials]").fill("3")
    page.screenshot(path=str(tmp_path / "tune-dialog.png"))
    dialog.locator("button.jp-mod-accept").click()
    # the panel opens on the experiment, which ends with its best trial
    row = panel_item(page, "experiment", "search-1")
    page.locator(
        "#kubestudio-sidebar section[data-kind='experiment'] .ks-Item[data-status='succeeded']", has_text="search-1"
    ).wait_for(timeout=120_000)
    assert "best: trial" in row.locator(".ks-Item-message").inner_text()
    # its trials are its own: not listed (nor told of) as jobs one by one
    assert not panel_item(page, "job", "search-1-t").count()
    page.screenshot(path=str(tmp_path / "tune-panel.png"))
    # the answers are remembered for the same file
    context_menu(page, "search.py", "Tune...")
    assert page.locator(".jp-Dialog input[name=metric]").input_value() == "loss"
    page.locator(".jp-Dialog button.jp-mod-reject").click()


@pytest.mark.browser
def test_a_board_and_a_serving_from_the_file_browser(lab, page, tmp_path):
    lab.put("make_model.py", MAKE_MODEL_AND_LOGS)
    r = lab.post("actions/job", {"path": "make_model.py"})
    assert r.status_code == 200, r.text
    made = lab.wait_item("job", r.json()["item"]["name"], lambda i: not i["changing"], timeout=180)
    assert made["status"] == "succeeded", lab.http.get(lab.api + f"items/job/{made['id']}/logs").text
    open_lab(page, lab)

    # TensorBoard on the log folder, in a new tab, with its scalars
    open_folder(page, "runs")
    with page.context.expect_page(timeout=60_000) as opened:
        context_menu(page, "exp1", "Open TensorBoard here")
    board = opened.value
    board.wait_for_selector("text=loss", timeout=120_000)
    board.screenshot(path=str(tmp_path / "board.png"))
    board.close()

    # a saved sklearn model, served and asked from the panel's try box
    go_home(page)
    open_folder(page, "models")
    context_menu(page, "iris", "Serve this model...")
    page.locator(".jp-Dialog button.jp-mod-accept").click()
    row = panel_item(page, "serving", "iris")
    page.wait_for_selector(
        "#kubestudio-sidebar section[data-kind='serving'] .ks-Item[data-status='ready']", timeout=180_000
    )
    row.locator("summary", has_text="Try it").click()
    row.locator(".ks-Try-send").click()
    output = row.locator(".ks-Try-output")
    page.wait_for_function("el => el.textContent.includes('predictions')", arg=output.element_handle(), timeout=60_000)
    assert json.loads(output.inner_text()) == {"predictions": [0]}
    page.screenshot(path=str(tmp_path / "serving-try-it.png"))
    row.locator(".ks-Verb-stop").click()


def test_a_light_install_runs_the_notebook_side_against_the_hub(lab, tmp_path):
    """A fresh virtualenv with only `pip install kubestudio` (no extras) and `jupyterlab`: the CLI,
    the server extension with its handlers, and the lab extension, against the hub."""
    lab.put("light.py", TRAIN)
    job = lab.post("actions/job", {"path": "light.py"}).json()["item"]["name"]
    wheels = tmp_path / "wheels"
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, *pip, "wheel", "--no-deps", "-w", wheels, source], check=True, timeout=600)
    venv = tmp_path / "light"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    (wheel,) = wheels.glob("kubestudio-*.whl")
    # (--no-compile: a server compiles what it imports; the test needs no .pyc of all of JupyterLab)
    subprocess.run([python, *pip, "install", "--no-compile", str(wheel), "jupyterlab"], check=True, timeout=900)
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True).stdout
    names = {line.split("==")[0].lower().replace("_", "-") for line in installed.splitlines()}
    assert "kubestudio" in names
    assert not names & {"jupyterhub", "jupyterhub-kubespawner", "kserve", "scikit-learn", "tensorboard", "kubernetes"}

    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": f"{venv}/bin:/usr/bin:/bin",
        "HOME": str(home),
        "JUPYTERHUB_API_URL": f"{lab.hub.url}/hub/api",
        "JUPYTERHUB_API_TOKEN": lab.hub.user_token(USER),
        "JUPYTERHUB_USER": USER,
    }
    cli = subprocess.run(["kubestudio", "jobs", "list"], env=env, capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and job in cli.stdout, cli.stdout + cli.stderr
    for what, pattern in (
        (["server", "extension", "list"], r"kubestudio\.extensions enabled\s+- Validating kubestudio\.extensions"),
        (["labextension", "list"], r"@kubestudio/jupyterlab v\S+ enabled OK"),
    ):
        listed = subprocess.run(["jupyter", *what], env=env, capture_output=True, text=True, timeout=120)
        text = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
        assert re.search(pattern, text), text

    # a Jupyter server of that environment: its handlers reach the hub's services with the token
    from kubestudio.testing.ports import free_port

    port, token = free_port(), "light-install-token"
    root = tmp_path / "files"
    root.mkdir()
    log = open(tmp_path / "server.log", "wb")
    server = subprocess.Popen(
        # (--allow-root: the test may run as root; a user's server never does)
        ["jupyter", "lab", "--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1"]
        + [f"--IdentityProvider.token={token}"],
        env={**env, "KUBESTUDIO_WORKSPACE": str(root)},
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        http = requests.Session()
        http.headers["Authorization"] = f"token {token}"
        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = http.get(base + "api/kubestudio/services", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        assert answer.json()["services"] == {"images": True, "jobs": True, "tensorboards": True}, answer.text
        items = http.get(base + "api/kubestudio/items").json()["items"]
        assert any(i["kind"] == "job" and i["name"] == job for i in items), items
        page = http.get(base + "lab").text
        assert "@kubestudio/jupyterlab" in page
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 15)
        server.wait(30)
        log.close()


@pytest.mark.browser
def test_one_tab_asks_for_changes_and_every_tab_hears_them(lab, page, tmp_path):
    """Two JupyterLab tabs of the server: one holds the request for changes (a browser keeps 6
    connections to a host; a held request per tab would starve the 6th), both show a new job."""
    open_lab(page, lab)
    other = page.context.new_page()
    asked = {page: [], other: []}
    for tab in asked:
        tab.on("request", lambda request, tab=tab: asked[tab].append(request.url))
    other.goto(lab.server + "lab")
    other.wait_for_selector("li[data-id='kubestudio-sidebar']", timeout=90_000)
    lab.put("tabs.py", TRAIN)
    for tab in asked:
        if not tab.locator("li[data-id='kubestudio-sidebar'].lm-mod-current").count():
            tab.locator("li[data-id='kubestudio-sidebar']").click()
        asked[tab].clear()
    r = lab.post("actions/job", {"path": "tabs.py"})
    assert r.status_code == 200, r.text
    name = r.json()["item"]["name"]
    for tab in asked:
        panel_item(tab, "job", name).wait_for(timeout=30_000)
        tab.wait_for_timeout(500)
    waiting = {tab: [url for url in urls if "/api/kubestudio/items?after=" in url] for tab, urls in asked.items()}
    assert sorted(len(urls) > 0 for urls in waiting.values()) == [False, True], waiting
    other.screenshot(path=str(tmp_path / "second-tab.png"))
    other.close()
