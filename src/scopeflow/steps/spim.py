"""SPIM step functions: one time point's I/O plus the array operations of :mod:`scopeflow.ops.spim`.

Parameter models carry the vocabulary of the published Snakemake SPIM workflow where it maps
(``sigma``, ``threshold``, ``transformation_model``, ``downsample``, ``minimal_x`` …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from scopeflow.core.config import StrictModel
from scopeflow.core.errors import FormatError, InputNotFoundError
from scopeflow.io import open_image, read_tiff
from scopeflow.ops.spim.bead_bias import intensity_gradient_shift
from scopeflow.ops.spim.beads import detect_beads
from scopeflow.ops.spim.ransac import ransac
from scopeflow.ops.spim.register import MatchOptions, match_pair, register_points

__all__ = [
    "DeconvolutionParams",
    "DetectionParams",
    "FusionParams",
    "RegistrationParams",
    "SpimInput",
    "TimelapseParams",
    "ViewKey",
    "read_views",
    "register_timepoint_to_reference",
    "timepoint_beads",
]

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class ViewKey:
    """One raw view: its BDV setup id and its angle, channel and illumination indices."""

    setup: int
    angle: int
    channel: int
    illumination: int


class SpimInput(StrictModel):
    """Where the raw views are (``input:`` in config.yaml)."""

    format: Literal["tiff", "czi"] = Field("tiff", description="raw file format")
    pattern: str = Field(
        description="tiff: one file per view, with {t} and {v} (angle index), and {c} "
        "(channel index) or {channel} (its name) and {i} (illumination index) where there are "
        "several (e.g. 't{t:03d}_v{v:02d}_c{c}.tif'); czi: one file per time point with {t}, "
        "views as scenes, channels as C, illuminations as I"
    )
    views: Literal["files", "scenes"] = Field(
        "files", description="czi: 'scenes' (one scene per view)"
    )


class DetectionParams(StrictModel):
    """Bead detection (Difference-of-Gaussian)."""

    type_of_detection: Literal["difference_of_gaussian"] = "difference_of_gaussian"
    sigma: float = Field(1.8, gt=0.5, description="DoG sigma, voxels")
    threshold: float = Field(0.008, ge=0, description="DoG threshold on [0, 1] intensities")
    find_maxima: bool = Field(True, description="bright beads (false: dark spots)")
    downsample_xy: int = Field(1, ge=1, description="block-average x and y by this first")
    downsample_z: int = Field(1, ge=1, description="block-average z by this first")
    max_detections: int | None = Field(None, ge=1, description="keep the strongest N per view")
    localization: Literal["quadratic", "gaussian"] = Field(
        "quadratic", description="sub-pixel fit: quadratic on the DoG, or a 3-D Gaussian"
    )
    gradient_correction: bool = Field(
        True,
        description="remove the shift an intensity gradient (depth attenuation, one-sided "
        "light sheet) gives every bead's apparent centre, measured from the beads",
    )
    channel: str | None = Field(
        None, description="channel with the beads (its name; default the first channel)"
    )
    illumination: int | None = Field(
        None,
        description="illumination to detect in (default the first); its registration "
        "applies to every channel and illumination of the angle",
    )


class RegistrationParams(StrictModel):
    """Bead-based registration of the views of a time point."""

    transformation_model: Literal["translation", "rigid", "affine"] = "affine"
    regularize_model: bool = Field(
        False, description="affine regularised by rigid (fewer beads; views near-rigid)"
    )
    regularize_lambda: float = Field(0.1, ge=0, le=1, description="weight of the rigid model")
    descriptor: Literal["rotation_invariant", "translation_invariant"] = "rotation_invariant"
    redundancy: int = Field(1, ge=0, le=4, description="extra neighbours per descriptor")
    significance: float | None = Field(
        None, gt=1, description="ratio test (default 10 rotation-, 3 translation-invariant)"
    )
    allowed_error_for_ransac: float = Field(5.0, gt=0, description="RANSAC epsilon, px")
    ransac_iterations: int = Field(10_000, ge=100)
    min_inlier_ratio: float = Field(0.1, ge=0, le=1)
    min_inliers: int = Field(12, ge=3)
    relative_threshold: float = Field(5.0, gt=1, description="drop links worse than this x mean")
    absolute_threshold: float = Field(7.0, gt=0, description="drop links worse than this, px")
    fix_view: int = Field(0, ge=0, description="view that keeps its nominal transform")

    def match_options(self) -> MatchOptions:
        """These settings as the registration's matching options."""
        return MatchOptions(
            descriptor=self.descriptor,
            redundancy=self.redundancy,
            ratio=self.significance,
            model=self.transformation_model,
            regularize=self.regularize_lambda if self.regularize_model else 0.0,
            epsilon=self.allowed_error_for_ransac,
            min_inlier_ratio=self.min_inlier_ratio,
            min_inliers=self.min_inliers,
            iterations=self.ransac_iterations,
        )


