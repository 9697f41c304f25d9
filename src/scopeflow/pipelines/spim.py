"""The multiview light-sheet (SPIM) reconstruction pipeline (``scopeflow run spim``).

Units are time points. Steps (see docs/spim.md):

``resave`` (per time point)
    Raw TIFF / CZI views → one BigDataViewer HDF5 partition with a pyramid, and the time
    point's XML with each view's nominal transforms (calibration, rotation about y).
``detect_beads`` (per time point)
    Difference-of-Gaussian beads of every view → ``_work/beads/t<t>.npz`` (view pixels).
``register_views`` (per time point)
    Descriptors, RANSAC, global optimisation; the model is prepended to each view's transforms
    in ``_work/xml/t<t>-registered.xml``.
``merge`` (once)
    Every time point's XML → one dataset over the master HDF5 file.
``register_timelapse`` (once)
    Each time point onto ``reference_timepoint`` via the same beads → ``outputs/registered.xml``.
``fuse`` (per time point)
    Weighted-average fusion on the bounding box → a BDV partition and the OME-Zarr's region.
``write_output`` (once)
    The fused dataset's master HDF5 + XML, and PNG max projections per time point.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from scopeflow.core import affine as _affine
from scopeflow.core.config import OutputPath, StrictModel
from scopeflow.core.errors import ConfigError, InputNotFoundError
from scopeflow.engine import Pipeline, Step, UnitContext, all_units, per_unit
from scopeflow.io import (
    BdvReader,
    SpimData,
    ViewSetup,
    ViewTransform,
    create_ome_zarr,
    merge_spimdata,
    partition_filename,
    read_spimdata,
    read_tiff,
    write_bdv_master,
    write_bdv_partition,
    write_ome_zarr_region,
    write_spimdata,
)
from scopeflow.ops.spim.deconvolution import deconvolve_views
from scopeflow.ops.spim.fusion import (
    FusionGrid,
    extract_psf,
    fuse,
    psf_to_grid,
    resample_to_grid,
    union_bounds,
)
from scopeflow.steps import spim as steps

__all__ = ["PIPELINE", "SpimConfig", "VoxelSize"]


class VoxelSize(StrictModel):
    """Voxel size of the raw views."""

    x: float = Field(gt=0)
    y: float = Field(gt=0)
    z: float = Field(gt=0)
    unit: str = "um"

    def xyz(self) -> tuple[float, float, float]:
        """``(x, y, z)``."""
        return (self.x, self.y, self.z)


class SpimConfig(StrictModel):
    """Configuration of the ``spim`` pipeline (config.yaml)."""

    root: OutputPath = Field(Path(), validate_default=True, description="base of input paths")
    input: steps.SpimInput
    ntimepoints: int = Field(ge=1, description="time points 0 … ntimepoints - 1")
    angles: list[float] = Field(min_length=1, description="rotation of each view, degrees")
    rotation_around: Literal["y"] = "y"
    channels: list[str] = Field(
        default_factory=lambda: ["beads"], min_length=1, description="channel names"
    )
    illuminations: list[int] = Field(
        default_factory=lambda: [0], min_length=1, description="illumination ids (light sheets)"
    )
    voxel_size: VoxelSize
    reference_timepoint: int = Field(0, ge=0)
    detection: steps.DetectionParams = Field(default_factory=steps.DetectionParams)
    registration: steps.RegistrationParams = Field(default_factory=steps.RegistrationParams)
    timelapse: steps.TimelapseParams = Field(default_factory=steps.TimelapseParams)
    fusion_switch: Literal["fusion", "deconvolution"] = "fusion"
    fusion: steps.FusionParams = Field(default_factory=steps.FusionParams)
    deconvolution: steps.DeconvolutionParams = Field(default_factory=steps.DeconvolutionParams)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SpimConfig:
        problems = []
        if self.reference_timepoint >= self.ntimepoints:
            problems.append(("reference_timepoint", f"must be < ntimepoints ({self.ntimepoints})"))
        if self.registration.fix_view >= len(self.angles):
            problems.append(("registration.fix_view", f"must be < views ({len(self.angles)})"))
        for name, values in (("channels", self.channels), ("illuminations", self.illuminations)):
            if len(set(values)) != len(values):
                problems.append((name, f"repeated entries in {values}"))
        det = self.detection
        if det.channel is not None and det.channel not in self.channels:
            problems.append(("detection.channel", f"{det.channel!r} is not in {self.channels}"))
        if det.illumination is not None and det.illumination not in self.illuminations:
            problems.append(
                ("detection.illumination", f"{det.illumination} is not in {self.illuminations}")
            )
        problems += self._pattern_problems()
        if problems:
            raise ConfigError("config", problems)
        return self

    def _pattern_problems(self) -> list[tuple[str, str]]:
        """Placeholders the TIFF pattern needs to tell the views apart."""
        if self.input.format != "tiff":
            return []
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.input.pattern) if f}
        except ValueError as exc:
            return [("input.pattern", f"not a format string: {exc}")]
        unknown = fields - {"t", "v", "c", "i", "channel"}
        need = [
            ("{v}", len(self.angles) > 1, {"v"}),
            ("{c} or {channel}", len(self.channels) > 1, {"c", "channel"}),
            ("{i}", len(self.illuminations) > 1, {"i"}),
        ]
        out = [("input.pattern", f"unknown placeholders {sorted(unknown)}")] if unknown else []
        for what, needed, names in need:
            if needed and not fields & names:
                out.append(("input.pattern", f"needs {what}: {self.input.pattern!r}"))
        return out

    @property
    def n_views(self) -> int:
        """Number of views."""
        return len(self.angles)

    @property
    def anisotropy(self) -> float:
        """Z over xy voxel size."""
        return self.voxel_size.z / self.voxel_size.x

    def setup_id(self, angle: int, channel: int, illumination: int) -> int:
        """BDV setup id of a view: angles outermost, illuminations innermost."""
        return (angle * len(self.channels) + channel) * len(self.illuminations) + illumination

    def view_keys(self, channel: int | None = None) -> list[steps.ViewKey]:
        """Every view (or those of one channel), in setup order."""
        return [
            steps.ViewKey(self.setup_id(a, c, i), a, c, i)
            for a in range(self.n_views)
            for c in range(len(self.channels))
            for i in range(len(self.illuminations))
            if channel is None or c == channel
        ]

    def bead_keys(self) -> list[steps.ViewKey]:
        """The view of each angle in which beads are detected (one per angle)."""
        det = self.detection
        c = 0 if det.channel is None else self.channels.index(det.channel)
        i = 0 if det.illumination is None else self.illuminations.index(det.illumination)
        return [steps.ViewKey(self.setup_id(a, c, i), a, c, i) for a in range(self.n_views)]


def _units(cfg: SpimConfig) -> list[str]:
    return [f"t{t:04d}" for t in range(cfg.ntimepoints)]


def _t(ctx: UnitContext) -> int:
    return int(ctx.unit[1:])


def _xml(ctx: UnitContext, t: int, kind: str = "") -> Path:
    return ctx.output_path("_work", "xml", f"t{t:04d}{kind}.xml")


def resave(ctx: UnitContext) -> dict[str, Any]:
    """Raw views → BDV partition + the time point's XML with nominal transforms."""
    cfg: SpimConfig = ctx.config
    t = _t(ctx)
    keys = cfg.view_keys()
    views = steps.read_views(cfg.input, Path(cfg.root), t, keys, cfg.channels)
    part = ctx.output_path("dataset", partition_filename("dataset", t))
    write_bdv_partition(
        part,
        t,
        {k.setup: vol for k, vol in zip(keys, views, strict=True)},
        voxel_size=cfg.voxel_size.xyz(),
        num_workers=1,
    )
    sd = SpimData(hdf5=part, timepoints=[t])
    for k, vol in zip(keys, views, strict=True):
        angle = cfg.angles[k.angle]
        channel = cfg.channels[k.channel]
        illumination = cfg.illuminations[k.illumination]
        sd.add_setup(
            ViewSetup(
                id=k.setup,
                name=_setup_name(cfg, k),
                size=(vol.shape[2], vol.shape[1], vol.shape[0]),
                voxel_size=cfg.voxel_size.xyz(),
                attributes={
                    "illumination": k.illumination,
                    "channel": k.channel,
                    "angle": k.angle,
                },
            ),
            illumination=str(illumination),
            channel=channel,
            angle=f"{angle:g}",
        )
        rotation, calibration = _affine.nominal_view_transforms(
            angle, vol.shape, cfg.voxel_size.xyz()
        )
        sd.set_transforms(
            t,
            k.setup,
            [
                ViewTransform(f"rotation {angle:g}", rotation),
                ViewTransform("calibration", calibration),
            ],
        )
    xml = write_spimdata(sd, _xml(ctx, t))
    ctx.log.info("time point %d: %d views resaved to %s", t, len(views), part.name)
    return {"partition": ctx.relative(part), "xml": ctx.relative(xml)}


