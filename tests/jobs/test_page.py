"""The jobs page in a real browser: submit from the form, watch every rank's lines arrive, pick
one rank's log, see a refusal next to the form, cancel a running job, rerun a finished one."""

import os

import pytest

from kubestudio.testing.localhub import browser_login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def log_has(page, text, timeout=60000):
    page.wait_for_function(f"document.getElementById('log').textContent.includes({text!r})", timeout=timeout)


def test_submit_follow_cancel_and_rerun_from_the_page(jobs, page, tmp_path):
    jobs.token("paige")
    jobs.write(
        "paige",
        "steps.py",
        "import os, sys, time\nrank = os.environ['RANK']\n"
        "for step in range(int(sys.argv[1])):\n    print(f'rank {rank} step {step}', flush=True)\n"
        "    time.sleep(0.5)\n",
    )
    browser_login(page, jobs.hub, "paige")
    page.wait_for_url("**/hub/**")
    page.goto(f"{jobs.hub.url}/hub/home")
    assert page.locator("a[href$='/services/jobs/']").count() >= 1  # the hub's header links to the service

    page.goto(jobs.url)  # OAuth with the hub, then the page
    page.wait_for_selector("text=Submit a training job")
    # a refusal is shown next to the form, naming the field
    page.fill("#name", "bad")
    page.fill("#script", "../outside.py")
    page.click("#job-form button[type=submit]")
    page.wait_for_function(
        "document.getElementById('form-error').textContent.includes('script: must be a path inside your workspace')"
    )

    page.fill("#name", "steps")
    page.fill("#script", "steps.py")
    page.fill("#args", "4")
    page.fill("#nodes", "2")
    page.select_option("#framework", "pytorch")
    page.click("#job-form button[type=submit]")
    page.wait_for_selector("#detail:not([hidden])")
    log_has(page, "[master-0] rank 0 step 0")
    log_has(page, "[worker-0] rank 1 step 3")
    page.wait_for_function("document.getElementById('d-status').textContent === 'succeeded'", timeout=60000)
    # one rank's log alone
    page.click("#replicas button:has-text('worker-0')")
    shown = page.inner_text("#log")
    assert "[worker-0] rank 1 step 0" in shown and "[master-0]" not in shown
    assert "succeeded" in page.inner_text("#events")
    page.screenshot(path=os.path.join(tmp_path, "jobs-page.png"), full_page=True)

    # a long job, cancelled from the page
    page.fill("#name", "long")
    page.fill("#args", "600")
    page.fill("#nodes", "1")
    page.select_option("#framework", "auto")
    page.click("#job-form button[type=submit]")
    log_has(page, "[rank-0] rank 0 step 1")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('d-status').textContent === 'cancelled'", timeout=30000)
    assert jobs.client("paige").get("long")["message"] == "cancelled by paige"
    page.wait_for_function("document.querySelector('#jobs').textContent.includes('cancelled')", timeout=10000)
    page.screenshot(path=os.path.join(tmp_path, "jobs-page-cancelled.png"), full_page=True)

    # rerun the finished one with other arguments
    page.click("#jobs tr:has-text('steps')")
    page.once("dialog", lambda dialog: dialog.accept("2"))
    page.click("#rerun")
    log_has(page, "[worker-0] rank 1 step 1")
    page.wait_for_function("document.getElementById('d-name').textContent === 'steps-r2'")
    assert jobs.client("paige").get("steps-r2")["spec"]["args"] == ["2"]


