"""Undo Dask's allocator setting in worker processes (glibc only).

Dask's nanny starts every worker with ``MALLOC_TRIM_THRESHOLD_=65536``
(``distributed.nanny.pre-spawn-environ``), so that freed memory goes back to the system quickly.
Setting any of glibc's malloc thresholds also switches off its *dynamic* mmap threshold: every
temporary array above 128 KiB then becomes a fresh ``mmap`` that has to be page-faulted in, and
numerical code full of medium-sized temporaries (per-cell features, filters) runs 2-3x slower
(measured in docs/benchmarks.md). The dynamic threshold cannot be switched back on, but fixing
both thresholds at the values it would reach (32 MiB, glibc's cap for it) restores the speed.

This is done at run time with ``mallopt`` rather than through the environment, because the
environment of a worker is not ours to set on every backend (Slurm jobs, ``mpirun`` ranks,
clusters started by the user).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what the dynamic rule sets alongside it


@functools.cache
def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds for large-array work, once per process.

    Set ``SCOPEFLOW_MALLOC_TUNING=0`` to leave the allocator alone.

    Returns
    -------
    bool
        Whether the thresholds were set (False off glibc, when disabled, or on failure).
    """
    if not sys.platform.startswith("linux") or os.environ.get("SCOPEFLOW_MALLOC_TUNING") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
