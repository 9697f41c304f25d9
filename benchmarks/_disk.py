"""Raw sequential write speed of a disk, for comparing writers against it in the same run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np


def sequential_write_mb_s(folder: Path, *, total_mb: int = 1024, block_mb: int = 64) -> float:
    """Write ``total_mb`` of incompressible bytes in ``block_mb`` blocks, fsync, and time it.

    Returns MB/s (1 MB = 10^6 bytes). The file is removed afterwards.
    """
    folder.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(0).integers(0, 256, block_mb * 2**20, dtype=np.uint8).tobytes()
    path = folder / "disk-speed.bin"
    n = max(1, total_mb // block_mb)
    t0 = time.perf_counter()
    with path.open("wb", buffering=0) as fh:
        for _ in range(n):
            fh.write(block)
        os.fsync(fh.fileno())
    seconds = time.perf_counter() - t0
    path.unlink()
    return n * len(block) / seconds / 1e6
