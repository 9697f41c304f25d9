"""The service under load: concurrent status polling, and upload throughput with a resume.

Starts a real ``scopeflow server`` (uvicorn API + worker process, SQLite) on a free port with
a fresh data folder under ``benchmarks/.data/service``, makes a user and one job, then

* **polling**: ``--clients`` concurrent clients (asyncio + httpx, one connection each) poll
  ``GET /jobs/{id}`` for ``--seconds`` seconds; counted: requests, errors (non-200 or
  exceptions), latency percentiles;
* **upload**: a ``--upload-mb`` MiB file of random bytes is uploaded over loopback with the
  Python client (8 MiB chunks): MB/s of the transfer (SHA-256 of the file timed apart), then
  the same file again, cut at half, and resumed: bytes sent again after the cut, and the
  seconds the resume costs before data flows (declare + offset query).

The client and the server share the machine's cores, so the figures are a floor.

    python benchmarks/service_http.py --clients 100 --seconds 30 --upload-mb 2048
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scopeflow.client import Client, TransferProgress  # noqa: E402
from scopeflow.testing import Server  # noqa: E402

DATA = HERE / ".data" / "service"
EXAMPLE = HERE.parent / "src/scopeflow/service/templates.example.yaml"


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


def _upload(url: str, token: str, mb: int, folder: Path) -> dict[str, Any]:
    src = folder / "upload.bin"
    rng = np.random.default_rng(0)
    with src.open("wb") as fh:
        for _ in range(mb // 64):
            fh.write(rng.integers(0, 256, 64 * 2**20, dtype=np.uint8).tobytes())
    size = src.stat().st_size
    t0 = time.perf_counter()
    h = hashlib.sha256()
    with src.open("rb") as fh:
        while block := fh.read(8 * 2**20):
            h.update(block)
    t_hash = time.perf_counter() - t0
    c = Client(url, token)
    job = c.create_job("toy", "upload")["id"]
    t0 = time.perf_counter()
    c.upload(job, src, "a.bin")
    t_full = time.perf_counter() - t0

    class CutError(Exception):
        pass

    def cut(s: TransferProgress) -> None:
        if s.done >= size // 2:
            raise CutError

    with contextlib.suppress(CutError):
        c.upload(job, src, "b.bin", progress=cut)
    first: list[float] = []
    t0 = time.perf_counter()
    resumed_from: list[int] = []

    def mark(s: TransferProgress) -> None:
        if not first:
            first.append(time.perf_counter() - t0)
            resumed_from.append(s.done)

    c.upload(job, src, "b.bin", progress=mark)
    t_resume = time.perf_counter() - t0
    c.close()
    src.unlink()
    transfer = t_full - t_hash  # the client hashes the file once before sending it
    return {
        "mib": mb,
        "sha256_s": round(t_hash, 2),
        "upload_s_including_hash_and_server_check": round(t_full, 2),
        "transfer_mb_per_s": round(size / 1e6 / transfer, 1),
        "resume": {
            "cut_at_bytes": size // 2,
            "resumed_from_bytes": resumed_from[0] if resumed_from else None,
            "bytes_sent_twice": (size // 2 - resumed_from[0]) if resumed_from else None,
            "seconds_before_data_flows": round(first[0], 3) if first else None,
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
