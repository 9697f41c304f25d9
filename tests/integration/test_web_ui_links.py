"""The web UI's download tokens (``links.js``) in a real headless Chromium.

Callers that ask for a token while one is being asked for share that request (and a failed one
is not kept); the previews' links follow a renewed token, and a preview clicked after its token
is spent opens with a new one. The page's clock is moved forward (``Date.now``) to spend a
token without waiting ten minutes.
"""

from __future__ import annotations

import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from scopeflow.client import Client
from scopeflow.testing import Server

pytestmark = pytest.mark.timeout(180)

TOKEN_REQUEST = re.compile(r".*/api/v1/web/jobs/[0-9a-f]+/download-token$")
SHIFT_CLOCK = """ms => {
  const now = Date.now.bind(Date);
  Date.now = () => now() + ms;
}"""
"""Moves the page's ``Date.now`` forward by ``ms`` (links.js times its tokens with it)."""


def _spend_token(page: Any) -> None:
    """Ten minutes pass for the page; a second for the service, whose tokens name their expiry
    in whole seconds (two asked for in the same second are the same)."""
    time.sleep(1.1)
    page.evaluate(SHIFT_CLOCK, 10 * 60_000)


def _png(width: int = 4, height: int = 3) -> bytes:
    """A small grey PNG (that a browser decodes: ``naturalWidth > 0``)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\0" + bytes([128] * width) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _finished_job(srv: Server, previews: int = 0) -> tuple[str, str]:
    """(token of alice, id of a succeeded job with ``previews`` PNGs in outputs/previews/)."""
    with Client(srv.url) as c:
        c.login("alice", "pw")
        job_id = str(c.create_job("toy", "links", {"units": 1})["id"])
        c.start(job_id)
        assert c.wait(job_id, timeout=90, poll_s=0.3)["state"] == "succeeded", srv.log()
        assert c.token is not None
        token = c.token
    folder = srv.data / "jobs" / "alice" / job_id / "run" / "outputs" / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(previews):
        (folder / f"p{i}.png").write_bytes(_png())
    return token, job_id


def _count_token_requests(page: Any) -> list[str]:
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if TOKEN_REQUEST.match(r.url) else None)
    return seen


def _link_token(href: str) -> str:
    m = re.match(r"^(?:https?://[^/]+)?/dl/([^/]+)/", href)
    assert m, href
    return m.group(1)


def test_concurrent_callers_share_one_token_request_and_a_failure_is_not_kept(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    page, expect = browser_page
    token, job_id = _finished_job(web_server)
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    page.goto(f"{web_server.url}/#/job/{job_id}")
    expect(page.locator("#download-zip")).to_be_visible()  # the results' token is held
    asked = _count_token_requests(page)
    ask_four = """async ([id, ttl]) => {
      const links = await import("/static/js/links.js");
      const got = await Promise.allSettled([1, 2, 3, 4].map(() => links.linkToken(id, ttl)));
      return got.map((g) => (g.status === "fulfilled" ? g.value.token : "failed"));
    }"""
    # four callers at once (a ttl nothing asked for yet): one request, one token for all
    tokens = page.evaluate(ask_four, [job_id, 120])
    assert len(asked) == 1, asked
    assert len(set(tokens)) == 1 and "failed" not in tokens, tokens

    # a request that fails fails every caller waiting on it, and is not kept for the next ones
    def unavailable(route: Any) -> None:
        route.fulfill(status=503, json={"detail": "try later"})

    page.route(TOKEN_REQUEST, unavailable)
    assert page.evaluate(ask_four, [job_id, 130]) == ["failed"] * 4
    assert len(asked) == 2, asked
    page.unroute(TOKEN_REQUEST, unavailable)
    tokens = page.evaluate(ask_four, [job_id, 130])
    assert len(asked) == 3, asked
    assert len(set(tokens)) == 1 and "failed" not in tokens, tokens


def test_previews_follow_a_renewed_token(
    browser_page: tuple[Any, Any], web_server: Server, tmp_path: Path
) -> None:
    page, expect = browser_page
    token, job_id = _finished_job(web_server, previews=3)
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    asked = _count_token_requests(page)
    page.goto(f"{web_server.url}/#/job/{job_id}")
    previews = page.locator("#previews figure a")
    expect(previews).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#previews img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    hrefs = previews.evaluate_all("as => as.map(a => a.getAttribute('href'))")
    first = {_link_token(h) for h in hrefs}
    assert len(first) == 1, hrefs
    assert len(asked) == 1, asked

    # the token is spent (the page's clock: ten minutes later); a download renews it, and the
    # previews' links take the new token at once
    _spend_token(page)
    with page.expect_download() as info:
        page.locator("#results a.download[data-path='outputs/previews/p0.png']").click()
    info.value.save_as(tmp_path / "p0.png")
    assert (tmp_path / "p0.png").read_bytes() == _png()
    assert len(asked) == 2, asked
    hrefs = previews.evaluate_all("as => as.map(a => a.getAttribute('href'))")
    second = {_link_token(h) for h in hrefs}
    assert len(second) == 1 and second != first, (first, hrefs)

    # spent again: a click on a preview gets a new token first, then opens it
    _spend_token(page)
    with page.expect_popup() as popup:
        previews.nth(1).click()
    opened = popup.value
    opened.wait_for_load_state()
    third = _link_token(opened.url)
    assert third not in first | second, (first, second, opened.url)
    assert opened.url.endswith("/outputs/previews/p1.png"), opened.url
    assert len(asked) == 3, asked
    assert _link_token(previews.nth(1).get_attribute("href")) == third
