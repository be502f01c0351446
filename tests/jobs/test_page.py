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
    jobs.write("paige", "steps.py", "import os, sys, time\nrank = os.environ['RANK']\n"
               "for step in range(int(sys.argv[1])):\n    print(f'rank {rank} step {step}', flush=True)\n"
               "    time.sleep(0.5)\n")
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
    page.wait_for_function("document.getElementById('form-error').textContent.includes('script: must be a path inside your workspace')")

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
