"""An OME-Zarr result read over real HTTP by the real readers, from a real ``scopeflow server``.

The job's run holds an OME-Zarr written by scopeflow's own writer
(:func:`scopeflow.io.write_ome_zarr`, NGFF 0.4 on Zarr v2 and NGFF 0.5 on Zarr v3, a pyramid
of three levels); a download token (``POST /api/v1/web/jobs/{id}/download-token``) makes its
``/dl/<token>/outputs/…`` URL, which ``zarr.open_group`` (zarr 3 over fsspec's HTTP file system,
aiohttp) and ome-zarr-py (``parse_url`` + ``Reader``) open as they would any web-hosted image:
every level's pixels must equal what the writer stored, level 0 the written array. The same
links answer CORS (a viewer page on another origin, such as vizarr), and the folder comes back
as one zip (``results.zip?prefix=…``).

The job is made the way ``tests/unit/service/test_web_downloads.py`` makes one (its run's
``outputs/`` written directly; the server serves results whatever the job's state), so that the
readers' test takes seconds, not a pipeline run.

In a real headless Chromium (skipped without it, like ``test_web_ui.py``): a page served from
another origin reads the links with ``fetch`` (a ranged, preflighted request; a missing chunk's
404) but not the bearer-token API; and the web UI lists the OME-Zarr of a finished ``toy`` job
as one row whose zip link downloads that folder. ``SCOPEFLOW_WEB_SCREENSHOTS=DIR`` keeps the
screenshot of that table there (``results-zarr.png``).
"""

from __future__ import annotations

import functools
import http.server
import io
import itertools
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import zarr

from scopeflow.io import write_ome_zarr
from scopeflow.testing import Server
from tests.integration.conftest import service_data

pytestmark = pytest.mark.timeout(120)

SHAPE = (1, 2, 4, 48, 40)  # t, c, z, y, x


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``scopeflow server`` (API and worker) with one user, alice."""
    with Server(service_data(tmp_path_factory.mktemp("zarr-http"))) as srv:
        yield srv


def _image() -> npt.NDArray[np.uint16]:
    """Known values: a ramp per channel plus a little noise (so every chunk differs)."""
    rng = np.random.default_rng(7)
    t, c, z, y, x = np.indices(SHAPE)
    ramp = 1000 * c + 50 * z + 3 * y + 2 * x + t
    return (ramp + rng.integers(0, 7, SHAPE)).astype(np.uint16)


def _login(srv: Server) -> dict[str, str]:
    r = httpx.post(f"{srv.url}/api/v1/auth/login", json={"name": "alice", "password": "pw"})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


def _job_with_zarr(srv: Server, ngff: str, *, run_it: bool = False) -> tuple[str, str, Path]:
    """A ``toy`` job of alice whose run outputs hold ``fused.ome.zarr``: id, token, run folder.

    ``run_it``: start the job and wait until it has succeeded before the image is written
    (the web UI shows the results of a finished job only).
    """
    api = f"{srv.url}/api/v1"
    auth = _login(srv)
    body = {"template": "toy", "name": f"zarr {ngff}", "params": {"units": 1}}
    r = httpx.post(f"{api}/jobs", json=body, headers=auth)
    assert r.status_code == 201, r.text
    job_id: str = r.json()["id"]
    if run_it:
        assert httpx.post(f"{api}/jobs/{job_id}/start", headers=auth).is_success
        deadline = time.monotonic() + 90
        while (state := httpx.get(f"{api}/jobs/{job_id}", headers=auth).json()["state"]) in (
            "created",
            "ready",
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, f"the toy job is still {state}:\n{srv.log()}"
            time.sleep(0.3)
        assert state == "succeeded", srv.log()
    run = srv.data / "jobs" / "alice" / job_id / "run"
    (run / "outputs").mkdir(parents=True, exist_ok=True)
    write_ome_zarr(
        run / "outputs" / "fused.ome.zarr",
        _image(),
        axes="tczyx",
        voxel_size=(2.0, 0.5, 0.5),
        channel_names=["dapi", "gfp"],
        n_levels=3,
        chunks=(1, 1, 2, 16, 16),
        ngff_version=ngff,
    )
    if not run_it:
        (run / "summary.json").write_text('{"status": "succeeded"}', encoding="utf-8")
    r = httpx.post(f"{api}/web/jobs/{job_id}/download-token", headers=auth, json={"ttl_s": 600})
    assert r.status_code == 200, r.text
    token: str = r.json()["token"]
    return job_id, token, run


def _stored_levels(path: Path) -> list[npt.NDArray[Any]]:
    """Every pyramid level as the writer stored it, read from the local folder."""
    group = zarr.open_group(str(path), mode="r")
    paths = [d["path"] for d in _multiscales(dict(group.attrs))[0]["datasets"]]
    return [np.asarray(group[p][...]) for p in paths]


def _multiscales(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``multiscales`` of NGFF 0.4 (top level) or 0.5 (under ``ome``)."""
    found: list[dict[str, Any]] = (attrs.get("ome") or attrs)["multiscales"]
    return found


