"""The web UI end to end in a real headless Chromium (Debian's ``chromium``, driven by
Playwright through ``executable_path``; no browser is ever downloaded) against a real
``scopeflow server`` and its worker.

log in (a wrong password first) → new-job wizard (form from the template's JSON Schema, a 422
problem shown next to its field, the config.yaml preview, an edited YAML applied back to the
form) → upload a folder of two TIFFs → start → the step-by-unit grid turns done → a unit's log →
results (previews section, summary) → the zip downloaded.

A second test runs a ``cyto-ifc`` job on tiny synthetic IFC data, which writes PNG previews:
an upload cancelled while it runs (the jobs table showing it meanwhile), the upload again, the
previews loaded (``naturalWidth > 0``) from plain ``/dl/<token>/…`` links, a single file and the
zip downloaded through such links, from the results and from the jobs table.

``SCOPEFLOW_WEB_SCREENSHOTS=DIR`` writes the screenshots there (``docs/screenshots`` to refresh
the documentation's); otherwise they go to the test's temporary folder (the ``shots`` fixture).
"""

from __future__ import annotations

import contextlib
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from scopeflow.testing import Server, make_cyto_dataset
from tests.integration.conftest import example_images

pytestmark = pytest.mark.timeout(180)


def test_web_ui_end_to_end(
    browser_page: tuple[Any, Any], web_server: Server, shots: Path, tmp_path: Path
) -> None:
    page, expect = browser_page
    images = tmp_path / "data" / "images"  # uploaded as a folder: images/img0.tif, img1.tif
    example_images(images)
    _drive(page, expect, url=web_server.url, images=images, shots=shots, tmp=tmp_path)


def _drive(page: Any, expect: Any, *, url: str, images: Path, shots: Path, tmp: Path) -> None:
    # login: a wrong password is an inline error; the right one shows the jobs table
    page.goto(url + "/")
    expect(page).to_have_url(f"{url}/#/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#login-error")).to_have_text("Wrong user name or password.")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('scopeflow.token')")

    # wizard: the form comes from the template's JSON Schema
    page.get_by_role("link", name="New job").first.click()
    page.get_by_label("Template", exact=True).select_option("example-segment")
    page.get_by_label("Job name *").fill("web run")
    sigma = page.locator("#f-segment__sigma")
    expect(sigma).to_have_value("1.5")  # the model's default
    expect(page.locator("#f-segment__sigma-help")).to_contain_text("Gaussian smoothing")
    sigma.fill("-1")  # the preview's check puts the API's message next to the field
    expect(page.locator("#f-segment__sigma-error")).to_contain_text("greater than or equal to 0")
    page.get_by_role("button", name="Create job").click()  # the API's 422 too
    expect(page.locator("#f-segment__sigma-error")).to_contain_text("greater than or equal")
    sigma.fill("2")
    yaml_box = page.locator("#config-yaml")
    expect(yaml_box).to_have_value(_containing("sigma: 2"))
    expect(yaml_box).to_have_value(_containing("pattern: '*.tif'"))
    # an edited config.yaml goes back into the form
    yaml_box.fill(yaml_box.input_value() + "match_distance: 6.5\n")
    page.get_by_role("button", name="Apply edited YAML to the form").click()
    expect(page.locator("#f-match_distance")).to_have_value("6.5")
    page.screenshot(path=str(shots / "wizard.png"), full_page=True)
    page.get_by_role("button", name="Create job").click()

    # the job page: upload a folder (webkitdirectory input), then start
    expect(page.get_by_role("heading", name="Upload input files")).to_be_visible()
    page.locator("#pick-folder").set_input_files(str(images))
    expect(page.locator("#upload-stats")).to_contain_text("all files uploaded")
    expect(page.locator("#input-files")).to_contain_text("images/img0.tif")
    expect(page.locator("#input-files")).to_contain_text("images/img1.tif")
    page.screenshot(path=str(shots / "upload.png"))
    page.get_by_role("button", name="Start job web run").click()

    # the grid turns done; a unit's log
    expect(page.locator("h1 .state")).to_have_text("succeeded", timeout=60_000)
    expect(page.locator("#overall-text")).to_contain_text("(100 %)")
    cells = page.locator("#grid button.cell")
    assert cells.count() >= 4
    assert set(cells.evaluate_all("cs => cs.map(c => c.dataset.state)")) == {"done"}
    page.locator("#grid tr[data-step='segment'] button.cell").first.click()
    expect(page.locator("#log-title")).to_contain_text("segment / img0")
    expect(page.locator("#unit-log")).to_contain_text("objects in")

    # results: files, summary, previews (the example pipeline writes no PNG: said so)
    expect(page.locator("#results")).to_contain_text("outputs/objects.csv")
    expect(page.locator("#summary")).to_contain_text("segment")
    expect(page.locator("#no-previews")).to_be_visible()
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    with page.expect_download() as info:
        page.locator("#download-zip").click()
    target = tmp / "results.zip"
    info.value.save_as(target)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
    assert "summary.json" in names and "outputs/objects.csv" in names, names

    # back to the table: the job is listed as succeeded; the filter keeps it
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_label("State", exact=True).select_option("succeeded")
    expect(page.locator("#jobs tbody tr[data-state='succeeded']")).to_have_count(1)
    page.get_by_label("State", exact=True).select_option("failed")
    expect(page.locator("#jobs tbody")).to_contain_text("No jobs yet.")

    # a narrow window: the page does not scroll sideways (the table scrolls in its box)
    page.set_viewport_size({"width": 400, "height": 800})
    page.get_by_label("State", exact=True).select_option("")
    expect(page.locator("#jobs tbody tr[data-state='succeeded']")).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth") <= 400
    page.screenshot(path=str(shots / "jobs-narrow.png"))