def _setup_name(cfg: SpimConfig, k: steps.ViewKey) -> str:
    name = f"angle {cfg.angles[k.angle]:g}"
    if len(cfg.channels) > 1:
        name += f" channel {cfg.channels[k.channel]}"
    if len(cfg.illuminations) > 1:
        name += f" illumination {cfg.illuminations[k.illumination]}"
    return name


def _views_of(xml: Path, t: int, setups: list[int]) -> list[np.ndarray]:
    reader = BdvReader(xml)
    with reader:
        return [
            np.asarray(reader.to_dask(reader.series_index(t, s)).compute(scheduler="sync"))
            for s in setups
        ]


def detect(ctx: UnitContext) -> dict[str, Any]:
    """Beads of every angle (in its bead channel and illumination), in view pixels."""
    cfg: SpimConfig = ctx.config
    t = _t(ctx)
    setups = [k.setup for k in cfg.bead_keys()]
    views = _views_of(ctx.run_dir / ctx.upstream["resave"]["xml"], t, setups)
    beads, reports = steps.timepoint_beads(views, cfg.detection, cfg.anisotropy)
    path = ctx.output_path("_work", "beads", f"t{t:04d}.npz")
    np.savez(path, **{f"v{v}": b for v, b in enumerate(beads)})  # type: ignore[arg-type]
    counts = [len(b) for b in beads]
    ctx.log.info("time point %d: beads per angle %s", t, counts)
    return {"beads": ctx.relative(path), "counts": counts, "views": reports}


