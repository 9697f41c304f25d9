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