def _containing(fragment: str) -> Any:
    """A regular expression matching a text that contains ``fragment``."""
    return re.compile(re.escape(fragment))


def test_web_ui_previews_stream_links_and_cancel(
    browser_page: tuple[Any, Any], web_server: Server, shots: Path, tmp_path: Path
) -> None:
    page, expect = browser_page
    make_cyto_dataset(tmp_path / "ifcdata", kind="ifc", n=60, seed=0)
    _drive_ifc(
        page,
        page.context,
        expect,
        url=web_server.url,
        ifc=tmp_path / "ifcdata" / "ifc",
        shots=shots,
        tmp=tmp_path,
    )


def _drive_ifc(
    page: Any, context: Any, expect: Any, *, url: str, ifc: Path, shots: Path, tmp: Path
) -> None:
    page.goto(url + "/#/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.get_by_role("link", name="New job").first.click()
    page.get_by_label("Template", exact=True).select_option("cyto-ifc")
    page.get_by_label("Job name *").fill("ifc run")
    expect(page.locator("#config-yaml")).to_have_value(_containing("pattern: ifc/ch{c}.tif"))
    page.get_by_role("button", name="Create job").click()
    expect(page.get_by_role("heading", name="Upload input files")).to_be_visible()
    job_id = page.evaluate("location.hash").removeprefix("#/job/")

    # an upload whose chunks hang: the jobs table (another tab) shows it; then it is cancelled
    held: list[Any] = []
    chunks = re.compile(r".*/files/.*[?]offset=\d+$")

    def hold(route: Any) -> None:
        held.append(route)

    page.route(chunks, hold)
    with page.expect_request(lambda r: r.method == "PUT"):
        page.locator("#pick-folder").set_input_files(str(ifc))
    expect(page.locator("#cancel-upload")).to_be_visible()
    other = context.new_page()
    other.goto(url + "/#/login")
    other.evaluate("t => sessionStorage.setItem('scopeflow.token', t)", _token(page))
    other.evaluate("location.hash = '#/jobs'")
    row = other.locator(f"#jobs tbody tr[data-job='{job_id}']")
    expect(row.locator("td.upload")).to_have_text("1 file uploading")
    other.close()
    page.locator("#cancel-upload").click()
    expect(page.locator("#upload-stats")).to_contain_text("upload cancelled (6 not uploaded)")
    expect(page.locator("#upload tr[data-path='ifc/ch0.tif']")).to_contain_text("cancelled")
    expect(page.locator("#input-files")).to_have_text("No input files yet.")
    expect(page.locator("#pending-uploads")).not_to_contain_text("Unfinished")
    expect(page.locator("#cancel-upload")).to_be_hidden()
    for route in held:
        with contextlib.suppress(Exception):  # the browser dropped the request already
            route.abort()
    page.unroute(chunks, hold)

    # the real upload, the run
    page.locator("#pick-folder").set_input_files(str(ifc))
    expect(page.locator("#upload-stats")).to_contain_text("all files uploaded")
    expect(page.locator("#input-files")).to_contain_text("ifc/ch5.tif")
    page.get_by_role("button", name="Start job ifc run").click()
    expect(page.locator("h1 .state")).to_have_text("succeeded", timeout=60_000)

    # previews: plain /dl/<token>/… images that the browser loads itself
    imgs = page.locator("#previews img")
    expect(imgs.first).to_be_attached()
    assert imgs.count() >= 2
    for i in range(imgs.count()):
        imgs.nth(i).scroll_into_view_if_needed()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#previews img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    srcs = imgs.evaluate_all("is => is.map(i => i.getAttribute('src'))")
    assert all(src.startswith("/dl/") for src in srcs), srcs
    assert any(src.endswith("outputs/qc/cells.png") for src in srcs), srcs
    page.screenshot(path=str(shots / "results.png"), full_page=True)

    # a single file and the zip through plain links (streamed by the browser)
    link = page.locator("#results a.download[data-path='outputs/qc/cells.png']")
    assert link.get_attribute("href").startswith("/dl/")
    with page.expect_download() as info:
        link.click()
    info.value.save_as(tmp / "cells.png")
    assert (tmp / "cells.png").read_bytes().startswith(b"\x89PNG")
    assert page.locator("#download-zip").get_attribute("href").endswith("/results.zip")

    # the jobs table: upload state and the zip of a finished job
    page.get_by_role("link", name="Jobs", exact=True).click()
    row = page.locator(f"#jobs tbody tr[data-job='{job_id}']")
    expect(row).to_have_attribute("data-state", "succeeded")
    with page.expect_download() as info:
        row.get_by_role("button", name="Download the results of job ifc run (zip)").click()
    info.value.save_as(tmp / "ifc.zip")
    with zipfile.ZipFile(tmp / "ifc.zip") as zf:
        names = zf.namelist()
    assert "summary.json" in names and "outputs/qc/cells.png" in names, names


def _token(page: Any) -> str:
    token: str = page.evaluate("sessionStorage.getItem('scopeflow.token')")
    return token


def _axe_violations(page: Any) -> list[str]:
    """axe-core's WCAG 2.x A/AA violations of the page as it is now: ``rule: nodes``."""
    from axe_playwright_python.sync_playwright import Axe

    options = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
    results = Axe().run(page, options={**options, "resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): " + ", ".join(str(n["target"]) for n in v["nodes"])
        for v in results.response["violations"]
    ]


def _tab_to(page: Any, selector: str, presses: int = 25) -> None:
    """Press Tab until the element ``selector`` has the focus (fails when it never gets it)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is not reachable with the Tab key")


def test_web_ui_demo_data_yaml_job_keyboard_and_axe(
    browser_page: tuple[Any, Any], web_server: Server
) -> None:
    """Log in with the keyboard; the wizard creates a job from an edited config.yaml with the
    template's demo data (no upload), which runs to previews; axe-core finds no WCAG 2.1 A/AA
    violation on the login page, the jobs table, the wizard, the job page and the results."""
    url = web_server.url
    checked: dict[str, list[str]] = {}
    page, expect = browser_page
    page.goto(url + "/#/login")
    expect(page.get_by_label("User name")).to_be_visible()
    checked["login"] = _axe_violations(page)
    _tab_to(page, "#login-name")
    page.keyboard.type("alice")
    _tab_to(page, "#login-password")
    page.keyboard.type("pw")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    checked["jobs"] = _axe_violations(page)

    page.get_by_role("link", name="New job").first.click()
    page.get_by_label("Template", exact=True).select_option("cyto-ifc")
    page.get_by_label("Job name *").fill("demo run")
    demo = page.get_by_label("Use demo data instead of uploading files")
    expect(page.locator("#demo-help")).to_contain_text("200 synthetic cells")
    yaml_box = page.locator("#config-yaml")
    expect(yaml_box).to_have_value(_containing("pixel_size: 0.33"))
    checked["wizard"] = _axe_violations(page)
    # the job is made from the edited text, not applied to the form first
    yaml_box.fill(yaml_box.input_value().replace("pixel_size: 0.33", "pixel_size: 0.5"))
    _tab_to(page, "#use-demo")
    page.keyboard.press("Space")
    expect(demo).to_be_checked()
    _tab_to(page, "#create-job")
    page.keyboard.press("Enter")
    expect(page.locator("h1 .state")).to_have_text("ready")
    job_id = page.evaluate("location.hash").removeprefix("#/job/")
    expect(page.locator("#input-files")).to_contain_text("ifc/ch5.tif")
    job = page.evaluate(
        "async id => (await fetch(`/api/v1/jobs/${id}`, {headers: {Authorization:"
        " `Bearer ${sessionStorage.getItem('scopeflow.token')}`}})).json()",
        job_id,
    )
    assert job["params"]["pixel_size"] == 0.5, job["params"]
    checked["job ready"] = _axe_violations(page)

    page.get_by_role("button", name="Start job demo run").click()
    expect(page.locator("h1 .state")).to_have_text("succeeded", timeout=90_000)
    expect(page.locator("#previews img").first).to_be_attached()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#previews img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    # a unit's log from the keyboard: a grid cell is a button
    _tab_to(page, "#grid button.cell", presses=60)
    page.keyboard.press("Enter")
    expect(page.locator("#log-title")).not_to_be_empty()
    checked["results"] = _axe_violations(page)
    assert all(not v for v in checked.values()), checked


def test_the_upload_panel_lists_and_removes_input_files(
    browser_page: tuple[Any, Any], web_server: Server, tmp_path: Path
) -> None:
    from scopeflow.client import Client

    page, expect = browser_page
    with Client(web_server.url) as c:
        c.login("alice", "pw")
        job_id = c.create_job("toy", "web", {"units": 1})["id"]
        for name, data in [("images/a b.tif", b"a" * 3000), ("c.tif", b"c")]:
            local = tmp_path / "f.bin"
            local.write_bytes(data)
            c.upload(job_id, local, name)
        token = c.token
    page.add_init_script(f"sessionStorage.setItem('scopeflow.token', {token!r})")
    deletes: list[str] = []  # every DELETE the page sends, as the URL's decoded path

    def record(request: Any) -> None:
        if request.method == "DELETE":
            deletes.append(unquote(urlsplit(request.url).path))

    page.on("request", record)
    dialogs: list[tuple[str, str]] = []  # (the confirm's text, what was answered)

    def answer(accept: bool) -> Callable[[Any], None]:
        def handle(dialog: Any) -> None:
            dialogs.append((dialog.message, "accept" if accept else "dismiss"))
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        return handle

    page.goto(f"{web_server.url}/#/job/{job_id}")
    files = page.locator("#input-files")
    expect(files).to_contain_text("images/a b.tif (2.9 KiB)")
    expect(files).to_contain_text("c.tif (1 B)")
    expect(page.locator("h1 .state")).to_have_text("ready")
    remove_a = page.get_by_role("button", name="Remove images/a b.tif")
    page.once("dialog", answer(False))  # "Cancel" in the confirm: nothing goes
    remove_a.click()
    expect(files).to_contain_text("images/a b.tif")
    page.once("dialog", answer(True))
    remove_a.click()
    expect(files).not_to_contain_text("images/a b.tif")
    expect(files).to_contain_text("c.tif")
    page.once("dialog", answer(True))
    page.get_by_role("button", name="Remove c.tif").click()
    expect(files).to_have_text("No input files yet.")
    expect(page.locator("h1 .state")).to_have_text("created")
    inputs = web_server.data / "jobs" / "alice" / job_id / "input"
    assert not list(inputs.iterdir())
    # each confirm was shown and answered; the dismissed one sent nothing
    assert [(("a b.tif" in m), ("c.tif" in m), a) for m, a in dialogs] == [
        (True, False, "dismiss"),
        (True, False, "accept"),
        (False, True, "accept"),
    ], dialogs
    prefix = f"/api/v1/jobs/{job_id}/files/"
    assert sorted(deletes) == [f"{prefix}c.tif", f"{prefix}images/a b.tif"], deletes