def _load_beads(path: Path, n_views: int) -> list[np.ndarray]:
    with np.load(path) as z:
        return [z[f"v{v}"] for v in range(n_views)]


def _beads_world(
    cfg: SpimConfig, sd: SpimData, t: int, beads: list[np.ndarray]
) -> list[np.ndarray]:
    """Each angle's beads mapped by its bead view's current model (view pixels → world)."""
    keys = cfg.bead_keys()
    return [_affine.apply(sd.view_model(t, k.setup), b) for k, b in zip(keys, beads, strict=True)]


def _prepend(cfg: SpimConfig, sd: SpimData, t: int, angle: int, model: Any, *, name: str) -> None:
    """Prepend ``model`` to every view (channel, illumination) of ``angle``."""
    for k in cfg.view_keys():
        if k.angle == angle:
            sd.prepend_transform(t, k.setup, model, name=name)


def register(ctx: UnitContext) -> dict[str, Any]:
    """Register the views of the time point; prepend the models to their transforms."""
    cfg: SpimConfig = ctx.config
    t = _t(ctx)
    sd = read_spimdata(ctx.run_dir / ctx.upstream["resave"]["xml"])
    beads = _load_beads(ctx.run_dir / ctx.upstream["detect_beads"]["beads"], cfg.n_views)
    world = _beads_world(cfg, sd, t, beads)
    models, report = steps.register_views(world, cfg.registration, seed=cfg.seed + t)
    if report["unlinked"]:
        ctx.log.warning("time point %d: views %s could not be registered", t, report["unlinked"])
    for v in range(cfg.n_views):
        _prepend(cfg, sd, t, v, models[v], name="registration (beads)")
    xml = write_spimdata(sd, _xml(ctx, t, "-registered"))
    ctx.log.info("time point %d: mean link error %s px", t, report["mean_error"])
    warnings = [f"views {report['unlinked']} not registered"] if report["unlinked"] else []
    return {"xml": ctx.relative(xml), "registration": report, "warnings": warnings}


