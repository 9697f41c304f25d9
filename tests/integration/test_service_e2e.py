"""The service end to end, every part real: `scopeflow server` (uvicorn + its worker process),
the admin CLI, the Python client over HTTP, a pipeline run by the local scheduler.

user → login → job → upload (interrupted, resumed) → start → succeeded → results (zip, range);
the service killed while a job runs → started again → the job ends with the right state; the
same job through the real Slurm.
"""

from __future__ import annotations

import io
import socket
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from scopeflow.client import APIError, Client, TransferProgress
from scopeflow.testing import Server
from tests.conftest import run_cli
from tests.integration.conftest import example_images, service_data


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return service_data(tmp_path)


@pytest.fixture
def server(data: Path) -> Iterator[Server]:
    srv = Server(data).start()
    yield srv
    srv.stop()


def test_a_server_that_exits_is_reported_with_its_log(tmp_path: Path) -> None:
    """:meth:`Server.start` does not wait out its timeout for a process that has ended."""
    srv = Server(tmp_path / "service", ["--no-such-option"], timeout=60)
    # "exited with code" comes from start's exit check, not from its timeout ("did not answer")
    with pytest.raises(RuntimeError, match=r"(?s)exited with code 2:.*no-such-option"):
        srv.start()
    assert srv.proc is not None and srv.proc.poll() == 2


@pytest.fixture(params=["local", pytest.param("slurm", marks=pytest.mark.slurm)])
def scheduler(request: pytest.FixtureRequest) -> str:
    """The scheduler of :func:`any_server`: local, or the real Slurm (skipped without one)."""
    if request.param == "slurm":
        request.getfixturevalue("slurm")
    return str(request.param)


@pytest.fixture
def any_server(scheduler: str, data: Path) -> Iterator[Server]:
    """A server with the local scheduler, or with Slurm and a user → account mapping."""
    extra: list[str] = []
    if scheduler == "slurm":
        (data / "service.yaml").write_text(
            f"data_dir: {data}\nscheduler: slurm\n"
            "accounts:\n  alice: {account: lab42, partition: debug, qos: normal}\n"
        )
        extra = ["--config", str(data / "service.yaml")]
    srv = Server(data, extra).start()
    yield srv
    srv.stop()


def test_upload_start_watch_download(any_server: Server, scheduler: str, tmp_path: Path) -> None:
    """The whole flow, with the local scheduler and through the real Slurm."""
    server = any_server
    c = Client(server.url)
    c.login("alice", "pw")
    job = c.create_job("example-segment", "cells", {"match_distance": 3.0})
    images = example_images(tmp_path / "images")
    big = tmp_path / "big.bin"
    big.write_bytes(np.random.default_rng(0).integers(0, 255, 3 * 2**20, dtype=np.uint8).tobytes())
    for p in images:
        c.upload(job["id"], p, f"images/{p.name}")

    # an upload cut after its first chunk: the client dies, a new one resumes
    class CutError(Exception):
        pass

    def cut(s: TransferProgress) -> None:
        if s.done >= 2**20:
            raise CutError

    with pytest.raises(CutError):
        c.upload(job["id"], big, "extra/big.bin", chunk=2**20, progress=cut)
    resumed: list[int] = []
    c2 = Client(server.url, c.token)
    c2.upload(
        job["id"], big, "extra/big.bin", chunk=2**20, progress=lambda s: resumed.append(s.done)
    )
    assert resumed[0] == 2**20  # it went on from where the service stopped
    listing = c.job(job["id"])
    assert listing["state"] == "ready"

    c.start(job["id"])
    final = c.wait(job["id"], timeout=180, poll_s=0.5)
    assert final["state"] == "succeeded", (final, server.log())
    prog = c.progress(job["id"])
    assert prog["steps"] and all(set(s["counts"]) <= {"done"} for s in prog["steps"])
    summary = c.summary(job["id"])
    assert summary["status"] == "succeeded"
    names = {r["path"] for r in c.results(job["id"])}
    assert "summary.json" in names and any(n.startswith("outputs/") for n in names)

    zpath = c.download_zip(job["id"], tmp_path / "res.zip")
    with zipfile.ZipFile(zpath) as z:
        assert z.testzip() is None and "summary.json" in z.namelist()
    # a result file in two parts: the second request continues with a Range
    # (as an interrupted download leaves it: half of the file in dest.part, with its ETag)
    one = sorted(n for n in names if n.startswith("outputs/"))[0]
    first = httpx.get(
        f"{server.url}/api/v1/jobs/{job['id']}/results/{one}",
        headers={"Authorization": f"Bearer {c.token}"},
    )
    whole = first.content
    dest = tmp_path / "one.bin"
    (tmp_path / "one.bin.part").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "one.bin.part.etag").write_text(first.headers["etag"])
    seen: list[TransferProgress] = []
    c.download(job["id"], one, dest, progress=seen.append)
    assert dest.read_bytes() == whole
    assert seen and seen[-1].resumed_from == len(whole) // 2  # only the rest was fetched
    with pytest.raises(APIError) as exc:
        c.start(job["id"])
    assert exc.value.status == 409
    assert final["scheduler"] == scheduler
    if scheduler == "slurm":
        script = (
            server.data / "jobs" / "alice" / job["id"] / "scheduler" / "job.sbatch"
        ).read_text()
        for line in ("--account=lab42", "--partition=debug", "--qos=normal", "--time=00:30:00"):
            assert f"#SBATCH {line}" in script.splitlines(), line


