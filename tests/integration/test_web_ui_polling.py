"""What the web UI asks the service, and when, in a real headless Chromium.

Playwright routes hold or answer the page's requests so that answers arrive late or out of
order, and its request events count what the page asks: a view left while its first request
was under way stops (no poller left behind), a log shown twice by overlapping reads, the jobs
table's upload counts asked for only when a job changed, and the wizard's previews applied
in the order they were asked for.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from scopeflow.client import Client
from scopeflow.testing import Server

pytestmark = pytest.mark.timeout(180)


def _login(srv: Server) -> tuple[Client, str]:
    """A client logged in as alice and its token."""
    c = Client(srv.url)
    c.login("alice", "pw")
    assert c.token is not None
    return c, c.token


def _count(page: Any, pattern: re.Pattern[str]) -> list[str]:
    """The URLs of the page's requests that match ``pattern``, from now on."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if pattern.fullmatch(r.url) else None)
    return seen


def _job_ids(urls: list[str]) -> list[str]:
    """The job id of each ``…/api/v1/jobs/ID/…`` URL."""
    return [u.split("/api/v1/jobs/")[1].split("/")[0] for u in urls]


def test_a_view_left_during_its_first_request_stops_polling(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    page, expect = browser_page
    c, token = _login(web_server)
    with c:
        job_id = str(c.create_job("toy", "slow", {"units": 1})["id"])  # created: polled
    job_url = re.compile(rf".*/api/v1/jobs/{job_id}$")
    held: list[Any] = []
    page.route(job_url, lambda route: held.append(route) if not held else route.continue_())
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    page.goto(f"{web_server.url}/#/job/{job_id}")
    for _ in range(100):  # the job view's first request, held
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1, held

    # the user goes to the jobs table before the job view's first answer came
    page.evaluate("location.hash = '#/jobs'")
    expect(page.locator("#jobs tr[data-job]")).to_have_count(1)
    held[0].continue_()
    page.wait_for_timeout(500)  # the job view's first answer arrives

    # the job view is not drawn into the jobs table's page, and does not poll
    asked = _count(page, job_url)
    page.wait_for_timeout(4000)  # the job view polls every 1.5 s
    assert asked == [], asked
    expect(page.locator("main h1")).to_have_count(1)
    expect(page.locator("main h1")).to_have_text("Jobs")
    expect(page.locator("#grid-box")).to_have_count(0)


def _hold_and_release(page: Any, held: list[Any], rounds: int, every_ms: int = 700) -> None:
    """Let the page run ``rounds`` times ``every_ms``, answering the held requests after each:
    requests made meanwhile wait for each other's answers, as on a slow connection."""
    for _ in range(rounds):
        page.wait_for_timeout(every_ms)
        while held:
            held.pop(0).continue_()


def test_a_log_read_by_overlapping_polls_is_shown_once(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    page, expect = browser_page
    c, token = _login(web_server)
    with c:
        job_id = str(c.create_job("toy", "logs", {"units": 1})["id"])
        c.start(job_id)
        assert c.wait(job_id, timeout=90, poll_s=0.3)["state"] == "succeeded", web_server.log()
        step = c.progress(job_id)["steps"][0]
        unit = next(iter(step["units"]))
    root = web_server.data / "jobs" / "alice" / job_id
    unit_text = "".join(f"unit line {i}\n" for i in range(5))
    sched_text = "".join(f"scheduler line {i}\n" for i in range(5))
    for path, text in (
        (root / "run" / "logs" / step["step"] / f"{unit}.log", unit_text),
        (root / "scheduler" / "stderr.log", sched_text),
    ):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    held: list[Any] = []
    logs = re.compile(rf".*/api/v1/jobs/{job_id}/logs\?.*")
    page.route(logs, lambda route: held.append(route))  # noqa: PLW0108 (not a builtin: playwright)
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    page.goto(f"{web_server.url}/#/job/{job_id}")
    # the page reads the scheduler's log when it opens and on its first refresh
    _hold_and_release(page, held, rounds=5)
    expect(page.locator("#sched-log")).to_contain_text("scheduler line 4")
    # a click on a cell reads the unit's log, and refreshes the page, which reads it too
    page.locator("#grid button.cell").first.click()
    _hold_and_release(page, held, rounds=5)
    expect(page.locator("#unit-log")).to_contain_text("unit line 4")
    _hold_and_release(page, held, rounds=3)
    assert page.locator("#sched-log").text_content() == sched_text
    assert page.locator("#unit-log").text_content() == unit_text


def test_the_jobs_table_asks_upload_counts_only_when_a_job_changed(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    page, expect = browser_page
    c, token = _login(web_server)
    with c:
        ids = [str(c.create_job("toy", f"waiting {i}", {"units": 1})["id"]) for i in range(3)]
    files = re.compile(r".*/api/v1/jobs/[0-9a-f]+/files")
    asked = _count(page, files)
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    page.goto(f"{web_server.url}/#/jobs")
    rows = page.locator("#jobs tbody tr[data-job]")
    expect(rows.locator("td.upload")).to_have_text(["no files yet"] * 3)
    page.wait_for_timeout(6500)  # three more refreshes of the table (every 2 s)
    assert sorted(_job_ids(asked)) == sorted(ids), asked  # one each, when first drawn

    # a job that changes (an upload declared: the job is "uploading") is asked again, once
    def declare(name: str) -> None:
        r = httpx.post(
            f"{web_server.url}/api/v1/jobs/{ids[0]}/files",
            json={"path": name, "size": 10, "sha256": "0" * 64},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 200, r.text

    declare("a.tif")
    row = page.locator(f"#jobs tbody tr[data-job='{ids[0]}']")
    expect(row.locator("td.upload")).to_have_text("1 file uploading")
    page.wait_for_timeout(2500)
    assert _job_ids(asked).count(ids[0]) == 2, asked

    # a second upload leaves the job "uploading" and unchanged: its count follows within five
    # refreshes (every 2 s)
    declare("b.tif")
    expect(row.locator("td.upload")).to_have_text("2 files uploading", timeout=20_000)


def test_the_wizard_keeps_the_newest_preview(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    page, expect = browser_page
    _, token = _login(web_server)
    held: list[Any] = []
    preview = re.compile(r".*/api/v1/web/config-preview$")
    holding = [True]
    page.route(preview, lambda route: held.append(route) if holding[0] else route.continue_())
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    page.goto(f"{web_server.url}/#/new")
    yaml = page.locator("#config-yaml")
    expect(page.get_by_label("Template", exact=True)).to_have_value("cyto-ifc")
    for _ in range(100):  # the first template's preview, held
        if held:
            break
        page.wait_for_timeout(50)
    page.get_by_label("Template", exact=True).select_option("toy")
    for _ in range(100):
        if len(held) == 2:
            break
        page.wait_for_timeout(50)
    assert len(held) == 2, held

    # the newer preview (toy) answers first, the older one (cyto-ifc) last: toy's stays
    holding[0] = False
    held[1].continue_()
    expect(yaml).to_have_value(re.compile(r"units: 8"))
    held[0].continue_()
    page.wait_for_timeout(1000)
    expect(yaml).to_have_value(re.compile(r"units: 8"))
    expect(yaml).not_to_have_value(re.compile(r"ifc/ch"))


def test_the_wizard_says_marked_below_only_when_it_marked_a_field(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    """A 422 from ``POST /jobs`` whose problems name no field of the form: its message."""
    page, expect = browser_page
    _, token = _login(web_server)
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    page.goto(f"{web_server.url}/#/new")
    expect(page.locator("#config-yaml")).to_have_value(re.compile(r"ifc/ch"))

    def refuse(route: Any) -> None:
        problem = {"loc": ["body", "template"], "msg": "no such template"}
        route.fulfill(status=422, json={"detail": [problem]})

    page.route(re.compile(r".*/api/v1/jobs$"), refuse)
    page.get_by_role("button", name="Create job").click()
    expect(page.locator("#wizard p.error[role=alert]").last).to_have_text(
        "body.template: no such template"
    )
    expect(page.locator("#wizard .invalid")).to_have_count(0)