def merge(ctx: UnitContext) -> dict[str, Any]:
    """Every time point's registered XML → one dataset over a master HDF5 file."""
    resaved = ctx.upstream["resave"]
    registered = ctx.upstream["register_views"]
    parts = [ctx.run_dir / resaved[u]["partition"] for u in sorted(resaved)]
    master = write_bdv_master(ctx.output_path("dataset", "dataset.h5"), parts)
    sds = [read_spimdata(ctx.run_dir / registered[u]["xml"]) for u in sorted(registered)]
    merged = merge_spimdata(sds, hdf5=master)
    xml = write_spimdata(merged, ctx.output_path("_work", "merged.xml"))
    return {"xml": ctx.relative(xml), "hdf5": ctx.relative(master)}


def register_timelapse(ctx: UnitContext) -> dict[str, Any]:
    """Each time point onto the reference via the same beads → ``outputs/registered.xml``."""
    cfg: SpimConfig = ctx.config
    sd = read_spimdata(ctx.run_dir / ctx.upstream["merge"]["xml"])
    detected = ctx.upstream["detect_beads"]
    ref = cfg.reference_timepoint

    def world(t: int) -> list[np.ndarray]:
        beads = _load_beads(ctx.run_dir / detected[f"t{t:04d}"]["beads"], cfg.n_views)
        return _beads_world(cfg, sd, t, beads)

    reference = world(ref)
    report: dict[str, Any] = {}
    for t in range(cfg.ntimepoints):
        if t == ref:
            continue
        model, info = steps.register_timepoint_to_reference(
            world(t), reference, cfg.timelapse, seed=cfg.seed + t
        )
        for v in range(cfg.n_views):
            _prepend(cfg, sd, t, v, model, name=f"timelapse to t{ref}")
        report[f"t{t:04d}"] = {**info, "translation": np.round(model[:, 3], 4).tolist()}
        ctx.log.info("time point %d → %d: %s", t, ref, info)
    xml = write_spimdata(sd, ctx.output_path("registered.xml"))
    return {"outputs": {"registered_xml": ctx.relative(xml)}, "timelapse": report}


def _grid(cfg: SpimConfig, sd: SpimData) -> FusionGrid:
    shapes, models = [], []
    for t, v in sd.views():
        size = sd.setups[v].size
        assert size is not None
        shapes.append((size[2], size[1], size[0]))
        models.append(sd.view_model(t, v))
    lo, hi = cfg.fusion.bounding_box(*union_bounds(shapes, models))
    return FusionGrid.from_bounds(lo, hi, spacing=cfg.voxel_size.x * cfg.fusion.downsample)


def fuse_timepoint(ctx: UnitContext) -> dict[str, Any]:
    """Fuse each channel's views into a BDV partition and the OME-Zarr's region."""
    cfg: SpimConfig = ctx.config
    t = _t(ctx)
    xml = ctx.run_dir / ctx.upstream["register_timelapse"]["outputs"]["registered_xml"]
    sd = read_spimdata(xml)
    resaved = ctx.run_dir / ctx.upstream["resave"]["xml"]
    grid = FusionGrid.from_dict(ctx.upstream["prepare_output"]["grid"])
    psfs = None
    read: dict[int, np.ndarray] = {}  # the bead views the PSFs were taken from, read once
    if cfg.fusion_switch == "deconvolution":
        psfs = _psfs(ctx, cfg, sd, resaved, grid, read=read)
    channels: dict[int, np.ndarray] = {}
    # the channel whose views the PSFs were read from goes first: they are freed after it
    order = sorted(
        range(len(cfg.channels)),
        key=lambda c: not any(k.setup in read for k in cfg.view_keys(channel=c)),
    )
    for c in order:
        keys = cfg.view_keys(channel=c)
        missing = [k.setup for k in keys if k.setup not in read]
        if missing:
            read.update(zip(missing, _views_of(resaved, t, missing), strict=True))
        views = [read.pop(k.setup) for k in keys]
        models = [sd.view_model(t, k.setup) for k in keys]
        if psfs is not None:
            channels[c] = _deconvolve(cfg, views, models, grid, [psfs[k.angle] for k in keys])
            ctx.log.info(
                "time point %d, channel %s: deconvolved (%s)",
                t,
                cfg.channels[c],
                cfg.deconvolution.psf_type,
            )
        else:
            channels[c] = fuse(
                views,
                models,
                grid,
                border=cfg.fusion.blending_border,
                blending_range=cfg.fusion.blending_range,
                content_based=cfg.fusion.content_based,
                sigma1=cfg.fusion.sigma1,
                sigma2=cfg.fusion.sigma2,
                anisotropy=cfg.anisotropy,
                block=cfg.fusion.block,
                dtype=cfg.fusion.pixel_type,
            )
        del views
    spacing = (grid.spacing,) * 3
    part = ctx.output_path("fused", partition_filename("fused", t))
    write_bdv_partition(part, t, channels, voxel_size=spacing, num_workers=1)
    zarr_path = ctx.output_path("fused.ome.zarr")
    for c, vol in channels.items():
        write_ome_zarr_region(zarr_path, t, vol, c=c)
    preview = ctx.output_path("previews", f"t{t:04d}.png")
    _save_projection([channels[c] for c in sorted(channels)], preview)
    return {"partition": ctx.relative(part), "preview": ctx.relative(preview)}


