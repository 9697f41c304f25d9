"""Ground truth of a synthetic multiview SPIM dataset, and its coordinate convention.

Convention (also written into ``truth.json`` under ``"convention"``):

* View pixel coordinates are ``(x, y, z)`` voxel indices of a view volume stored as a ``z, y, x``
  array; the centre of voxel ``arr[k, j, i]`` is at ``(i, j, k)``.
* World coordinates are in micrometres, in the frame of the *sample at time point 0*.
* ``A_v`` (``true_affine`` of view ``v``) is a row-major 3x4 affine mapping view pixel
  coordinates to world coordinates (the BigDataViewer ``ViewRegistration`` convention, so it
  includes the voxel-size calibration).
* At time point ``t`` the whole sample has drifted by ``d_t`` (``d_0 = 0``): a world point ``w``
  is imaged by view ``v`` at view pixel ``p = A_v⁻¹(w + d_t)``, and conversely
  ``w = A_v(p) - d_t``. The complete registration of view ``v`` at time ``t`` into the
  reference (t = 0) frame is therefore ``T(-d_t) · A_v`` (:meth:`SpimTruth.view_affine`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core import affine as _affine
from scopeflow.core.errors import FormatError, InputNotFoundError
from scopeflow.core.fileio import atomic_write_text

CONVENTION = (
    "Affines are row-major 3x4 [M|t] mapping view pixel coordinates (x, y, z) -- voxel indices, "
    "voxel centres at integers, arrays stored z,y,x -- to world coordinates in micrometres "
    "(BigDataViewer convention, voxel-size calibration included). World = frame of the sample "
    "at time point 0. At time point t the sample has drifted by d_t (d_0 = 0): a world point w is "
    "imaged by view v at pixel p = A_v^-1 (w + d_t); conversely w = A_v(p) - d_t. The full "
    "registration of (view v, time t) into the t=0 world is T(-d_t) . A_v. Setup 0 is the "
    "reference view: its true affine equals its nominal affine."
)

FORMAT_VERSION = 1


def _ro(a: ArrayLike, shape_tail: tuple[int, ...]) -> NDArray[np.float64]:
    arr = np.array(a, dtype=np.float64)
    if arr.size == 0:
        arr = arr.reshape((0, *shape_tail))
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class SpimTruth:
    """Known geometry of a synthetic multiview SPIM dataset (see the module docstring).

    Attributes
    ----------
    root
        Folder of the dataset; ``files`` are relative to it.
    shape
        ``(z, y, x)`` shape of every view volume, in voxels.
    voxel_size
        ``(x, y, z)`` voxel size in micrometres.
    angles
        Nominal rotation angle of each view about the y axis, degrees.
    nominal_affines, true_affines
        ``(V, 3, 4)`` view pixel → world affines; ``true`` = nominal with small errors.
    drifts
        ``(T, 3)`` sample drift ``d_t`` in world micrometres (``x, y, z``), ``drifts[0] == 0``.
    beads_world
        ``(N, 3)`` bead positions ``(x, y, z)`` in world micrometres (sample frame, t = 0).
    nuclei_world
        ``(M, 4)`` nucleus centres ``(x, y, z)`` and radii, world micrometres.
    specimen_centre, specimen_semi_axes
        The ellipsoidal specimen (world micrometres) that holds the nuclei; beads stay outside.
    psf_sigma
        ``(x, y, z)`` standard deviation of the Gaussian PSF, micrometres (in view axes).
    attenuation_length
        Signal at depth ``z·voxel_size[2]`` µm along a view's z axis is scaled by
        ``exp(-depth / attenuation_length)``.
    background, camera_offset
        Mean background photons per voxel and the constant added after Poisson noise.
    seed
        The generator seed.
    channels
        Channel names (channel 0 holds the beads).
    illuminations
        Number of illuminations (1: uniform; more: one-sided light sheets).
    illumination_length
        λ of a one-sided light sheet's attenuation along x, µm.
    files
        Relative paths: ``tiff`` (``[t][v]``, or ``[t][v][c][i]`` with several channels or
        illuminations), ``czi`` (``[t]``, may be empty), ``config``, ``tiff_pattern``,
        ``czi_pattern``.
    """

    root: Path
    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float]
    angles: tuple[float, ...]
    nominal_affines: NDArray[np.float64]
    true_affines: NDArray[np.float64]
    drifts: NDArray[np.float64]
    beads_world: NDArray[np.float64]
    nuclei_world: NDArray[np.float64]
    specimen_centre: tuple[float, float, float]
    specimen_semi_axes: tuple[float, float, float]
    psf_sigma: tuple[float, float, float]
    attenuation_length: float
    background: float
    camera_offset: int
    seed: int
    channels: tuple[str, ...] = ("beads",)
    illuminations: int = 1
    illumination_length: float = 200.0
    files: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nominal_affines", _ro(self.nominal_affines, (3, 4)))
        object.__setattr__(self, "true_affines", _ro(self.true_affines, (3, 4)))
        object.__setattr__(self, "drifts", _ro(self.drifts, (3,)))
        object.__setattr__(self, "beads_world", _ro(self.beads_world, (3,)))
        object.__setattr__(self, "nuclei_world", _ro(self.nuclei_world, (4,)))

    @property
    def n_views(self) -> int:
        """Number of views (setups)."""
        return int(self.true_affines.shape[0])

    @property
    def n_timepoints(self) -> int:
        """Number of time points."""
        return int(self.drifts.shape[0])

    def view_affine(self, v: int, t: int) -> NDArray[np.float64]:
        """Return ``T(-d_t) · A_v``: view ``v`` pixels at time ``t`` → world (t = 0 frame)."""
        return _affine.compose(_affine.translation(-self.drifts[t]), self.true_affines[v])

    def view_to_world(self, v: int, t: int, pts_xyz: ArrayLike) -> NDArray[np.float64]:
        """Map view pixel coordinates ``(N, 3)`` ``(x, y, z)`` to world: ``A_v(p) - d_t``."""
        w: NDArray[np.float64] = _affine.apply(self.true_affines[v], pts_xyz) - self.drifts[t]
        return w

    def world_to_view(self, v: int, t: int, pts_xyz: ArrayLike) -> NDArray[np.float64]:
        """Map world points ``(N, 3)`` ``(x, y, z)`` to view pixels: ``A_v⁻¹(w + d_t)``."""
        w = np.asarray(pts_xyz, dtype=np.float64) + self.drifts[t]
        return _affine.apply(_affine.invert(self.true_affines[v]), w)

    def path(self, key: str, t: int, v: int | None = None, c: int = 0, i: int = 0) -> Path:
        """Absolute path of a data file: ``path("tiff", t, v[, c, i])`` or ``path("czi", t)``."""
        entry = self.files[key]
        rel = entry[t][v] if v is not None else entry[t]
        if isinstance(rel, list):  # [c][i] with several channels or illuminations
            rel = rel[c][i]
        return self.root / str(rel)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable form written to ``truth.json``."""
        views = [
            {
                "setup": i,
                "angle": float(self.angles[i]),
                "nominal_affine": self.nominal_affines[i].ravel().tolist(),
                "true_affine": self.true_affines[i].ravel().tolist(),
            }
            for i in range(self.n_views)
        ]
        return {
            "format_version": FORMAT_VERSION,
            "convention": CONVENTION,
            "unit": "um",
            "shape": list(self.shape),
            "shape_axes": "zyx",
            "voxel_size": list(self.voxel_size),
            "seed": self.seed,
            "views": views,
            "timepoints": [
                {"t": t, "drift": self.drifts[t].tolist()} for t in range(self.n_timepoints)
            ],
            "beads_world": self.beads_world.tolist(),
            "nuclei_world": self.nuclei_world.tolist(),
            "specimen": {
                "centre": list(self.specimen_centre),
                "semi_axes": list(self.specimen_semi_axes),
            },
            "psf_sigma": list(self.psf_sigma),
            "attenuation_length": self.attenuation_length,
            "background": self.background,
            "camera_offset": self.camera_offset,
            "channels": list(self.channels),
            "illuminations": self.illuminations,
            "illumination_length": self.illumination_length,
            "files": self.files,
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """Return the ``truth.json`` text; when ``path`` is given, also write it atomically."""
        text = _dumps(self.to_dict())
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_json(cls, path: str | Path) -> SpimTruth:
        """Read a ``truth.json`` written by :func:`make_spim_dataset` (``root`` = its folder)."""
        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(path, "SPIM truth file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            views = sorted(d["views"], key=lambda e: e["setup"])
            tps = sorted(d["timepoints"], key=lambda e: e["t"])
            return cls(
                root=path.parent,
                shape=(int(d["shape"][0]), int(d["shape"][1]), int(d["shape"][2])),
                voxel_size=(
                    float(d["voxel_size"][0]),
                    float(d["voxel_size"][1]),
                    float(d["voxel_size"][2]),
                ),
                angles=tuple(float(e["angle"]) for e in views),
                nominal_affines=np.array([_affine.as_affine(e["nominal_affine"]) for e in views]),
                true_affines=np.array([_affine.as_affine(e["true_affine"]) for e in views]),
                drifts=np.array([e["drift"] for e in tps], dtype=np.float64),
                beads_world=np.array(d["beads_world"], dtype=np.float64),
                nuclei_world=np.array(d["nuclei_world"], dtype=np.float64),
                specimen_centre=_triple(d["specimen"]["centre"]),
                specimen_semi_axes=_triple(d["specimen"]["semi_axes"]),
                psf_sigma=_triple(d["psf_sigma"]),
                attenuation_length=float(d["attenuation_length"]),
                background=float(d["background"]),
                camera_offset=int(d["camera_offset"]),
                seed=int(d["seed"]),
                channels=tuple(str(c) for c in d.get("channels", ["beads"])),
                illuminations=int(d.get("illuminations", 1)),
                illumination_length=float(d.get("illumination_length", 200.0)),
                files=dict(d["files"]),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise FormatError(path, f"not a scopeflow SPIM truth file ({exc!r})") from exc


def _dumps(d: dict[str, Any]) -> str:
    """JSON with one line per top-level key and one line per element of lists of lists/dicts."""
    parts = []
    for key, val in d.items():
        if isinstance(val, list) and val and isinstance(val[0], list | dict):
            inner = ",\n".join("  " + json.dumps(x) for x in val)
            parts.append(f" {json.dumps(key)}: [\n{inner}\n ]")
        else:
            parts.append(f" {json.dumps(key)}: {json.dumps(val)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _triple(v: Any) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _inside(
    p: NDArray[np.float64], shape: tuple[int, int, int], margin: float
) -> NDArray[np.bool_]:
    upper = np.array([shape[2], shape[1], shape[0]], dtype=np.float64) - 1.0 - margin
    inside: NDArray[np.bool_] = np.all((p >= margin) & (p <= upper), axis=1)
    return inside


def beads_in_view_index(
    truth: SpimTruth, v: int, t: int, *, margin: float = 0.0
) -> NDArray[np.intp]:
    """Indices into ``truth.beads_world`` of the beads inside view ``v`` at time point ``t``.

    Parameters
    ----------
    truth
        The dataset's ground truth.
    v, t
        View (setup) and time point.
    margin
        Keep only beads at least ``margin`` voxels from every face of the volume (voxel centres
        span ``0 … n - 1``); negative values also keep beads just outside.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` sorted bead indices; the same index in two views is a true correspondence.
    """
    p = truth.world_to_view(v, t, truth.beads_world)
    return np.flatnonzero(_inside(p, truth.shape, margin))


def beads_in_view(truth: SpimTruth, v: int, t: int, *, margin: float = 0.0) -> NDArray[np.float64]:
    """True bead positions in view ``v`` at time ``t``, in view pixel coordinates.

    Parameters
    ----------
    truth
        The dataset's ground truth.
    v, t
        View (setup) and time point.
    margin
        See :func:`beads_in_view_index`.

    Returns
    -------
    numpy.ndarray
        ``(N, 3)`` float64 ``(x, y, z)`` pixel coordinates of the beads inside the volume, in
        the order of :func:`beads_in_view_index`.
    """
    idx = beads_in_view_index(truth, v, t, margin=margin)
    return truth.world_to_view(v, t, truth.beads_world[idx])


def registration_errors(
    truth: SpimTruth,
    view_to_world: Sequence[ArrayLike],
    t: int = 0,
    *,
    margin: float = 2.0,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> NDArray[np.float64]:
    """How far apart estimated view models put the same true beads.

    For every pair of views and every true bead inside both (``margin`` voxels from the faces),
    the bead's true view coordinates in each view are mapped by that view's estimated pixel →
    world model; the distance between the two results is one error (world units; voxels when
    the xy voxel size is 1).

    Parameters
    ----------
    truth
        The dataset's ground truth.
    view_to_world
        Estimated ``3 x 4`` pixel → world model of each view at time point ``t``.
    t
        Time point.
    margin
        See :func:`beads_in_view_index`.
    pairs
        The view pairs ``(i, j)`` to measure, in this order; default: every pair ``i < j``.

    Returns
    -------
    numpy.ndarray
        The errors of each pair in turn (its beads in index order), concatenated.
    """
    if pairs is None:
        pairs = [(i, j) for i in range(truth.n_views) for j in range(i + 1, truth.n_views)]
    errs = [np.zeros(0)]
    for i, j in pairs:
        both = np.intersect1d(
            beads_in_view_index(truth, i, t, margin=margin),
            beads_in_view_index(truth, j, t, margin=margin),
        )
        w = truth.beads_world[both]
        wi = _affine.apply(view_to_world[i], truth.world_to_view(i, t, w))
        wj = _affine.apply(view_to_world[j], truth.world_to_view(j, t, w))
        errs.append(np.linalg.norm(wi - wj, axis=1))
    out: NDArray[np.float64] = np.concatenate(errs)
    return out
