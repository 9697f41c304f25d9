"""The Python client (``scopeflow.client``) against a real service on a free port.

uvicorn serves the app in a thread of the test process: names with characters that mean
something in a URL, a file that shrinks while it is uploaded, downloads through a ``.part``
file resumed only with a matching ``If-Range``, and the CLI's use of the saved token.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from scopeflow.client import APIError, Client, TransferProgress
from scopeflow.client._client import TransferError
from scopeflow.service.app import create_app
from scopeflow.service.auth import create_user
from scopeflow.service.db import make_engine, session_factory
from scopeflow.service.jobfiles import JobFiles
from scopeflow.service.settings import ServiceSettings
from scopeflow.testing import free_port
from tests.conftest import EXAMPLE_TEMPLATES

EXAMPLE = EXAMPLE_TEMPLATES
ODD_NAMES = ["a#b.txt", "q?x=1.txt", "p%41.txt", "sub dir/ä ö&+.txt", "semi;colon.txt"]


@dataclass
class Live:
    url: str
    settings: ServiceSettings


@pytest.fixture
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data = tmp_path_factory.mktemp("service") / "data"
    data.mkdir()
    shutil.copy(EXAMPLE, data / "templates.yaml")
    settings = ServiceSettings(data_dir=data, quota_bytes=10**9)
    app = create_app(settings)
    with session_factory(make_engine(settings.database_url))() as s:
        create_user(s, "alice", "pw")
        s.commit()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield Live(f"http://127.0.0.1:{port}", settings)
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def client(live: Live) -> Iterator[Client]:
    with Client(live.url) as c:
        c.login("alice", "pw")
        yield c


def _job(c: Client) -> str:
    job_id: str = c.create_job("toy", "t", {"units": 2})["id"]
    return job_id


def _run_dir(live: Live, job_id: str) -> Path:
    return live.settings.jobs_dir / "alice" / job_id / "run"


def _result(live: Live, job_id: str, name: str, data: bytes) -> Path:
    path = _run_dir(live, job_id) / "outputs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _etag(live: Live, c: Client, job_id: str, name: str) -> str:
    r = httpx.get(
        f"{live.url}/api/v1/jobs/{job_id}/results/outputs/{name}",
        headers={"Authorization": f"Bearer {c.token}"},
    )
    assert r.status_code == 200, r.text
    return r.headers["etag"]


# -- names in URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ODD_NAMES)
def test_names_with_url_characters_are_uploaded_and_downloaded_as_they_are(
    live: Live, client: Client, tmp_path: Path, name: str
) -> None:
    job_id = _job(client)
    local = tmp_path / "local.bin"
    local.write_bytes(b"content of " + name.encode())
    assert client.upload(job_id, local, name) == {"path": name, "size": local.stat().st_size}
    input_dir = live.settings.jobs_dir / "alice" / job_id / "input"
    assert (input_dir / name).read_bytes() == local.read_bytes()
    assert [f["path"] for f in client._json("GET", f"/jobs/{job_id}/files")["files"]] == [name]

    _result(live, job_id, name, b"result " + name.encode())
    dest = tmp_path / "down" / "r.bin"
    assert client.download(job_id, f"outputs/{name}", dest) == dest
    assert dest.read_bytes() == b"result " + name.encode()


# -- a file that changes while it is uploaded ----------------------------------------------------


def test_a_file_that_shrinks_during_upload_is_refused_and_discarded(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _job(client)
    local = tmp_path / "img.tif"
    local.write_bytes(b"x" * 100)
    puts = 0
    request = Client._request

    def counting(self: Client, method: str, path: str, **kw: Any) -> httpx.Response:
        nonlocal puts
        if method == "PUT":
            puts += 1
            assert puts < 20, "the client keeps sending (an endless loop)"
        return request(self, method, path, **kw)

    monkeypatch.setattr(Client, "_request", counting)

    def shrink(state: TransferProgress) -> None:  # rewritten after the declaration
        if state.done == 0:
            local.write_bytes(b"x" * 40)

    with pytest.raises(TransferError, match="changed while uploading"):
        client.upload(job_id, local, "img.tif", progress=shrink, chunk=30)
    files = client._json("GET", f"/jobs/{job_id}/files")
    assert files == {"files": [], "uploads": []}  # discarded on the service too
    # the file as it is now uploads fine
    assert client.upload(job_id, local, "img.tif")["size"] == 40


def test_discard(client: Client) -> None:
    job_id = _job(client)
    client._json(
        "POST", f"/jobs/{job_id}/files", json={"path": "a#1.bin", "size": 5, "sha256": "0" * 64}
    )
    assert client.delete_input(job_id, "a#1.bin") == {"path": "a#1.bin", "discarded": True}
    assert client._json("GET", f"/jobs/{job_id}/files")["uploads"] == []
    with pytest.raises(APIError) as exc:
        client.delete_input(job_id, "a#1.bin")
    assert exc.value.status == 404


def test_delete_input(client: Client, tmp_path: Path) -> None:
    job_id = _job(client)
    local = tmp_path / "local.bin"
    local.write_bytes(b"12345")
    client.upload(job_id, local, "sub dir/a#1.tif")
    assert client.job(job_id)["state"] == "ready"
    answer = client.delete_input(job_id, "sub dir/a#1.tif")
    assert answer == {"path": "sub dir/a#1.tif", "deleted": True, "size": 5}
    assert client._json("GET", f"/jobs/{job_id}/files") == {"files": [], "uploads": []}
    assert client.job(job_id)["state"] == "created"
    with pytest.raises(APIError) as exc:
        client.delete_input(job_id, "sub dir/a#1.tif")
    assert exc.value.status == 404
    # an unfinished upload is discarded by the same call
    client._json(
        "POST", f"/jobs/{job_id}/files", json={"path": "b.bin", "size": 5, "sha256": "0" * 64}
    )
    assert client.delete_input(job_id, "b.bin") == {"path": "b.bin", "discarded": True}
    client.start(job_id)
    with pytest.raises(APIError) as exc:
        client.delete_input(job_id, "b.bin")
    assert exc.value.status == 409


def test_the_cli_deletes_input_files(live: Live, client: Client, tmp_path: Path) -> None:
    from scopeflow.cli import app

    job_id = _job(client)
    for name in ("a.tif", "images/b.tif"):
        local = tmp_path / "f.bin"
        local.write_bytes(name.encode())
        client.upload(job_id, local, name)
    auth = ["--url", live.url, "--token", str(client.token)]
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["jobs", "delete-input", job_id, "a.tif", "images/b.tif", *auth],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "a.tif: deleted (5 bytes)",
        "images/b.tif: deleted (12 bytes)",
    ]
    assert client.job(job_id)["state"] == "created"
    result = runner.invoke(app, ["jobs", "delete-input", job_id, "a.tif", *auth])
    assert result.exit_code == 1 and "404" in result.output


# -- an upload broken off in the middle of a chunk -----------------------------------------------


class _CutError(Exception):
    """The connection was broken off on purpose."""


class _BreakOff(httpx.BaseTransport):
    """httpx's transport, but the upload breaks off once the file's first ``at`` bytes are sent.

    The chunk (PUT) that crosses ``at`` is sent up to that byte; then the request fails and its
    connection is dropped, as when a link fails or the client is killed.
    """

    def __init__(self, at: int) -> None:
        self.at = at
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            offset = int(request.url.params["offset"])
            request.stream = _Body(request.read(), self.at - offset)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


class _Body(httpx.SyncByteStream):
    def __init__(self, data: bytes, until: int) -> None:
        self.data, self.until = data, until

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.until]
        if self.until < len(self.data):
            raise _CutError


def test_an_upload_broken_off_mid_chunk_resumes_after_the_last_whole_chunk(
    live: Live, client: Client, tmp_path: Path
) -> None:
    job_id = _job(client)
    local = tmp_path / "big.bin"
    local.write_bytes(BIG)  # 256 KiB
    chunk = 64 * 1024
    cutting = _BreakOff(chunk + chunk // 2)
    with Client(live.url, client.token, transport=cutting) as cut, pytest.raises(_CutError):
        cut.upload(job_id, local, "big.bin", chunk=chunk)
    resumed: list[int] = []

    def first(s: TransferProgress) -> None:
        if not resumed:
            resumed.append(s.done)

    # the half chunk that reached the service before the cut is not kept
    assert client.upload(job_id, local, "big.bin", chunk=chunk, progress=first) == {
        "path": "big.bin",
        "size": len(BIG),
    }
    assert resumed == [chunk]


# -- downloads through a part file ---------------------------------------------------------------


BIG = bytes(range(256)) * 1024


def test_an_unrelated_existing_file_is_replaced_not_appended_to(
    live: Live, client: Client, tmp_path: Path
) -> None:
    job_id = _job(client)
    _result(live, job_id, "big.bin", BIG)
    dest = tmp_path / "big.bin"
    dest.write_bytes(b"an older, unrelated file")
    seen: list[TransferProgress] = []
    client.download(job_id, "outputs/big.bin", dest, progress=seen.append)
    assert dest.read_bytes() == BIG
    assert seen[-1].resumed_from == 0 and seen[-1].done == seen[-1].total == len(BIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]  # no part left


def test_a_part_is_resumed_while_the_file_is_unchanged(
    live: Live, client: Client, tmp_path: Path
) -> None:
    job_id = _job(client)
    _result(live, job_id, "big.bin", BIG)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(BIG[:1000])
    (tmp_path / "big.bin.part.etag").write_text(_etag(live, client, job_id, "big.bin"))
    seen: list[TransferProgress] = []
    client.download(job_id, "outputs/big.bin", dest, progress=seen.append)
    assert dest.read_bytes() == BIG
    assert seen[-1].resumed_from == 1000 and seen[-1].total == len(BIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_a_part_of_a_changed_file_is_dropped(live: Live, client: Client, tmp_path: Path) -> None:
    job_id = _job(client)
    path = _result(live, job_id, "big.bin", BIG)
    old_tag = _etag(live, client, job_id, "big.bin")
    new = BIG[::-1] + b"longer"
    path.write_bytes(new)  # the job ran again: same name, other bytes
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(BIG[:1000])
    (tmp_path / "big.bin.part.etag").write_text(old_tag)
    seen: list[TransferProgress] = []
    client.download(job_id, "outputs/big.bin", dest, progress=seen.append)
    assert dest.read_bytes() == new
    assert seen[-1].resumed_from == 0


def test_a_complete_part_is_finished_without_downloading_it_again(
    live: Live, client: Client, tmp_path: Path
) -> None:
    job_id = _job(client)
    _result(live, job_id, "big.bin", BIG)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(BIG)  # a download that stopped before the rename
    (tmp_path / "big.bin.part.etag").write_text(_etag(live, client, job_id, "big.bin"))
    answers: list[int] = []
    client._http.event_hooks["response"].append(lambda r: answers.append(r.status_code))
    seen: list[TransferProgress] = []
    client.download(job_id, "outputs/big.bin", dest, progress=seen.append)
    assert answers == [416]  # the range past the end says the part is whole: nothing re-sent
    assert dest.read_bytes() == BIG
    assert seen[-1].resumed_from == seen[-1].done == seen[-1].total == len(BIG)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


@pytest.mark.parametrize("part", [b"x" * 1000, BIG + b"more than the file"])
def test_a_part_without_an_etag_or_past_the_end_starts_over(
    live: Live, client: Client, tmp_path: Path, part: bytes
) -> None:
    job_id = _job(client)
    _result(live, job_id, "big.bin", BIG)
    dest = tmp_path / "big.bin"
    (tmp_path / "big.bin.part").write_bytes(part)
    if len(part) > len(BIG):  # a matching ETag, but a range the file does not have: 416
        (tmp_path / "big.bin.part.etag").write_text(_etag(live, client, job_id, "big.bin"))
    client.download(job_id, "outputs/big.bin", dest)
    assert dest.read_bytes() == BIG
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.bin"]


def test_a_broken_off_download_keeps_its_part_for_a_resume(
    live: Live, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _job(client)
    _result(live, job_id, "big.bin", BIG)
    dest = tmp_path / "big.bin"
    dest.write_bytes(b"previous")
    real = httpx.Response.iter_bytes

    def broken(self: httpx.Response, chunk_size: int | None = None) -> Iterator[bytes]:
        for block in real(self, 4096):
            yield block
            raise httpx.RemoteProtocolError("connection dropped")

    monkeypatch.setattr(httpx.Response, "iter_bytes", broken)
    with pytest.raises(httpx.RemoteProtocolError):
        client.download(job_id, "outputs/big.bin", dest)
    monkeypatch.undo()
    assert dest.read_bytes() == b"previous"  # untouched until the download is complete
    assert (tmp_path / "big.bin.part").read_bytes() == BIG[:4096]
    seen: list[TransferProgress] = []
    client.download(job_id, "outputs/big.bin", dest, progress=seen.append)
    assert dest.read_bytes() == BIG
    assert seen[-1].resumed_from == 4096


def test_the_zip_goes_through_a_part_file(live: Live, client: Client, tmp_path: Path) -> None:
    import zipfile

    job_id = _job(client)
    _result(live, job_id, "a.txt", b"a")
    dest = tmp_path / "r.zip"
    dest.write_bytes(b"junk")
    (tmp_path / "r.zip.part").write_bytes(b"stale part")
    client.download_zip(job_id, dest)
    assert zipfile.ZipFile(dest).namelist() == ["outputs/a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zip"]


# -- logs: every page, and no waiting while there is more -----------------------------------------

LOG = "".join(f"line {i:05d} of the job's stderr, ä ö\n" for i in range(3000))  # 2-byte chars too


def _stderr_log(live: Live, job_id: str, text: str) -> Path:
    path = JobFiles.of(live.settings.jobs_dir, "alice", job_id).log("stderr")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_read_logs_reads_a_log_past_the_page_limit(live: Live, client: Client) -> None:
    job_id = _job(client)
    _stderr_log(live, job_id, LOG)
    assert len(client.logs(job_id, limit=4096)["text"]) < len(LOG)  # one page is not all
    pages = list(client.read_logs(job_id, limit=4096))
    assert len(pages) > 1
    assert "".join(pages) == LOG
    unit_log = _run_dir(live, job_id) / "logs" / "work" / "u0000.log"
    unit_log.parent.mkdir(parents=True)
    unit_log.write_text(LOG[:10_000], encoding="utf-8")
    assert "".join(client.read_logs(job_id, step="work", unit="u0000", limit=999)) == LOG[:10_000]
    assert list(client.read_logs(job_id, stream="stdout")) == []  # no log yet


def test_follow_logs_waits_only_once_it_has_read_the_whole_log(
    live: Live, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scopeflow.client import _client

    job_id = _job(client)
    path = _stderr_log(live, job_id, LOG)
    more = "written while the client waited\n"
    got: list[str] = []
    read_when_waiting: list[str] = []

    def sleep(_seconds: float) -> None:
        read_when_waiting.append("".join(got))
        if len(read_when_waiting) == 1:  # the job writes a last line and ends
            with path.open("a", encoding="utf-8") as fh:
                fh.write(more)
            client.cancel(job_id)

    monkeypatch.setattr(_client, "time", SimpleNamespace(sleep=sleep, monotonic=time.monotonic))
    for text in client.follow_logs(job_id, limit=4096, poll_s=30):
        got.append(text)
    assert read_when_waiting == [LOG]  # one wait, and only after the last page
    assert "".join(got) == LOG + more


def test_the_cli_prints_a_whole_log_larger_than_a_page(live: Live, client: Client) -> None:
    from scopeflow.cli import app

    job_id = _job(client)
    big = LOG * 12  # 1.4 MB: more than the service's 1 MiB page
    _stderr_log(live, job_id, big)
    client.cancel(job_id)
    auth = ["--url", live.url, "--token", str(client.token)]
    runner = CliRunner()
    for follow in ([], ["--follow"]):
        result = runner.invoke(app, ["jobs", "logs", job_id, *follow, *auth])
        assert result.exit_code == 0, result.output[-2000:]
        assert result.output == big, follow


# -- waiting for a job, and the CLI's watch --------------------------------------------------------


def _events(live: Live, job_id: str, *states: tuple[str, str, str]) -> None:
    """Append (step, unit, state) events to the job's events.jsonl, as the engine writes them."""
    path = _run_dir(live, job_id) / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for step, unit, state in states:
            fh.write(json.dumps({"ts": 0, "step": step, "unit": unit, "state": state}) + "\n")