def _psfs(
    ctx: UnitContext,
    cfg: SpimConfig,
    sd: SpimData,
    resaved: Path,
    grid: FusionGrid,
    *,
    read: dict[int, np.ndarray],
) -> list[np.ndarray]:
    """One PSF per angle on the grid: from the angle's bead view, or the configured file.

    Every channel and illumination of an angle uses its PSF (beads usually show in one
    channel only). The bead views read here are left in ``read`` (setup → view) for the
    fusion of their channel.
    """
    t = _t(ctx)
    dc = cfg.deconvolution
    size = (dc.psf_size_x, dc.psf_size_y, dc.psf_size_z)
    keys = cfg.bead_keys()
    models = [sd.view_model(t, k.setup) for k in keys]
    if dc.psf_file:
        path = Path(cfg.root) / dc.psf_file
        if not path.exists():
            raise InputNotFoundError(path, "PSF file (deconvolution.psf_file)")
        given = read_tiff(path)[0]
        return [psf_to_grid(given, m, grid.spacing, size) for m in models]
    beads = _load_beads(ctx.run_dir / ctx.upstream["detect_beads"]["beads"], cfg.n_views)
    views = _views_of(resaved, t, [k.setup for k in keys])
    read.update(zip([k.setup for k in keys], views, strict=True))
    return [
        extract_psf(vol, m, _affine.apply(m, b), grid.spacing, size)
        for vol, m, b in zip(views, models, beads, strict=True)
    ]


def _deconvolve(
    cfg: SpimConfig,
    views: list[np.ndarray],
    models: list[np.ndarray],
    grid: FusionGrid,
    psfs: list[np.ndarray],
) -> np.ndarray:
    """Views and weights on the grid, multi-view RL with one PSF per view."""
    dc = cfg.deconvolution
    resampled = [
        resample_to_grid(
            vol,
            m,
            grid,
            border=cfg.fusion.blending_border,
            blending_range=cfg.fusion.blending_range,
            block=cfg.fusion.block,
        )
        for vol, m in zip(views, models, strict=True)
    ]
    psi = deconvolve_views(
        [r[0] for r in resampled],
        [r[1] for r in resampled],
        psfs,
        iterations=dc.iterations,
        psf_type=dc.psf_type,
        lam=dc.tikhonov_parameter,
        osem=dc.osem_acceleration,
        gpu=dc.gpu,
        block=dc.block,
    )
    covered = sum(r[1] for r in resampled) > 0
    psi[~covered] = 0.0
    if cfg.fusion.pixel_type == "uint16":
        return np.clip(np.rint(psi), 0, 65535).astype(np.uint16)
    return psi


def prepare_output(ctx: UnitContext) -> dict[str, Any]:
    """The output grid (once for all time points) and the fused OME-Zarr container on it.

    The container's regions are filled per time point by ``fuse``.
    """
    cfg: SpimConfig = ctx.config
    xml = ctx.run_dir / ctx.upstream["register_timelapse"]["outputs"]["registered_xml"]
    grid = _grid(cfg, read_spimdata(xml))
    path = ctx.output_path("fused.ome.zarr")
    create_ome_zarr(
        path,
        (cfg.ntimepoints, len(cfg.channels), *grid.shape),
        cfg.fusion.pixel_type,
        axes="tczyx",
        voxel_size=(grid.spacing,) * 3,
        channel_names=cfg.channels,
        translation=grid.origin,
        overwrite=True,
    )
    return {
        "zarr": ctx.relative(path),
        "grid": grid.to_dict(),
    }