class TimelapseParams(StrictModel):
    """Registration of every time point to ``reference_timepoint``."""

    transformation_model: Literal["translation", "rigid", "affine"] = "translation"
    allowed_error_for_ransac: float = Field(5.0, gt=0)
    min_inliers: int = Field(12, ge=3)


class FusionParams(StrictModel):
    """Weighted-average fusion (``fusion_switch: fusion``)."""

    downsample: int = Field(1, ge=1, description="output voxel = downsample x input x spacing")
    blending_range: float = Field(40.0, ge=0, description="cosine blending width, px")
    blending_border: float = Field(0.0, ge=0, description="ignored margin of each view, px")
    content_based: bool = Field(False, description="multiply by content-based weights")
    sigma1: float = Field(20.0, gt=0, description="content-based: high-pass sigma, px")
    sigma2: float = Field(40.0, gt=0, description="content-based: averaging sigma, px")
    pixel_type: Literal["uint16", "float32"] = "uint16"
    block: int = Field(64, ge=8, description="output block size, voxels")
    minimal_x: float | None = None
    minimal_y: float | None = None
    minimal_z: float | None = None
    maximal_x: float | None = None
    maximal_y: float | None = None
    maximal_z: float | None = None

    def bounding_box(self, lo: F64, hi: F64) -> tuple[F64, F64]:
        """The configured box, its unset sides from the views' union ``lo``..``hi``."""
        box_lo = np.array([self.minimal_x, self.minimal_y, self.minimal_z], dtype=object)
        box_hi = np.array([self.maximal_x, self.maximal_y, self.maximal_z], dtype=object)
        out_lo = np.array([lo[i] if box_lo[i] is None else box_lo[i] for i in range(3)], float)
        out_hi = np.array([hi[i] if box_hi[i] is None else box_hi[i] for i in range(3)], float)
        return out_lo, out_hi


class DeconvolutionParams(StrictModel):
    """Multi-view Richardson-Lucy (``fusion_switch: deconvolution``) on the fusion grid."""

    iterations: int = Field(10, ge=1, le=500)
    psf_type: Literal["independent", "efficient_bayesian", "optimization_i", "optimization_ii"] = (
        "optimization_i"
    )
    tikhonov_parameter: float = Field(0.006, ge=0, description="lambda; 0 switches it off")
    osem_acceleration: float = Field(1.0, gt=0, description="weights x this (1 = none)")
    psf_size_x: int = Field(19, ge=3, description="PSF box, output voxels (odd)")
    psf_size_y: int = Field(19, ge=3)
    psf_size_z: int = Field(25, ge=3)
    psf_file: str | None = Field(
        None,
        description="TIFF (z, y, x) of the PSF in a view's pixel frame, used for every view "
        "(relative to root); default: extracted from the registered beads",
    )
    gpu: bool | None = Field(None, description="CuPy: true = required, null = when available")
    block: int | None = Field(
        128,
        ge=16,
        description="convolve in blocks of at most this many voxels per side, the volume "
        "split evenly (bounds the FFTs' memory: the 2 kernel spectra per view and the "
        "buffers, about 140 MB at 128 and 1 GB at 256 for 4 views; same result; "
        "null: the whole volume)",
    )

    @model_validator(mode="after")
    def _odd(self) -> DeconvolutionParams:
        if any(s % 2 == 0 for s in (self.psf_size_x, self.psf_size_y, self.psf_size_z)):
            raise ValueError("psf_size_x, psf_size_y and psf_size_z must be odd")
        return self


def read_views(
    spec: SpimInput,
    root: Path,
    t: int,
    keys: Sequence[ViewKey],
    channel_names: Sequence[str] = (),
) -> list[NDArray[Any]]:
    """The raw ``(z, y, x)`` views ``keys`` of time point ``t`` as NumPy arrays, in that order.

    Raises
    ------
    InputNotFoundError
        A file is missing.
    FormatError
        A file is unreadable, lacks a scene, channel or illumination, or a view is not 3-D.
    """
    if spec.format == "czi":
        out = _read_czi_views(root / spec.pattern.format(t=t), keys)
        where = [root / spec.pattern.format(t=t)] * len(keys)
    else:
        out, where = [], []
        for k in keys:
            name = channel_names[k.channel] if k.channel < len(channel_names) else str(k.channel)
            path = root / spec.pattern.format(
                t=t, v=k.angle, c=k.channel, i=k.illumination, channel=name
            )
            if not path.exists():
                raise InputNotFoundError(
                    path, f"angle {k.angle}, channel {name}, illumination {k.illumination}, t {t}"
                )
            out.append(read_tiff(path)[0])  # damage checks included
            where.append(path)
    for k, vol, path in zip(keys, out, where, strict=True):
        if vol.ndim != 3:
            raise FormatError(path, f"view {k} has shape {vol.shape}, expected (z, y, x)")
    return out