def _sleep_then(monkeypatch: pytest.MonkeyPatch, *actions: Any) -> list[float]:
    """Replace the client's (and the CLI's) sleep: the n-th sleep runs ``actions[n]``."""
    from scopeflow import cli_jobs
    from scopeflow.client import _client

    slept: list[float] = []

    def sleep(seconds: float) -> None:
        assert len(slept) < len(actions), "polled after the job had ended"
        actions[len(slept)]()
        slept.append(seconds)

    fake = SimpleNamespace(sleep=sleep, monotonic=time.monotonic)
    monkeypatch.setattr(_client, "time", fake)
    # `jobs watch` waits through Client.wait; patched in the CLI too, so that a polling loop of
    # its own would fail this test instead of hanging it
    monkeypatch.setattr(cli_jobs, "time", fake, raising=False)
    return slept


def test_wait_gives_on_progress_the_progress_and_the_job_at_every_poll(
    live: Live, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = _job(client)
    _events(live, job_id, ("work", "u0", "running"))
    slept = _sleep_then(
        monkeypatch,
        lambda: _events(live, job_id, ("work", "u0", "done")),
        lambda: client.cancel(job_id),
    )
    seen: list[tuple[str, dict[str, str], str]] = []

    def on_progress(progress: dict[str, Any], job: dict[str, Any]) -> None:
        units = progress["steps"][0]["units"] if progress["steps"] else {}
        seen.append((job["id"], units, job["state"]))

    job = client.wait(job_id, poll_s=0.5, on_progress=on_progress)
    assert job["state"] == "cancelled"
    assert slept == [0.5, 0.5]
    assert seen == [
        (job_id, {"u0": "running"}, "created"),
        (job_id, {"u0": "done"}, "created"),
        (job_id, {"u0": "done"}, "cancelled"),
    ]


def test_the_cli_watches_a_job_until_it_ends(
    live: Live, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scopeflow.cli import app

    monkeypatch.setenv("COLUMNS", "120")
    job_id = _job(client)
    _events(live, job_id, ("prepare", "u0", "done"), ("prepare", "u1", "running"))
    slept = _sleep_then(
        monkeypatch,
        lambda: _events(live, job_id, ("prepare", "u1", "failed")),
        lambda: client.cancel(job_id),
    )
    auth = ["--url", live.url, "--token", str(client.token)]
    result = CliRunner().invoke(app, ["jobs", "watch", job_id, "--poll", "0.25", *auth])
    assert slept == [0.25, 0.25]
    assert result.exit_code == 1, result.output
    # not a terminal: rich's Live prints the last grid only; then the state on stderr
    lines = result.output.splitlines()
    assert lines[0].strip() == f"t ({job_id[:8]}): cancelled"
    header = ["step", "units", "done", "running", "failed", "seconds"]
    assert [c.strip() for c in lines[2].split("┃")[1:-1]] == header
    assert [c.strip() for c in lines[4].split("│")[1:-1]] == ["prepare", "■■", "1", "0", "1", "0.0"]
    assert lines[-1].rstrip().endswith("cancelled")


# -- the CLI's saved login -----------------------------------------------------------------------


def test_the_saved_token_goes_only_to_the_saved_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scopeflow import cli_jobs

    monkeypatch.setenv("SCOPEFLOW_CONFIG_DIR", str(tmp_path))
    (tmp_path / "credentials.json").write_text(
        json.dumps({"url": "http://saved:8000", "token": "SAVED", "user": "alice"})
    )
    with cli_jobs._client(None, None) as c:
        assert (c.url, c.token) == ("http://saved:8000", "SAVED")
    with cli_jobs._client("http://saved:8000/", None) as c:
        assert c.token == "SAVED"
    with cli_jobs._client("http://evil:8000", "MINE") as c:
        assert (c.url, c.token) == ("http://evil:8000", "MINE")
    with pytest.raises(typer.Exit), cli_jobs._client("http://evil:8000", None):
        pass


def test_login_makes_an_existing_credentials_file_private(
    live: Live, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from scopeflow.cli import app

    monkeypatch.setenv("SCOPEFLOW_CONFIG_DIR", str(tmp_path))
    creds = tmp_path / "credentials.json"
    creds.write_text("{}")
    creds.chmod(0o644)
    result = CliRunner().invoke(
        app, ["login", live.url, "--name", "alice", "--password", "pw"], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert creds.stat().st_mode & 0o777 == 0o600
    assert json.loads(creds.read_text())["url"] == live.url


def test_demo_data_and_api_keys_through_the_client_and_the_cli(live: Live, client: Client) -> None:
    from scopeflow.cli import app

    auth = ["--url", live.url, "--token", str(client.token)]
    result = CliRunner().invoke(
        app, ["jobs", "create", "cyto-ifc", "demo", "--demo", *auth], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    job_id = result.output.strip()
    assert client.job(job_id)["state"] == "ready"
    files = {f["path"] for f in client._json("GET", f"/jobs/{job_id}/files")["files"]}
    assert {f"ifc/ch{c}.tif" for c in range(6)} <= files
    with pytest.raises(APIError) as exc:  # once only
        client.demo_data(job_id)
    assert exc.value.status == 409
    # the CLI says which step failed: the job exists, its demo data not
    toy = CliRunner().invoke(app, ["jobs", "create", "toy", "t", "--demo", *auth])
    assert toy.exit_code == 1
    assert "was created, but not its demo data" in toy.output
    assert "no demo data" in toy.output

    key = client.create_api_key("nightly", days=7)
    listed = client.api_keys()
    assert [k["name"] for k in listed] == ["nightly"]
    with Client(live.url, token=key) as robot:
        assert robot.me()["name"] == "alice"
        client.revoke_api_key(listed[0]["id"])
        with pytest.raises(APIError) as exc:
            robot.me()
        assert exc.value.status == 401
    assert client.api_keys() == []


def test_every_cli_command_reports_api_errors_without_a_traceback(
    live: Live, client: Client
) -> None:
    """An API error is one red line and exit 1, for the commands that read too."""
    from scopeflow.cli import app

    bad = ["--url", live.url, "--token", "not-a-token"]
    runner = CliRunner()
    for args in (["jobs", "templates"], ["jobs", "list"], ["jobs", "status", "x"]):
        result = runner.invoke(app, [*args, *bad])
        assert result.exit_code == 1, (args, result.output)
        assert "401" in result.output, (args, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit), args
    good = ["--url", live.url, "--token", str(client.token)]
    result = runner.invoke(app, ["jobs", "list", "--state", "nonsense", *good])
    assert result.exit_code == 1 and "422" in result.output, result.output
