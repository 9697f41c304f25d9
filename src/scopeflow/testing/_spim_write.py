"""Writers of the synthetic SPIM files: ImageJ TIFF per view, CZI per time point, config.yaml."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml
from numpy.typing import NDArray
from pylibCZIrw import czi as pyczi

from scopeflow.core.errors import FormatError
from scopeflow.core.fileio import atomic_write_text

TIFF_PATTERN = "tiff/t{t:03d}_v{v:02d}.tif"
CZI_PATTERN = "czi/t{t:03d}.czi"
CHANNEL_NAME = "beads"
#: CZI stores ``Scaling/Items/Distance/Value`` in metres. pylibCZIrw writes ``scale_x`` etc. as
#: given (its docstring says µm, but ZEN and Bio-Formats read metres; see ZEISS/pylibczirw#78).
METRES_PER_MICROMETRE = 1e-6


def write_tiff_view(
    path: Path, volume: NDArray[np.uint16], voxel_size: tuple[float, float, float]
) -> None:
    """Write a ``(z, y, x)`` volume as an ImageJ hyperstack with its voxel size in µm.

    The x/y pixel size is in the ``XResolution``/``YResolution`` tags (pixels per µm) and the
    z step in the ImageJ description (``spacing=``, ``unit=um``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(
        path,
        volume,
        imagej=True,
        resolution=(1.0 / voxel_size[0], 1.0 / voxel_size[1]),
        metadata={"spacing": voxel_size[2], "unit": "um", "axes": "ZYX"},
    )


def write_czi_timepoint(
    path: Path,
    volumes: Sequence[Sequence[NDArray[np.uint16]]],
    *,
    voxel_size: tuple[float, float, float],
    angles: Sequence[float],
    t: int,
    channel_names: Sequence[str] = (CHANNEL_NAME,),
) -> None:
    """Write the views of one time point to a CZI, one scene per view.

    ``volumes[c][v]`` is channel ``c`` of view ``v``. Every plane is written at
    ``T=0, C=c, Z=z`` of scene ``v`` at location ``(0, 0)``; the scaling goes in as metres
    (CZI's unit). Custom attributes ``ScopeflowAngles`` (comma-separated degrees, by scene) and
    ``ScopeflowTimepoint`` describe the layout. The file is read back and compared plane by
    plane, scaling included; a mismatch raises :class:`~scopeflow.core.errors.FormatError`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with pyczi.create_czi(str(path), exist_ok=True) as czi:
        for c, views in enumerate(volumes):
            for scene, vol in enumerate(views):
                for z in range(vol.shape[0]):
                    czi.write(data=vol[z], plane={"T": 0, "Z": z, "C": c}, scene=scene)
        czi.write_metadata(
            document_name=path.stem,
            channel_names=dict(enumerate(channel_names)),
            scale_x=voxel_size[0] * METRES_PER_MICROMETRE,
            scale_y=voxel_size[1] * METRES_PER_MICROMETRE,
            scale_z=voxel_size[2] * METRES_PER_MICROMETRE,
            custom_attributes={
                "ScopeflowAngles": ",".join(f"{a:g}" for a in angles),
                "ScopeflowTimepoint": int(t),
            },
        )
    for c, views in enumerate(volumes):
        back = read_czi_timepoint(path, c)
        if len(back) != len(views) or not all(
            np.array_equal(a, b) for a, b in zip(back, views, strict=True)
        ):
            raise FormatError(path, f"CZI read-back of channel {c} differs from the data written")
    with pyczi.open_czi(str(path)) as czi:
        items = czi.metadata["ImageDocument"]["Metadata"]["Scaling"]["Items"]["Distance"]
    metres = {d["@Id"]: float(d["Value"]) for d in items}
    expected = [v * METRES_PER_MICROMETRE for v in voxel_size]
    if not np.allclose([metres[k] for k in "XYZ"], expected, rtol=1e-12, atol=0.0):
        raise FormatError(path, f"CZI scaling {metres} differs from {expected} m")


def read_czi_timepoint(path: str | Path, channel: int = 0) -> list[NDArray[np.uint16]]:
    """Read one channel of every scene of a CZI of :func:`write_czi_timepoint` as ``(z, y, x)``."""
    out: list[NDArray[np.uint16]] = []
    with pyczi.open_czi(str(path)) as czi:
        nz = czi.total_bounding_box["Z"][1]
        for scene in sorted(czi.scenes_bounding_rectangle):
            planes = [
                czi.read(plane={"T": 0, "Z": z, "C": channel}, scene=scene)[..., 0]
                for z in range(nz)
            ]
            out.append(np.stack(planes).astype(np.uint16, copy=False))
    return out


def spim_config(
    *,
    fmt: str,
    timepoints: int,
    angles: Sequence[float],
    voxel_size: tuple[float, float, float],
    channels: Sequence[str] = (CHANNEL_NAME,),
    illuminations: int = 1,
    tiff_pattern: str = TIFF_PATTERN,
) -> dict[str, Any]:
    """The ready ``config.yaml`` content for the spim pipeline (Snakemake SPIM vocabulary)."""
    if fmt == "tiff":
        source: dict[str, Any] = {"format": "tiff", "pattern": tiff_pattern}
    else:
        source = {"format": "czi", "pattern": CZI_PATTERN, "views": "scenes"}
    return {
        "input": source,
        "ntimepoints": timepoints,
        "angles": [float(a) for a in angles],
        "rotation_around": "y",
        "channels": list(channels),
        "illuminations": list(range(illuminations)),
        "voxel_size": {
            "x": voxel_size[0],
            "y": voxel_size[1],
            "z": voxel_size[2],
            "unit": "um",
        },
        "reference_timepoint": 0,
        "detection": {"sigma": 1.8, "threshold": 0.008},
        "registration": {"transformation_model": "affine"},
        "fusion": {"downsample": 1},
    }


def write_spim_configs(
    out: Path,
    *,
    timepoints: int,
    angles: Sequence[float],
    voxel_size: tuple[float, float, float],
    with_czi: bool,
    channels: Sequence[str] = (CHANNEL_NAME,),
    illuminations: int = 1,
    tiff_pattern: str = TIFF_PATTERN,
) -> list[str]:
    """Write ``config.yaml`` (TIFF input) and, with CZI, ``config_czi.yaml``; return their names."""
    header = (
        "# Ready configuration for `scopeflow run spim`, written by\n"
        "# scopeflow.testing.make_spim_dataset. Paths are relative to this file's folder.\n"
    )
    names = ["config.yaml"]
    alt = ""
    if with_czi:
        names.append("config_czi.yaml")
        alt = (
            "# The same data as CZI (one file per time point, views as scenes):\n"
            f'#   input: {{format: czi, pattern: "{CZI_PATTERN}", views: scenes}}'
            "  -- see config_czi.yaml\n"
        )
    kw: dict[str, Any] = {
        "timepoints": timepoints,
        "angles": angles,
        "voxel_size": voxel_size,
        "channels": channels,
        "illuminations": illuminations,
        "tiff_pattern": tiff_pattern,
    }
    for name, fmt in zip(names, ("tiff", "czi"), strict=False):
        body = yaml.safe_dump(spim_config(fmt=fmt, **kw), sort_keys=False)
        atomic_write_text(out / name, header + (alt if fmt == "tiff" else "") + body)
    return names