@pytest.mark.parametrize(("ngff", "zarr_format"), [("0.4", 2), ("0.5", 3)])
def test_ome_zarr_opens_over_http(server: Server, ngff: str, zarr_format: int) -> None:
    from ome_zarr.format import format_from_version
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    job_id, token, run = _job_with_zarr(server, ngff)
    stored = _stored_levels(run / "outputs" / "fused.ome.zarr")
    assert len(stored) == 3 and all(a.size > b.size for a, b in itertools.pairwise(stored))
    np.testing.assert_array_equal(stored[0], _image())
    url = f"{server.url}/dl/{token}/outputs/fused.ome.zarr"

    # zarr-python 3 over fsspec's HTTP file system (aiohttp)
    group = zarr.open_group(url, mode="r")
    assert group.metadata.zarr_format == zarr_format
    datasets = _multiscales(dict(group.attrs))[0]["datasets"]
    assert len(datasets) == 3
    for level, (dataset, expected) in enumerate(zip(datasets, stored, strict=True)):
        remote = group[dataset["path"]]
        assert isinstance(remote, zarr.Array)
        assert remote.shape == expected.shape and remote.dtype == expected.dtype, level
        np.testing.assert_array_equal(remote[...], expected, err_msg=f"level {level}")
    np.testing.assert_array_equal(
        group[datasets[0]["path"]][0, 1, 2:4, 10:30, 5:9], _image()[0, 1, 2:4, 10:30, 5:9]
    )  # a region across a few chunks

    # ome-zarr-py: parse_url + Reader, as napari-ome-zarr does
    location = parse_url(url, mode="r", fmt=format_from_version(ngff))
    assert location is not None, f"ome-zarr did not recognise {url}"
    nodes = list(Reader(location)())
    image = next(n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs))
    assert len(image.data) == 3
    for level, (dask_level, expected) in enumerate(zip(image.data, stored, strict=True)):
        np.testing.assert_array_equal(np.asarray(dask_level), expected, err_msg=f"level {level}")
    assert image.metadata.get("channel_names") == ["dapi", "gfp"]

    # a viewer on another origin: CORS on the files, on a missing chunk's 404, the preflight
    origin = {"Origin": "http://viewer.example"}
    meta = "zarr.json" if zarr_format == 3 else ".zattrs"
    r = httpx.get(f"{url}/{meta}", headers=origin)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "content-range" in r.headers["access-control-expose-headers"].lower()
    r = httpx.get(f"{url}/0/no-such-chunk", headers=origin | {"Range": "bytes=0-3"})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*"
    preflight = origin | {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    r = httpx.options(f"{url}/{meta}", headers=preflight)
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert "range" in r.headers["access-control-allow-headers"].lower()

    # the folder as one zip, names relative to the run
    r = httpx.get(
        f"{server.url}/dl/{token}/results.zip", params={"prefix": "outputs/fused.ome.zarr"}
    )
    assert r.status_code == 200, r.text
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        names = set(zf.namelist())
    on_disk = {
        p.relative_to(run).as_posix()
        for p in (run / "outputs" / "fused.ome.zarr").rglob("*")
        if p.is_file()
    }
    assert names == on_disk and all(n.startswith("outputs/fused.ome.zarr/") for n in names)
    assert job_id in r.headers["content-disposition"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A static page served from another origin (127.0.0.1, another port): a viewer's site."""
    site = tmp_path / "viewer"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>viewer</title>", encoding="utf-8")
    handler = functools.partial(_Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


_FETCH = """async ({ base, api }) => {
  const r = await fetch(`${base}/zarr.json`,
    { headers: { Range: "bytes=0-9", "If-None-Match": '"not-this"' } });  // preflighted
  const ranged = { status: r.status, range: r.headers.get("Content-Range"),
    etag: r.headers.get("ETag"), accept: r.headers.get("Accept-Ranges"),
    bytes: (await r.arrayBuffer()).byteLength };
  const missing = (await fetch(`${base}/0/no-such-chunk`)).status;
  let apiAnswer = "readable";
  try { await fetch(api); } catch (e) { apiAnswer = e.name; }
  return { ranged, missing, api: apiAnswer };
}"""


def test_a_browser_reads_the_zarr_links_and_the_ui_lists_the_folder_once(
    browser_page: tuple[Any, Any], server: Server, other_origin: str, shots: Path, tmp_path: Path
) -> None:
    page, expect = browser_page
    job_id, token, run = _job_with_zarr(server, "0.5", run_it=True)
    zarr_files = sorted(
        p.relative_to(run).as_posix()
        for p in (run / "outputs" / "fused.ome.zarr").rglob("*")
        if p.is_file()
    )
    size = sum((run / name).stat().st_size for name in zarr_files)
    others = [p for p in (run / "outputs").rglob("*") if p.is_file() and ".zarr" not in str(p)]
    assert others, "the toy job writes files of its own"
    # a viewer's page on another origin: the links are readable, the API is not
    page.goto(other_origin + "/index.html")
    base = f"{server.url}/dl/{token}/outputs/fused.ome.zarr"
    seen = page.evaluate(_FETCH, {"base": base, "api": f"{server.url}/api/v1/health"})
    total = (run / "outputs" / "fused.ome.zarr" / "zarr.json").stat().st_size
    etag = httpx.head(f"{base}/zarr.json").headers["etag"]  # the file's own, asked anew
    assert etag
    assert seen["ranged"] == {
        "status": 206,
        "range": f"bytes 0-9/{total}",
        "etag": etag,
        "accept": "bytes",
        "bytes": 10,
    }, seen
    assert seen["missing"] == 404, seen
    assert seen["api"] == "TypeError", seen  # blocked by the browser: no CORS there

    # the web UI: the OME-Zarr is one row, and its zip link downloads that folder
    page.goto(server.url + "/#/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("pw")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Jobs")).to_be_visible()
    page.goto(f"{server.url}/#/job/{job_id}")
    row = page.locator("#results tr.zarr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("outputs/fused.ome.zarr")
    expect(row).to_contain_text(f"Zarr, {len(zarr_files)} files")
    assert row.get_attribute("data-folder") == "outputs/fused.ome.zarr"
    chunk_links = page.locator("#results a.download[data-path^='outputs/fused.ome.zarr']")
    expect(chunk_links).to_have_count(0)
    for other in others:  # the other files keep their own rows
        name = other.relative_to(run).as_posix()
        expect(page.locator(f"#results a.download[data-path='{name}']")).to_have_count(1)
    expect(page.locator("#results a.download[data-path='summary.json']")).to_have_count(1)
    link = row.get_by_role("link", name="Download outputs/fused.ome.zarr (zip)")
    href = link.get_attribute("href")
    assert href.startswith("/dl/") and href.endswith(
        "/results.zip?prefix=outputs%2Ffused.ome.zarr"
    ), href
    row_size = row.locator("td").nth(1).inner_text()
    assert row_size == page.evaluate(f"import('/static/js/util.js').then((u) => u.bytes({size}))")
    page.locator("#results").screenshot(path=str(shots / "results-zarr.png"))
    with page.expect_download() as info:
        link.click()
    assert info.value.suggested_filename == f"{job_id}-fused.ome.zarr.zip"
    info.value.save_as(tmp_path / "zarr.zip")
    with zipfile.ZipFile(tmp_path / "zarr.zip") as zf:
        assert sorted(zf.namelist()) == zarr_files