def test_serve_and_try_a_model_from_the_page(jobs, page, tmp_path):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    jobs.token("tryst")
    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    folder = os.path.join(jobs.workspace("tryst"), "models", "iris")
    os.makedirs(folder, exist_ok=True)
    joblib.dump(model, os.path.join(folder, "model.joblib"))
    browser_login(page, jobs.hub, "tryst")
    page.wait_for_url("**/hub/**")
    page.goto(jobs.url)
    page.wait_for_selector("text=Serve a model")
    # a refusal next to the form, naming the field
    page.fill("#s-model", "models/nothing")
    page.click("#serve-form button[type=submit]")
    page.wait_for_function(
        "document.getElementById('serve-error').textContent.includes("
        "\"model: no file or folder 'models/nothing' in your workspace\")"
    )
    page.fill("#s-model", "models/iris")
    page.click("#serve-form button[type=submit]")
    page.wait_for_selector("#servings tr >> text=iris")
    page.wait_for_selector("#servings td.status:has-text('ready')", timeout=120000)
    page.click("#servings button:has-text('Try it')")
    page.fill("#try-body", '{"instances": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}')
    page.click("#try-send")
    page.wait_for_function("document.getElementById('try-result').textContent.startsWith('200')", timeout=30000)
    answer = page.inner_text("#try-result")
    expected = model.predict([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]).tolist()
    assert '"predictions"' in answer and all(str(v) in answer for v in expected), answer
    # bad input: the model's own words, shown as they came
    page.fill("#try-body", '{"instances": [[1.0]]}')
    page.click("#try-send")
    page.wait_for_function("document.getElementById('try-result').textContent.startsWith('400')", timeout=30000)
    assert "expecting 4 features" in page.inner_text("#try-result")
    page.wait_for_function(
        "[...document.querySelectorAll('#servings td')].some(td => td.textContent === '2')", timeout=15000
    )  # the request count
    page.click("#servings button:has-text('Logs')")
    page.wait_for_function("document.getElementById('log').textContent.includes('starting version 1')")
    page.screenshot(path=os.path.join(tmp_path, "servings-page.png"), full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#servings button:has-text('Delete')")
    page.wait_for_selector("#no-servings:not([hidden])")


TUNED = """\
import argparse
from kubestudio import trial
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
x = parser.parse_args().x
for step in range(4):
    trial.report(step, acc=(1 - abs(x - 2) / 4) * (step + 1) / 4)
"""


def test_tune_a_script_from_the_page(jobs, page, tmp_path):
    """The Experiments part: a refusal next to the form, then a search whose trials fill the table
    and the charts (uPlot, from the service itself), the best trial highlighted, a trial's log."""
    jobs.token("tess")
    jobs.write("tess", "tune/acc.py", TUNED)
    browser_login(page, jobs.hub, "tess")
    page.wait_for_url("**/hub/**")
    page.goto(jobs.url)
    page.wait_for_selector("text=Tune a script (experiments)")
    page.fill("#x-name", "acc")
    page.fill("#x-script", "tune/acc.py")
    page.fill("#x-metric", "acc")
    page.fill("#x-space", "x: {type: choice, values: [0, 2, 3, 9]}")  # the grid tries all four
    page.fill("#x-trials", "4")
    page.fill("#x-parallel", "5")
    page.click("#experiment-form button[type=submit]")
    page.wait_for_function(
        "document.getElementById('experiment-error').textContent.includes('parallel_trials: 5 is more than max_trials (4)')"
    )
    page.fill("#x-parallel", "2")
    page.select_option("#x-algorithm", "grid")
    page.click("#experiment-form button[type=submit]")
    page.wait_for_selector("#experiment-detail:not([hidden])")
    page.wait_for_function(
        "[...document.querySelectorAll('#experiments tr')].some(r => r.textContent.includes('succeeded'))",
        timeout=120000,
    )
    # the detail follows every 3 s: the best trial highlighted once all four are in
    page.wait_for_function("document.getElementById('x-d-status').textContent === 'succeeded'", timeout=15000)
    page.wait_for_function(
        "document.querySelectorAll('#trials tr').length === 4 && "
        "(document.querySelector('#trials tr.best') || {textContent: ''}).textContent.includes('x=2')",
        timeout=15000,
    )
    rows = page.locator("#trials tr")
    assert rows.count() == 4
    best = page.inner_text("#trials tr.best")
    assert "x=2" in best and "1.0000" in best, best
    # both charts drawn by the vendored uPlot: one point per trial, one line per trial
    assert page.locator("#x-chart canvas").count() == 1 and page.locator("#x-steps canvas").count() == 1
    assert page.evaluate("typeof uPlot") == "function"
    page.screenshot(path=os.path.join(tmp_path, "experiments-page.png"), full_page=True)
    # a trial's row opens its job's log
    page.locator("#trials tr.best").click()
    page.wait_for_function("document.getElementById('d-name').textContent.startsWith('acc-t')")


def test_a_pipeline_runs_from_the_page_drawn_as_its_dag(jobs, page, tmp_path):
    """The Pipelines part: a refusal next to the form, then a run drawn as its DAG (laid out by the
    vendored dagre), each task coloured by its state as it changes; a task's log and outputs; a
    rerun from a task keeps what is upstream."""
    jobs.token("pia")
    browser_login(page, jobs.hub, "pia")
    page.wait_for_url("**/hub/**")
    page.goto(jobs.url)
    page.wait_for_selector("text=Pipelines")
    page.fill(
        "#p-spec",
        "name: loop\ntasks:\n  a: {depends: [b], job: {command: 'true'}}\n  b: {depends: [a], job: {command: 'true'}}\n",
    )
    page.click("#pipeline-form button[type=submit]")
    page.wait_for_function("document.getElementById('pipeline-error').textContent.includes('tasks.a.depends: a cycle')")
    spec = (
        "name: daily\n"
        "params: {n: 3}\n"
        "tasks:\n"
        "  prepare:\n"
        "    job: {command: [sh, -c, 'sleep 1; mkdir -p runs/{{run}} && seq {{params.n}} > {{outputs.data}}']}\n"
        "    outputs: {data: 'runs/{{run}}/data.txt'}\n"
        "  count:\n"
        "    depends: [prepare]\n"
        "    job: {command: [sh, -c, 'echo lines=$(wc -l < {{tasks.prepare.outputs.data}})']}\n"
        "  sum:\n"
        "    depends: [prepare]\n"
        "    job: {command: [sh, -c, 'echo sum=$(paste -sd+ {{tasks.prepare.outputs.data}} | bc)']}\n"
        "  report:\n"
        "    depends: count.Succeeded && sum.Succeeded\n"
        "    job: {command: [echo, reported]}\n"
        "  alert:\n"
        "    depends: count.Failed || sum.Failed\n"
        "    job: {command: [echo, alert]}\n"
    )
    page.fill("#p-spec", spec)
    page.fill("#p-params", "n=4")
    page.click("#pipeline-form button[type=submit]")
    page.wait_for_selector("#run-detail:not([hidden])")
    # drawn at once, prepare running (or done) while the rest wait; the colours follow the run
    page.wait_for_selector("#dag g.task[data-task=report]")
    assert page.evaluate("typeof dagre") == "object"
    assert page.locator("#dag g.task").count() == 5 and page.locator("#dag path[marker-end]").count() == 6
    page.wait_for_function("document.getElementById('r-d-status').textContent === 'succeeded'", timeout=60000)
    page.wait_for_selector("#dag g.task.succeeded[data-task=report]")
    page.wait_for_selector("#dag g.task.skipped[data-task=alert]")
    assert page.inner_text("#r-d-backend") == "The jobs service runs it: each task is one of your jobs"
    # laid out left to right: prepare before count and sum, report after them
    xs = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#dag g.task')].map("
        "g => [g.dataset.task, g.querySelector('rect').x.baseVal.value]))"
    )
    assert xs["prepare"] < xs["count"] == xs["sum"] < xs["report"], xs
    page.screenshot(path=os.path.join(tmp_path, "pipelines-page.png"), full_page=True)
    page.locator("#dag g.task[data-task=count]").click()
    page.wait_for_function("document.getElementById('t-log').textContent.includes('lines=4')")
    page.locator("#dag g.task[data-task=prepare]").click()
    page.wait_for_function("document.getElementById('t-outputs').textContent.includes('data: runs/')")
    # rerun from sum: a new run, prepare and count kept
    page.locator("#dag g.task[data-task=sum]").click()
    first = page.inner_text("#r-d-name")
    page.click("#t-rerun")
    page.wait_for_function(f"document.getElementById('r-d-name').textContent !== {first!r}")
    page.wait_for_function("document.getElementById('r-d-status').textContent === 'succeeded'", timeout=60000)
    page.locator("#dag g.task[data-task=prepare]").click()
    page.wait_for_function("document.getElementById('t-message').textContent.startsWith('kept from run')")
    origin = page.text_content("#dag g.task[data-task=prepare] text.origin")
    assert origin.startswith("kept · ") and page.locator("#dag text.origin").count() == 2, origin
    assert page.locator("#runs tr").count() == 2
    page.screenshot(path=os.path.join(tmp_path, "pipelines-rerun.png"), full_page=True)
    # on a schedule: listed with its next run, stopped from the list
    page.fill("#p-spec", spec + "schedule: {cron: '0 3 * * *', timezone: Europe/Paris}\n")
    page.click("#p-schedule")
    page.wait_for_selector("#schedules tr.schedule[data-pipeline=daily]")
    assert "0 3 * * * (Europe/Paris)" in page.inner_text("#schedules")
    page.screenshot(path=os.path.join(tmp_path, "pipelines-schedule.png"), full_page=True)
    page.click("#schedules tr.schedule button")
    page.wait_for_selector("#schedules-table", state="hidden")
