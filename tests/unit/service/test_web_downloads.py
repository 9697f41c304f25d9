"""Download links without a header (``scopeflow.service.web.downloads``), in process.

A token for one job's results: files with Range and HEAD, the zip (of all results or of one
folder), Zarr-like folders; refused when expired, forged, for another job, outside the results,
or asked for by a non-owner. The links answer CORS (any origin, errors included, the preflight);
the bearer-token API does not.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from scopeflow.service.app import API_PREFIX
from scopeflow.service.settings import ServiceSettings
from scopeflow.service.web.downloads import DownloadSigner
from tests.unit.service.conftest import Clock, create_job, login, service_app

BIG = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, ServiceSettings, Clock]]:
    with service_app(db_url, tmp_path) as (client, settings):
        clock = Clock()
        client.app.state.download_signer = DownloadSigner(clock=clock)  # type: ignore[attr-defined]
        yield client, settings, clock


def _job_with_results(client: TestClient, settings: ServiceSettings, owner: str) -> str:
    job_id: str = create_job(client, login(client, owner), units=1)["id"]
    run = settings.jobs_dir / owner / job_id / "run"
    (run / "outputs" / "fused.ome.zarr" / "0" / "0").mkdir(parents=True)
    (run / "outputs" / "big.bin").write_bytes(BIG)
    (run / "outputs" / "qc.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 10)
    (run / "outputs" / "fused.ome.zarr" / "zarr.json").write_text('{"zarr_format": 3}')
    (run / "outputs" / "fused.ome.zarr" / ".zattrs").write_text("{}")
    (run / "outputs" / "fused.ome.zarr" / "0" / "0" / "0").write_bytes(b"chunk")
    (run / "summary.json").write_text(json.dumps({"status": "succeeded", "owner": owner}))
    (run / "events.jsonl").write_text("{}\n")  # in the run, but not a result
    (settings.jobs_dir / owner / job_id / "input").mkdir(parents=True, exist_ok=True)
    (settings.jobs_dir / owner / job_id / "input" / "secret.tif").write_bytes(b"input")
    return job_id


def _token(client: TestClient, job_id: str, auth: dict[str, str], **body: Any) -> str:
    url = f"{API_PREFIX}/web/jobs/{job_id}/download-token"
    r = client.post(url, headers=auth, json=body or None)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["base"] == f"/dl/{answer['token']}"
    token: str = answer["token"]
    return token


def test_a_token_serves_files_ranges_head_zarr_and_the_zip(
    env: tuple[TestClient, ServiceSettings, Clock],
) -> None:
    client, settings, _ = env
    job_id = _job_with_results(client, settings, "alice")
    tok = _token(client, job_id, login(client, "alice"))

    r = client.get(f"/dl/{tok}/outputs/big.bin")
    assert r.status_code == 200 and r.content == BIG
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-length"] == str(len(BIG))
    r = client.get(f"/dl/{tok}/outputs/big.bin", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == BIG[1000:2000]
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(BIG)}"
    r = client.get(f"/dl/{tok}/outputs/big.bin", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == BIG[-10:]
    r = client.get(f"/dl/{tok}/outputs/big.bin", headers={"Range": f"bytes={len(BIG)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(BIG)}"
    r = client.head(f"/dl/{tok}/outputs/big.bin")
    assert r.status_code == 200 and r.headers["content-length"] == str(len(BIG)) and not r.content

    r = client.get(f"/dl/{tok}/outputs/qc.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    # a Zarr reader's requests: the metadata and chunk files, and a 404 for a missing key
    assert client.get(f"/dl/{tok}/outputs/fused.ome.zarr/zarr.json").json() == {"zarr_format": 3}
    assert client.get(f"/dl/{tok}/outputs/fused.ome.zarr/.zattrs").json() == {}
    assert client.get(f"/dl/{tok}/outputs/fused.ome.zarr/0/0/0").content == b"chunk"
    assert client.get(f"/dl/{tok}/outputs/fused.ome.zarr/0/.zarray").status_code == 404
    assert client.get(f"/dl/{tok}/summary.json").json()["owner"] == "alice"

    r = client.get(f"/dl/{tok}/results.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f'filename="{job_id}-results.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        assert "outputs/big.bin" in zf.namelist() and zf.read("outputs/big.bin") == BIG


def test_an_expired_token_is_refused(env: tuple[TestClient, ServiceSettings, Clock]) -> None:
    client, settings, clock = env
    job_id = _job_with_results(client, settings, "alice")
    auth = login(client, "alice")
    tok = _token(client, job_id, auth)
    short = _token(client, job_id, auth, ttl_s=5)
    clock.now += 599
    assert client.get(f"/dl/{tok}/summary.json").status_code == 200
    assert client.get(f"/dl/{short}/summary.json").status_code == 401
    clock.now += 2
    assert client.get(f"/dl/{tok}/summary.json").status_code == 401
    assert client.get(f"/dl/{tok}/results.zip").status_code == 401
    long = _token(client, job_id, auth, ttl_s=3600)
    clock.now += 3000
    assert client.get(f"/dl/{long}/summary.json").status_code == 200
    url = f"{API_PREFIX}/web/jobs/{job_id}/download-token"
    assert client.post(url, headers=auth, json={"ttl_s": 10**9}).status_code == 422


def test_a_token_is_for_its_own_job_and_its_results_only(
    env: tuple[TestClient, ServiceSettings, Clock],
) -> None:
    client, settings, _ = env
    mine = _job_with_results(client, settings, "alice")
    other = _job_with_results(client, settings, "bob")
    alice, bob = login(client, "alice"), login(client, "bob")
    tok = _token(client, mine, alice)
    # the owner only asks for tokens (someone else's job, or none: 404; no bearer: 401)
    assert (
        client.post(f"{API_PREFIX}/web/jobs/{other}/download-token", headers=alice).status_code
        == 404
    )
    assert (
        client.post(f"{API_PREFIX}/web/jobs/{mine}/download-token", headers=bob).status_code == 404
    )
    assert (
        client.post(f"{API_PREFIX}/web/jobs/{'0' * 32}/download-token", headers=alice).status_code
        == 404
    )
    assert client.post(f"{API_PREFIX}/web/jobs/{mine}/download-token").status_code == 401

    _, expires, sig = tok.split(".")
    forged = [
        f"{other}.{expires}.{sig}",  # another job under this signature
        f"{mine}.{int(expires) + 10**6}.{sig}",  # a later expiry
        f"{mine}.{expires}.{sig[:-2]}AA",
        f"{mine}.{expires}",
        "garbage",
        f"{other}.{expires}.{sig}.x",
        # not ASCII digits or signature characters, or a huge number: 404, never a 500
        f"{mine}.{expires}.{sig[:-1]}%C3%A9",
        f"{mine}.%C2%B2.{sig}",
        f"{mine}.{'9' * 5000}.{sig}",
    ]
    for bad in forged:
        for url in (f"/dl/{bad}/summary.json", f"/dl/{bad}/results.zip"):
            assert client.get(url).status_code == 404, (bad, url)
    # a token signed under another secret (e.g. before a restart) is refused too
    stranger, _ = DownloadSigner().issue(mine, 1)
    assert client.get(f"/dl/{stranger}/summary.json").status_code == 404

    # inside the job: results only (not the run's other files, not its inputs), no traversal
    for path in ("events.jsonl", "input/secret.tif", "../input/secret.tif", "outputs"):
        assert client.get(f"/dl/{tok}/{path}").status_code == 404, path
    # (dots are sent encoded: an HTTP client collapses a plain "/../" before sending)
    for path in (
        "outputs/%2e%2e/%2e%2e/input/secret.tif",
        f"..%2f..%2f..%2fbob%2f{other}%2frun%2fsummary.json",
        "%2fetc%2fpasswd",
    ):
        r = client.get(f"/dl/{tok}/{path}")
        assert r.status_code == 400, (path, r.status_code)
        assert r.json()["error"] == "BadPathError"
    assert client.get(f"/dl/{tok}/summary.json").json()["owner"] == "alice"

    # a deleted job's links stop working
    assert client.delete(f"{API_PREFIX}/jobs/{mine}", headers=alice).status_code == 204
    assert client.get(f"/dl/{tok}/summary.json").status_code == 404


def test_the_token_route_is_documented_and_the_links_are_not(
    env: tuple[TestClient, ServiceSettings, Clock],
) -> None:
    client, _, _ = env
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert f"{API_PREFIX}/web/jobs/{{job_id}}/download-token" in paths
    assert not [p for p in paths if p.startswith("/dl/")]


EXPOSED = {"content-range", "content-length", "accept-ranges", "etag", "content-type"}
ORIGIN = {"Origin": "http://viewer.example"}


def _assert_cors(r: Any) -> None:
    assert r.headers.get("access-control-allow-origin") == "*", (r.status_code, r.headers)
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert exposed >= EXPOSED, exposed


def test_links_answer_cors_on_every_answer_and_the_preflight(
    env: tuple[TestClient, ServiceSettings, Clock],
) -> None:
    """A viewer on another origin reads the links, errors included (a missing chunk's 404)."""
    client, settings, clock = env
    job_id = _job_with_results(client, settings, "alice")
    alice = login(client, "alice")
    tok = _token(client, job_id, alice)
    short = _token(client, job_id, alice, ttl_s=5)

    zarr = f"/dl/{tok}/outputs/fused.ome.zarr"
    answers = {
        200: client.get(f"{zarr}/zarr.json", headers=ORIGIN),
        206: client.get(f"/dl/{tok}/outputs/big.bin", headers=ORIGIN | {"Range": "bytes=0-9"}),
        404: client.get(f"{zarr}/0/0/1", headers=ORIGIN),  # a missing chunk
        416: client.get(f"/dl/{tok}/outputs/big.bin", headers={"Range": f"bytes={len(BIG)}-"}),
        400: client.get(f"/dl/{tok}/outputs/a%5Cb", headers=ORIGIN),  # a backslash: bad name
    }
    for code, r in answers.items():
        assert r.status_code == code, (code, r.text)
        _assert_cors(r)
    assert answers[206].headers["content-range"] == f"bytes 0-9/{len(BIG)}"
    assert answers[416].headers["content-range"] == f"bytes */{len(BIG)}"
    for expected, r in (
        (200, client.head(f"{zarr}/0/0/0", headers=ORIGIN)),
        (404, client.head(f"{zarr}/0/0/1", headers=ORIGIN)),  # a missing chunk
        (200, client.get(f"/dl/{tok}/results.zip", headers=ORIGIN)),
        (200, client.head(f"/dl/{tok}/results.zip", headers=ORIGIN)),
        (404, client.get(f"/dl/{tok}/results.zip?prefix=outputs/missing.zarr", headers=ORIGIN)),
        (400, client.get(f"/dl/{tok}/results.zip?prefix=../input", headers=ORIGIN)),
        (404, client.get("/dl/garbage/outputs/big.bin", headers=ORIGIN)),  # a forged token
    ):
        assert r.status_code == expected, (r.request.method, r.url, r.status_code, r.text)
        _assert_cors(r)
    wrong_method = client.post(f"/dl/{tok}/outputs/big.bin", headers=ORIGIN)
    assert wrong_method.status_code == 405
    _assert_cors(wrong_method)
    clock.now += 10
    expired = client.get(f"/dl/{short}/summary.json", headers=ORIGIN)
    assert expired.status_code == 401
    _assert_cors(expired)

    # the preflight of a ranged read, for a file, the zip and even an unknown token
    ask = ORIGIN | {
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range",
    }
    for url in (f"{zarr}/0/0/0", f"/dl/{tok}/results.zip", "/dl/garbage/x"):
        r = client.options(url, headers=ask)
        assert r.status_code == 204 and not r.content, (url, r.text)
        _assert_cors(r)
        methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
        assert methods == {"GET", "HEAD", "OPTIONS"}
        allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
        assert allowed >= {"range", "if-range", "if-none-match"}
        assert int(r.headers["access-control-max-age"]) > 0


def test_the_api_answers_no_cors(env: tuple[TestClient, ServiceSettings, Clock]) -> None:
    """The bearer-token API stays same-origin: no CORS header, no preflight."""
    client, settings, _ = env
    job_id = _job_with_results(client, settings, "alice")
    alice = login(client, "alice")
    base = f"{API_PREFIX}/jobs/{job_id}"
    for r in (
        client.get(f"{base}/results", headers=ORIGIN | alice),
        client.get(f"{base}/results/outputs/big.bin", headers=ORIGIN | alice),
        client.get(f"{base}/results/outputs/missing.bin", headers=ORIGIN | alice),
        client.get(f"{base}/results.zip", headers=ORIGIN | alice),
        client.get(f"{base}/results", headers=ORIGIN),  # 401
        client.post(f"{API_PREFIX}/web/jobs/{job_id}/download-token", headers=ORIGIN | alice),
        client.options(
            f"{base}/results", headers=ORIGIN | {"Access-Control-Request-Method": "GET"}
        ),
        client.get(f"{API_PREFIX}/health", headers=ORIGIN),
        client.get("/", headers=ORIGIN),
    ):
        assert not [h for h in r.headers if h.lower().startswith("access-control-")], (
            r.request.url,
            r.headers,
        )
    assert client.options(f"{base}/results", headers=ORIGIN).status_code == 405


def test_a_zip_of_one_folder(env: tuple[TestClient, ServiceSettings, Clock]) -> None:
    """``?prefix=FOLDER`` on both zip routes: that folder's result files, named as in the run."""
    client, settings, _ = env
    job_id = _job_with_results(client, settings, "alice")
    alice = login(client, "alice")
    tok = _token(client, job_id, alice)
    run = settings.jobs_dir / "alice" / job_id / "run"
    (run / "outputs" / "fused.ome.zarr.bak").write_bytes(b"not in the folder")
    (run / "outputs" / "link.zarr").symlink_to(run.parent / "input", target_is_directory=True)
    zarr = [
        "outputs/fused.ome.zarr/.zattrs",
        "outputs/fused.ome.zarr/0/0/0",
        "outputs/fused.ome.zarr/zarr.json",
    ]
    routes = {
        "api": (f"{API_PREFIX}/jobs/{job_id}/results.zip", alice),
        "link": (f"/dl/{tok}/results.zip", {}),
    }
    for kind, (url, auth) in routes.items():
        r = client.get(url, params={"prefix": "outputs/fused.ome.zarr"}, headers=auth)
        assert r.status_code == 200 and r.headers["content-type"] == "application/zip", kind
        disposition = r.headers["content-disposition"]
        assert f'filename="{job_id}-fused.ome.zarr.zip"' in disposition, disposition
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            assert sorted(zf.namelist()) == zarr, kind
            assert zf.read("outputs/fused.ome.zarr/0/0/0") == b"chunk"
        r = client.get(url, params={"prefix": "outputs/fused.ome.zarr/0"}, headers=auth)
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            assert zf.namelist() == ["outputs/fused.ome.zarr/0/0/0"], kind
        r = client.get(url, params={"prefix": "outputs"}, headers=auth)  # all but the summary
        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
            assert "summary.json" not in zf.namelist() and "outputs/big.bin" in zf.namelist()
        # a name against the path rules: 400; a folder holding no result file: 404
        for bad in ("../input", "/etc", "outputs/../input", "outputs//x", "outputs/a\\b", ""):
            r = client.get(url, params={"prefix": bad}, headers=auth)
            assert r.status_code == 400, (kind, bad, r.text)
        for none in (
            "outputs/missing.zarr",
            "outputs/fused",  # a prefix of a name is not its folder
            "outputs/big.bin",  # a file is not a folder
            "summary.json",
            "input",  # inside the job, not a result
            "logs",
            "outputs/link.zarr",  # a symbolic link is never followed
        ):
            r = client.get(url, params={"prefix": none}, headers=auth)
            assert r.status_code == 404, (kind, none, r.text)
    r = client.head(f"/dl/{tok}/results.zip?prefix=outputs/fused.ome.zarr")
    assert r.status_code == 200 and not r.content
    assert client.head(f"/dl/{tok}/results.zip?prefix=outputs/missing.zarr").status_code == 404
    # without the token or the bearer: nothing
    url = f"{API_PREFIX}/jobs/{job_id}/results.zip?prefix=outputs/fused.ome.zarr"
    assert client.get(url).status_code == 401


def test_result_files_are_sandboxed_and_never_sniffed(
    env: tuple[TestClient, ServiceSettings, Clock],
) -> None:
    """A result file is the job's output, shown on the origin that holds the user's token: both
    routes answer it with ``X-Content-Type-Options: nosniff`` and ``Content-Security-Policy:
    sandbox`` (an HTML or SVG result runs no script with the page's origin), whole, ranged or
    (the links) ``HEAD``; its guessed content type stays (a PNG is still an ``image/png``
    preview)."""
    client, settings, _ = env
    job_id = _job_with_results(client, settings, "alice")
    run = settings.jobs_dir / "alice" / job_id / "run"
    (run / "outputs" / "report.html").write_text("<script>alert(sessionStorage)</script>")
    alice = login(client, "alice")
    tok = _token(client, job_id, alice)
    routes = {
        "api": (f"{API_PREFIX}/jobs/{job_id}/results", alice),
        "link": (f"/dl/{tok}", {}),
    }
    for kind, (base, auth) in routes.items():
        for path, media in (("outputs/report.html", "text/html"), ("outputs/qc.png", "image/png")):
            answers = [
                client.get(f"{base}/{path}", headers=auth),
                client.get(f"{base}/{path}", headers=auth | {"Range": "bytes=0-3"}),
            ]
            if kind == "link":  # the bearer route has no HEAD
                answers.append(client.head(f"{base}/{path}"))
            for r in answers:
                assert r.status_code in (200, 206), (kind, path, r.status_code)
                assert r.headers["x-content-type-options"] == "nosniff", (kind, path)
                assert r.headers["content-security-policy"] == "sandbox", (kind, path)
                assert r.headers["content-type"].startswith(media), (kind, path, r.headers)
