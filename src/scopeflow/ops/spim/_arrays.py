"""Small array helpers shared by the SPIM operations."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]


def block_mean(vol: NDArray[np.generic], fz: int, fxy: int, *, partial: bool) -> F32:
    """Average ``(z, y, x)`` blocks of ``fz x fxy x fxy`` voxels (float32).

    ``partial``: blocks cut by the volume's far faces are kept (the edge voxels repeated);
    otherwise the leftover voxels are dropped.
    """
    v = np.asarray(vol, dtype=np.float32)
    if fz == fxy == 1:
        return v
    factors = (fz, fxy, fxy)
    if partial:
        v = np.pad(v, [(0, (-s) % f) for s, f in zip(v.shape, factors, strict=True)], mode="edge")
    else:
        v = v[tuple(slice(0, s - s % f) for s, f in zip(v.shape, factors, strict=True))]
    z, y, x = v.shape
    out: F32 = v.reshape(z // fz, fz, y // fxy, fxy, x // fxy, fxy).mean(
        axis=(1, 3, 5), dtype=np.float32
    )
    return out
