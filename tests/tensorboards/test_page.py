"""TensorBoards in a real browser: open a board from the page, TensorBoard's own UI shows the
written scalar chart through the hub; its data is readable from the board's pages only, never
from another page of the same origin with the user's cookie."""

import os

import pytest

from kubestudio.testing.localhub import browser_login

from .events import write_scalars
from .test_boards_service import boards  # noqa: F401 (the module's hub)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

FETCH = """async (url) => {
  const r = await fetch(url, {credentials: "same-origin"});
  return {status: r.status, body: (await r.text()).slice(0, 200)};
}"""


def test_open_a_board_from_the_page_and_see_the_chart(boards, page, tmp_path):  # noqa: F811
    write_scalars(os.path.join(boards.workspace("tina"), "runs", "exp1"), values=(1.0, 0.6, 0.3, 0.2))
    boards.token("tina")
    browser_login(page, boards.hub, "tina")
    page.wait_for_url("**/hub/**")
    page.goto(f"{boards.hub.url}/hub/home")
    assert page.locator("a[href$='/services/tensorboards/']").count() >= 1  # the hub's header links to it
    page.goto(boards.url)
    page.wait_for_selector("text=Open a TensorBoard")
    page.fill("#logdirs", "runs/nope")
    page.click("#board-form button[type=submit]")
    page.wait_for_function("document.getElementById('form-error').textContent.includes(\"no folder 'runs/nope'\")")
    page.fill("#logdirs", "runs/exp1")
    with page.expect_popup() as opened:
        page.click("#board-form button[type=submit]")
    board_page = opened.value
    board_page.wait_for_selector("text=loss", timeout=60000)  # TensorBoard's scalar card, after the starting page
    board_page.wait_for_timeout(1500)  # the chart draws
    board_page.screenshot(path=os.path.join(tmp_path, "tensorboard.png"), full_page=True)
    board_url = board_page.url
    assert "/services/tensorboards/b/" in board_url
    # the board's own page reads its data with fetch (no XSRF token: TensorBoard sends none)
    own = board_page.evaluate(FETCH, board_url.split("#")[0].rstrip("/") + "/data/runs")
    assert own["status"] == 200 and "runs_exp1" in own["body"], own
    # another page of the same origin, with the same cookie, cannot
    page.goto(f"{boards.hub.url}/hub/home")
    other = page.evaluate(FETCH, board_url.split("#")[0].rstrip("/") + "/data/runs")
    assert other["status"] in (401, 403) and "runs_exp1" not in other["body"], other
    page.goto(boards.url)
    page.wait_for_selector("td.status.running")
    page.screenshot(path=os.path.join(tmp_path, "boards-page.png"), full_page=True)
    page.click("text=Stop")
    page.wait_for_selector("#empty:not([hidden])")