def _read_czi_views(path: Path, keys: Sequence[ViewKey]) -> list[NDArray[Any]]:
    """Views of one CZI: angle = scene (in scene order), channel = C, illumination = I index."""
    out = []
    with open_image(path, "czi") as reader:
        metas = [reader.metadata(s) for s in range(reader.series_count)]
        scenes = sorted({-1 if m.scene is None else m.scene for m in metas})
        series = {
            (scenes.index(-1 if m.scene is None else m.scene), m.illumination or 0): s
            for s, m in enumerate(metas)
        }
        for k in keys:
            s = series.get((k.angle, k.illumination))
            if s is None:
                raise FormatError(
                    path,
                    f"no scene {k.angle} with illumination {k.illumination} ({len(scenes)} scenes)",
                )
            n_c = metas[s].shape[1]
            if k.channel >= n_c:
                raise FormatError(path, f"{n_c} channels, channel {k.channel} asked for")
            arr = reader.to_dask(s)[0, k.channel]
            out.append(np.asarray(arr.compute(scheduler="sync")))
    return out


def timepoint_beads(
    views: Sequence[NDArray[Any]], params: DetectionParams, anisotropy: float
) -> tuple[list[F64], list[dict[str, Any]]]:
    """Bead positions ``(x, y, z)`` in each view's pixels, and per view what was corrected.

    With ``params.gradient_correction`` the shift that the view's intensity gradient gives
    every bead's apparent centre is measured from the beads and removed
    (:mod:`scopeflow.ops.spim.bead_bias`).
    """
    beads, reports = [], []
    for vol in views:
        xyz = detect_beads(
            vol,
            sigma=params.sigma,
            threshold=params.threshold,
            find="max" if params.find_maxima else "min",
            anisotropy=anisotropy / params.downsample_z * params.downsample_xy,
            downsample_xy=params.downsample_xy,
            downsample_z=params.downsample_z,
            max_detections=params.max_detections,
            localization=params.localization,
        ).xyz
        report: dict[str, Any] = {"beads": len(xyz)}
        if params.gradient_correction and params.find_maxima:
            bias = intensity_gradient_shift(vol, xyz)
            xyz = xyz - bias.shift
            report["gradient_correction"] = bias.to_dict()
        beads.append(xyz)
        reports.append(report)
    return beads, reports


def register_views(
    beads_world: Sequence[F64], params: RegistrationParams, *, seed: int = 0
) -> tuple[F64, dict[str, Any]]:
    """Models ``(V, 3, 4)`` that register the views, and a JSON-able report."""
    reg = register_points(
        beads_world,
        params.match_options(),
        fixed=(params.fix_view,),
        relative_threshold=params.relative_threshold,
        absolute_threshold=params.absolute_threshold,
        seed=seed,
    )
    report = {
        "pairs": {
            f"{i}-{j}": {
                "candidates": len(m.candidates),
                "inliers": m.ransac.n_inliers,
                "ransac_error": None if m.ransac.model is None else round(m.ransac.error, 4),
            }
            for (i, j), m in reg.pairs.items()
        },
        "link_errors": {f"{i}-{j}": round(e, 4) for (i, j), e in reg.fit.link_errors.items()},
        "dropped": [f"{i}-{j}" for i, j in reg.fit.dropped],
        "unlinked": reg.fit.unlinked,
        "mean_error": round(reg.fit.mean_error, 4) if reg.fit.link_errors else None,
    }
    return reg.models, report


def register_timepoint_to_reference(
    beads_t: Sequence[F64],
    beads_ref: Sequence[F64],
    params: TimelapseParams,
    *,
    seed: int = 0,
) -> tuple[F64, dict[str, Any]]:
    """One model mapping time point ``t``'s world onto the reference's, from all views' beads.

    Each view's beads (registered world coordinates) at ``t`` are matched to the same view's
    beads at the reference; the correspondences of all views are pooled in one RANSAC.
    """
    options = MatchOptions(
        descriptor="translation_invariant",
        model=params.transformation_model,
        epsilon=params.allowed_error_for_ransac,
        min_inliers=params.min_inliers,
    )
    p_all, q_all = [], []
    for a, b in zip(beads_t, beads_ref, strict=True):
        m = match_pair(a, b, options, seed=seed)
        idx = m.inliers
        p_all.append(a[idx[:, 0]])
        q_all.append(b[idx[:, 1]])
    p = np.concatenate(p_all) if p_all else np.zeros((0, 3))
    q = np.concatenate(q_all) if q_all else np.zeros((0, 3))
    res = ransac(
        p,
        q,
        model=params.transformation_model,
        epsilon=params.allowed_error_for_ransac,
        min_inliers=params.min_inliers,
        seed=seed,
    )
    if res.model is None:
        raise FormatError(
            Path("beads"), f"time point not registered: {len(p)} candidate correspondences"
        )
    return res.model, {"inliers": res.n_inliers, "error": round(res.error, 4)}