def write_output(ctx: UnitContext) -> dict[str, Any]:
    """The fused dataset's master HDF5 + XML; outputs for the summary."""
    cfg: SpimConfig = ctx.config
    fused = ctx.upstream["fuse"]
    parts = [ctx.run_dir / fused[u]["partition"] for u in sorted(fused)]
    master = write_bdv_master(ctx.output_path("fused", "fused.h5"), parts)
    grid = FusionGrid.from_dict(ctx.upstream["prepare_output"]["grid"])
    z, y, x = grid.shape
    sd = SpimData(hdf5=master, timepoints=list(range(cfg.ntimepoints)))
    for c, channel in enumerate(cfg.channels):
        sd.add_setup(
            ViewSetup(
                id=c,
                name=f"fused {channel}" if len(cfg.channels) > 1 else "fused",
                size=(x, y, z),
                voxel_size=(grid.spacing,) * 3,
                attributes={"channel": c},
            ),
            channel=channel,
        )
        for t in range(cfg.ntimepoints):
            sd.set_transforms(t, c, [ViewTransform("fused grid", grid.index_to_world())])
    xml = write_spimdata(sd, ctx.output_path("fused.xml"))
    previews = [fused[u]["preview"] for u in sorted(fused)]
    return {
        "outputs": {
            "output_xml": ctx.relative(xml),
            "output_zarr": ctx.relative(ctx.output_path("fused.ome.zarr")),
            "previews": str(Path(previews[0]).parent),
        }
    }


def _save_projection(channels: list[np.ndarray], path: Path) -> None:
    """Maximum projections along z (top) and y (bottom), one column per channel, as PNG.

    Each channel is scaled from its 0.1 to its 99.9 percentile.
    """
    from matplotlib.image import imsave

    columns = []
    for volume in channels:
        xy = volume.max(axis=0).astype(np.float32)
        xz = volume.max(axis=1).astype(np.float32)
        both = np.concatenate([xy, np.full((2, xy.shape[1]), np.nan, np.float32), xz], axis=0)
        lo, hi = np.nanpercentile(both, (0.1, 99.9))
        img = np.clip((np.nan_to_num(both, nan=hi) - lo) / max(hi - lo, 1e-6), 0, 1)
        columns += [img, np.ones((img.shape[0], 2), np.float32)]
    imsave(path, np.concatenate(columns[:-1], axis=1), cmap="gray", vmin=0.0, vmax=1.0)


PIPELINE = Pipeline(
    name="spim",
    description="multiview light-sheet: resave, beads, registration, time-lapse, fusion",
    config_model=SpimConfig,
    units=_units,
    steps=(
        Step("resave", resave, description="raw → BDV HDF5"),
        Step("detect_beads", detect, after=(per_unit("resave"),), description="DoG beads"),
        Step(
            "register_views",
            register,
            after=(per_unit("resave"), per_unit("detect_beads")),
            description="bead registration",
        ),
        Step(
            "merge",
            merge,
            fan_out=False,
            after=(all_units("resave"), all_units("register_views")),
            description="one XML",
        ),
        Step(
            "register_timelapse",
            register_timelapse,
            fan_out=False,
            after=(all_units("merge"), all_units("detect_beads")),
            description="drift",
        ),
        Step(
            "prepare_output",
            prepare_output,
            fan_out=False,
            after=(all_units("register_timelapse"),),
            description="OME-Zarr container",
        ),
        Step(
            "fuse",
            fuse_timepoint,
            after=(
                per_unit("resave"),
                per_unit("detect_beads"),
                all_units("register_timelapse"),
                all_units("prepare_output"),
            ),
            description="fusion or deconvolution",
        ),
        Step(
            "write_output",
            write_output,
            fan_out=False,
            after=(all_units("prepare_output"), all_units("fuse")),
        ),
    ),
)