def test_service_killed_while_a_job_runs(data: Path) -> None:
    """Kill API and worker with SIGKILL mid-run; a new server finds the job and finishes it."""
    srv = Server(data).start()
    try:
        c = Client(srv.url)
        c.login("alice", "pw")
        job = c.create_job("toy", "slow", {"units": 4, "sleep": 2.0})
        c.start(job["id"])
        deadline = time.monotonic() + 60
        while c.job(job["id"])["state"] != "running":
            assert time.monotonic() < deadline, srv.log()
            time.sleep(0.3)
        srv.kill()  # returns once no process of the group is left
        srv = Server(data).start()
        c = Client(srv.url, c.token)
        final = c.wait(job["id"], timeout=180, poll_s=0.5)
        assert final["state"] == "succeeded", (final, srv.log())
        assert final["attempts"] == 1  # not resubmitted: the running job was re-attached
    finally:
        srv.stop()


def test_cli_login_jobs_and_download(server: Server, tmp_path: Path) -> None:
    env = {"SCOPEFLOW_CONFIG_DIR": str(tmp_path / "cfg")}
    r = run_cli(["login", server.url, "--name", "alice", "--password", "pw"], extra_env=env)
    assert r.returncode == 0, r.stderr
    assert oct((tmp_path / "cfg" / "credentials.json").stat().st_mode & 0o777) == "0o600"
    r = run_cli(["jobs", "create", "toy", "quick", "-p", "units=3"], extra_env=env)
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip().splitlines()[-1]
    (tmp_path / "notes.txt").write_text("hello")
    assert (
        run_cli(["jobs", "upload", job_id, tmp_path / "notes.txt"], extra_env=env).returncode == 0
    )
    assert run_cli(["jobs", "start", job_id], extra_env=env).returncode == 0
    watch = run_cli(["jobs", "watch", job_id, "--poll", "0.5"], extra_env=env)
    assert watch.returncode == 0, watch.stdout + watch.stderr
    dest = tmp_path / "out.zip"
    assert run_cli(["jobs", "download", job_id, dest], extra_env=env).returncode == 0
    assert "summary.json" in zipfile.ZipFile(io.BytesIO(dest.read_bytes())).namelist()
    bad = run_cli(["jobs", "create", "toy", "x", "-p", "units=; rm -rf /"], extra_env=env)
    assert bad.returncode == 1 and "units" in bad.stderr


def test_many_concurrent_clients_get_answers(server: Server) -> None:
    """More concurrent requests than the API's thread pool (40): every one is answered.

    Regression: the request's database session used to be closed in the thread pool; with all
    threads waiting for a connection, none could be given back and every request timed out.
    """
    import asyncio

    c = Client(server.url)
    token = c.login("alice", "pw")
    job = c.create_job("toy", "polled")["id"]

    async def one() -> list[int]:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers) as ac:
            return [(await ac.get(f"/api/v1/jobs/{job}", timeout=60)).status_code for _ in range(3)]

    async def all_of_them() -> list[list[int]]:
        return await asyncio.gather(*(one() for _ in range(80)))

    codes = [code for codes in asyncio.run(all_of_them()) for code in codes]
    assert codes == [200] * 240


def test_stalled_uploads_do_not_starve_other_requests(server: Server) -> None:
    """60 chunk uploads that never send their body, then another request: it is answered.

    Regression (review): each stalled request held a database connection while its body was
    awaited, and the owner check blocked the event loop once the pool was empty, so the whole
    API hung (health and every other route).
    """
    c = Client(server.url)
    token = c.login("alice", "pw")
    job = c.create_job("toy", "stalled")["id"]
    c._json("POST", f"/jobs/{job}/files", json={"path": "f", "size": 10, "sha256": "0" * 64})
    socks = []
    try:
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(
                f"PUT /api/v1/jobs/{job}/files/f?offset=0 HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {token}\r\nContent-Length: 10\r\n\r\n".encode()
            )
            socks.append(s)
        # /me only once the server has accepted every stalled connection (they hold it now)
        assert server.proc is not None
        api = psutil.Process(server.proc.pid)  # uvicorn runs in the server's own process
        deadline = time.monotonic() + 30
        while (held := _established(api, server.port)) < len(socks):
            assert time.monotonic() < deadline, f"only {held} of {len(socks)} connections held"
            time.sleep(0.1)
        me = httpx.get(
            f"{server.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=20
        )
        assert me.status_code == 200, me.text  # a hung API raises a timeout instead
    finally:
        for s in socks:
            s.close()


def _established(proc: psutil.Process, port: int) -> int:
    """How many established TCP connections on ``port`` the process ``proc`` has accepted."""
    return sum(
        c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        for c in proc.net_connections(kind="tcp")
    )
