"""The service under load: concurrent status polling, and upload throughput with a resume.

Starts a real ``scopeflow server`` (uvicorn API + worker process, SQLite) on a free port with
a fresh data folder under ``benchmarks/.data/service``, makes a user and one job, then

* **polling**: ``--clients`` concurrent clients (asyncio + httpx, one connection each) poll
  ``GET /jobs/{id}`` for ``--seconds`` seconds; counted: requests, errors (non-200 or
  exceptions), latency percentiles;
* **upload**: a ``--upload-mb`` MiB file of random bytes is uploaded over loopback with the
  Python client (8 MiB chunks): MB/s of the transfer (the client's own SHA-256 of the file
  timed apart), then the same file again, its connection broken off in the middle of a chunk
  at about half the file (:class:`CuttingTransport`), and resumed: the bytes the client had
  sent when it was cut, where the service resumed, the difference (sent twice), and the
  seconds the resume costs before data flows (hash + declare + offset query).

The client and the server share the machine's cores, so the figures are a floor.

    python benchmarks/service_http.py --clients 100 --seconds 30 --upload-mb 2048
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scopeflow.client import Client, TransferProgress  # noqa: E402
from scopeflow.client._client import CHUNK, _sha256  # noqa: E402
from scopeflow.testing import Server  # noqa: E402

DATA = HERE / ".data" / "service"
EXAMPLE = HERE.parent / "src/scopeflow/service/templates.example.yaml"
PIECE = 2**20


def _scopeflow(*args: str) -> list[str]:
    return [sys.executable, "-m", "scopeflow", *args]


async def _poll(url: str, token: str, job: str, clients: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def one() -> None:
        nonlocal errors
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as c:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    r = await c.get(f"/api/v1/jobs/{job}", timeout=30)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += 0 if ok else 1

    await asyncio.gather(*(one() for _ in range(clients)))
    lat = np.array(latencies) * 1000
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / seconds, 1),
        "errors": errors,
        "latency_ms": {
            q: round(float(np.percentile(lat, p)), 1)
            for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))
        },
    }


class CutError(Exception):
    """The connection was broken off on purpose, in the middle of an upload chunk."""


class _Pieces(httpx.SyncByteStream):
    """A chunk's body in 1 MiB pieces; raises once the file's first ``cut.at`` bytes are sent."""

    def __init__(self, body: bytes, offset: int, cut: CuttingTransport) -> None:
        self.body, self.offset, self.cut = body, offset, cut

    def __iter__(self) -> Iterator[bytes]:
        sent = self.offset  # bytes of the file handed to the socket so far
        for i in range(0, len(self.body), PIECE):
            piece = self.body[i : i + PIECE][: self.cut.at - sent]
            yield piece  # httpcore asks for the next piece once this one is written
            sent += len(piece)
            if sent >= self.cut.at:
                self.cut.sent_at_cut = sent
                raise CutError(f"connection broken off after {sent} bytes of the file")


class CuttingTransport(httpx.BaseTransport):
    """httpx's transport, but the upload's chunks (PUT) break off after ``at`` bytes of the file.

    The body of the chunk that crosses ``at`` is sent up to that byte; then the request fails
    and its connection is dropped (the service keeps none of a chunk it did not receive whole).
    """

    def __init__(self, at: int) -> None:
        self.at = at
        self.sent_at_cut: int | None = None
        self._inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and self.sent_at_cut is None:
            offset = int(request.url.params["offset"])
            request.stream = _Pieces(request.read(), offset, self)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _random_file(path: Path, size: int) -> None:
    """``size`` bytes of random data, written 64 MiB at a time (the last block shorter)."""
    rng = np.random.default_rng(0)
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(64 * 2**20, left)
            fh.write(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
            left -= n


def _upload(url: str, token: str, mb: int, folder: Path) -> dict[str, Any]:
    src = folder / "upload.bin"
    _random_file(src, mb * 2**20)
    size = src.stat().st_size
    t0 = time.perf_counter()
    _sha256(src)  # what the client runs to declare the file
    t_hash = time.perf_counter() - t0
    c = Client(url, token)
    job = c.create_job("toy", "upload")["id"]
    t0 = time.perf_counter()
    c.upload(job, src, "a.bin")
    t_full = time.perf_counter() - t0

    # break the connection off at half the file, in the middle of a chunk (a chunk boundary
    # moved on by half a chunk): what a dropped link or a killed client leaves behind
    cut_at = size // 2 + (CHUNK // 2 if (size // 2) % CHUNK == 0 else 0)
    cutter = CuttingTransport(cut_at)
    with Client(url, token, transport=cutter) as cut_client, contextlib.suppress(CutError):
        cut_client.upload(job, src, "b.bin")
    assert cutter.sent_at_cut is not None, "the upload was not cut"
    first: list[float] = []
    resumed_from: list[int] = []
    t0 = time.perf_counter()

    def mark(s: TransferProgress) -> None:
        if not first:  # called once the service has said where it stands, before any chunk
            first.append(time.perf_counter() - t0)
            resumed_from.append(s.done)

    done = c.upload(job, src, "b.bin", progress=mark)
    t_resume = time.perf_counter() - t0
    assert done["size"] == size, done
    c.close()
    src.unlink()
    transfer = t_full - t_hash  # the client hashes the file once before sending it
    return {
        "bytes": size,
        "mib": round(size / 2**20, 3),
        "chunk_bytes": CHUNK,
        "sha256_s": round(t_hash, 2),
        "upload_s_including_hash_and_server_check": round(t_full, 2),
        "transfer_mb_per_s": round(size / 1e6 / transfer, 1),
        "resume": {
            "sent_at_cut_bytes": cutter.sent_at_cut,
            "resumed_from_bytes": resumed_from[0],
            "bytes_sent_twice": cutter.sent_at_cut - resumed_from[0],
            "seconds_before_data_flows": round(first[0], 3),
            "resume_total_s": round(t_resume, 2),
        },
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both measurements; print and return them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--upload-mb", type=int, default=2048)
    args = parser.parse_args(argv)
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    shutil.copy(EXAMPLE, DATA / "templates.yaml")
    subprocess.run(
        _scopeflow("admin", "create-user", "bench", "--password", "pw", "--data-dir", str(DATA)),
        check=True,
        capture_output=True,
    )
    with Server(DATA, ["--log-level", "warning"]) as server:
        url = server.url
        c = Client(url)
        token = c.login("bench", "pw")
        job = c.create_job("toy", "polled")["id"]
        polling = asyncio.run(_poll(url, token, job, args.clients, args.seconds))
        upload = _upload(url, token, args.upload_mb, DATA)
    result = {"benchmark": "service_http", "polling": polling, "upload": upload}
    print(json.dumps(result, indent=2))
    shutil.rmtree(DATA, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
