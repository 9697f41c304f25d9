"""OME-NGFF metadata: axes, units, coordinate transformations and ``omero`` channels.

Shared by the OME-Zarr writer (:mod:`._omezarr_write`) and reader (:mod:`._omezarr`). Only
plain dictionaries and numbers here, no array I/O. Specification: https://ngff.openmicroscopy.org
(versions 0.4 and 0.5; 0.5 nests the same content under an ``"ome"`` attribute).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

NGFF_VERSIONS = ("0.4", "0.5")
"""NGFF versions scopeflow writes: 0.4 on Zarr format 2, 0.5 on Zarr format 3."""

SPACE_UNITS: dict[str, float] = {
    "angstrom": 1e-4,
    "picometer": 1e-6,
    "nanometer": 1e-3,
    "micrometer": 1.0,
    "millimeter": 1e3,
    "centimeter": 1e4,
    "meter": 1e6,
}
"""NGFF (UDUNITS-2) space units scopeflow knows, in micrometers."""

TIME_UNITS: dict[str, float] = {
    "nanosecond": 1e-9,
    "microsecond": 1e-6,
    "millisecond": 1e-3,
    "second": 1.0,
    "minute": 60.0,
    "hour": 3600.0,
}
"""NGFF time units scopeflow knows, in seconds."""

_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
_COLORS = ("FFFFFF", "00FF00", "FF00FF", "00FFFF", "FF0000", "0000FF", "FFFF00")
_NGFF_NAMES = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}


def check_axes(axes: str, ndim: int) -> str:
    """Validate writer axes (a subsequence of ``"tczyx"`` containing ``y`` and ``x``).

    Parameters
    ----------
    axes
        Axis letters, any case (``"TCZYX"``, ``"zyx"`` ...).
    ndim
        Number of dimensions of the data they name.

    Returns
    -------
    str
        ``axes`` in lower case.

    Raises
    ------
    ValueError
        The letters are not a subsequence of ``"tczyx"`` with ``y`` and ``x``, or their number
        differs from ``ndim``.
    """
    low = axes.lower()
    it = iter("tczyx")
    if not all(a in it for a in low) or len(set(low)) != len(low) or not low.endswith("yx"):
        raise ValueError(f"axes {axes!r} must be a subsequence of 'tczyx' ending in 'yx'")
    if len(low) != ndim:
        raise ValueError(f"axes {axes!r} name {len(low)} dimensions but the data has {ndim}")
    return low


def axes_metadata(axes: str, unit: str | None, time_unit: str | None) -> list[dict[str, str]]:
    """NGFF ``axes`` entries: name, type and, for space and time axes, unit (if known)."""
    out: list[dict[str, str]] = []
    for a in axes:
        entry = {"name": a, "type": _AXIS_TYPES[a]}
        if a in "zyx" and unit is not None:
            entry["unit"] = unit
        elif a == "t" and time_unit is not None:
            entry["unit"] = time_unit
        out.append(entry)
    return out


def level_transforms(
    axes: str,
    voxel_size: Sequence[float],
    translation: Sequence[float] | None,
    time_interval: float | None,
    factors: Sequence[Sequence[int]],
) -> list[list[dict[str, Any]]]:
    """``coordinateTransformations`` of every pyramid level.

    Parameters
    ----------
    axes
        Lower-case axis letters of the image.
    voxel_size
        Level-0 voxel size ``(x, y, z)``.
    translation
        Physical position ``(x, y, z)`` of the centre of the first level-0 voxel, or ``None``.
    time_interval
        Scale of the ``t`` axis (1.0 when ``None``).
    factors
        Per level, the cumulative downsampling factor of each axis relative to level 0.

    Returns
    -------
    list of list of dict
        Per level, a ``scale`` transform and (level 0 only when ``translation`` is given, every
        coarser level always) a ``translation``: a block mean's voxel centre lies half a coarse
        voxel minus half a fine voxel from the first fine voxel's centre.
    """
    base = {"x": voxel_size[0], "y": voxel_size[1], "z": voxel_size[2]}
    origin = dict(zip("xyz", translation or (0.0, 0.0, 0.0), strict=True))
    out: list[list[dict[str, Any]]] = []
    for k, fac in enumerate(factors):
        scale, shift = [], []
        for a, f in zip(axes, fac, strict=True):
            if a in base:
                scale.append(float(base[a] * f))
                shift.append(float(origin[a] + (f - 1) * base[a] / 2.0))
            else:
                scale.append(float(time_interval or 1.0) if a == "t" else 1.0)
                shift.append(0.0)
        level: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
        if k > 0 or translation is not None:
            level.append({"type": "translation", "translation": shift})
        out.append(level)
    return out


def omero_metadata(
    name: str,
    *,
    channel_names: Sequence[str],
    windows: Sequence[tuple[float, float]],
    dtype: np.dtype[Any],
    size_z: int,
    version: str,
) -> dict[str, Any]:
    """The ``omero`` rendering metadata: one labelled channel with a display window each."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        lo, hi = float(info.min), float(info.max)
    else:
        lo, hi = min(w[0] for w in windows), max(w[1] for w in windows)
    channels = [
        {
            "label": label,
            "color": _COLORS[i % len(_COLORS)] if len(channel_names) > 1 else "FFFFFF",
            "active": True,
            "coefficient": 1.0,
            "family": "linear",
            "inverted": False,
            "window": {"min": lo, "max": hi, "start": float(w[0]), "end": float(w[1])},
        }
        for i, (label, w) in enumerate(zip(channel_names, windows, strict=True))
    ]
    out: dict[str, Any] = {"id": 1, "name": name, "channels": channels}
    if version == "0.4":
        out["version"] = "0.4"
    model = "color" if len(channel_names) > 1 else "greyscale"
    out["rdefs"] = {"defaultT": 0, "defaultZ": size_z // 2, "model": model}
    return out


def image_attributes(
    multiscales: dict[str, Any], omero: dict[str, Any], version: str
) -> dict[str, Any]:
    """Group attributes of an image: top level for 0.4, under ``"ome"`` for 0.5."""
    if version == "0.4":
        return {"multiscales": [{"version": "0.4", **multiscales}], "omero": omero}
    return {"ome": {"version": version, "multiscales": [multiscales], "omero": omero}}


# -- reading -------------------------------------------------------------------------------


def ngff_content(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The OME content of group attributes and its version (``None`` when not NGFF)."""
    if isinstance(attrs.get("ome"), Mapping):
        ome = dict(attrs["ome"])
        return ome, str(ome.get("version", "0.5"))
    if isinstance(attrs.get("multiscales"), list) and attrs["multiscales"]:
        first = attrs["multiscales"][0]
        version = first.get("version", "0.4") if isinstance(first, Mapping) else "0.4"
        return dict(attrs), str(version)
    return dict(attrs), None


def axis_letters(axes: Sequence[Any], ndim: int) -> tuple[list[str], list[str | None]]:
    """Map NGFF axes to scopeflow letters.

    Parameters
    ----------
    axes
        The ``axes`` of a multiscales entry: dicts (0.4+), names (0.3), or empty (0.1/0.2,
        which mean ``tczyx``).
    ndim
        Number of dimensions of the level-0 array.

    Returns
    -------
    letters : list of str
        One of ``T C Z Y X`` per axis, in the file's order.
    units : list of str or None
        The unit of each axis, if given.

    Raises
    ------
    ValueError
        An axis cannot be mapped, letters repeat, or their number differs from ``ndim``.
    """
    entries: list[Mapping[str, Any]] = [
        a if isinstance(a, Mapping) else {"name": str(a)} for a in (axes or list("tczyx"))
    ]
    if len(entries) != ndim:
        raise ValueError(f"{len(entries)} axes in the metadata but the array has {ndim}")
    letters: list[str] = []
    units: list[str | None] = []
    for e in entries:
        name = str(e.get("name", "")).lower()
        kind = str(e.get("type", "")).lower()
        letter = _NGFF_NAMES.get(name) or {"time": "T", "channel": "C"}.get(kind)
        if letter is None:
            raise ValueError(f"axis {name!r} (type {kind or 'unknown'}) has no scopeflow axis")
        letters.append(letter)
        units.append(str(e["unit"]) if e.get("unit") else None)
    if len(set(letters)) != len(letters):
        raise ValueError(f"axes {[e.get('name') for e in entries]} repeat an axis")
    return letters, units


def combined_transform(
    dataset: Mapping[str, Any], multiscale: Mapping[str, Any], ndim: int
) -> tuple[list[float], list[float] | None]:
    """Scale and translation of one dataset, with the multiscale-wide transform applied after.

    Returns
    -------
    scale : list of float
        One factor per axis (1.0 where none is given).
    translation : list of float or None
        One offset per axis, ``None`` when neither level declares a translation.

    Raises
    ------
    ValueError
        A transform has the wrong length or an unsupported type (only ``scale``, ``translation``
        and ``identity`` are allowed on multiscales datasets).
    """
    scale = [1.0] * ndim
    shift: list[float] | None = None
    for transforms in (
        dataset.get("coordinateTransformations", []),
        multiscale.get("coordinateTransformations", []),
    ):
        for tr in transforms:
            kind = tr.get("type")
            if kind == "identity":
                continue
            values = tr.get(kind)
            if kind not in ("scale", "translation") or not isinstance(values, list):
                raise ValueError(f"unsupported coordinate transformation {tr!r}")
            if len(values) != ndim:
                raise ValueError(f"{kind} {values} has {len(values)} values for {ndim} axes")
            vals = [float(v) for v in values]
            if kind == "scale":
                scale = [s * v for s, v in zip(scale, vals, strict=True)]
                shift = None if shift is None else [s * v for s, v in zip(shift, vals, strict=True)]
            else:
                shift = [(s or 0.0) + v for s, v in zip(shift or [0.0] * ndim, vals, strict=True)]
    return scale, shift


def physical_unit(units: Sequence[str | None]) -> tuple[str, list[float]]:
    """One unit for the space axes and the factor that converts each axis' values into it.

    Equal units are kept; different known units are converted to micrometers; no unit at all
    gives ``"pixel"``.
    """
    known = [u for u in units if u]
    if not known:
        return "pixel", [1.0] * len(units)
    if len(set(known)) == 1 and len(known) == len(units):
        return known[0], [1.0] * len(units)
    if all(u in SPACE_UNITS for u in known):
        return "micrometer", [SPACE_UNITS[u] if u else 1.0 for u in units]
    return known[0], [1.0] * len(units)


def calibration(
    letters: Sequence[str],
    units: Sequence[str | None],
    transforms: Sequence[tuple[list[float], list[float] | None]],
) -> tuple[str, list[tuple[float, float, float]], tuple[float, float, float] | None]:
    """Physical calibration of an image from its axes and per-level transforms.

    Parameters
    ----------
    letters
        Scopeflow letter of each axis, in the file's order.
    units
        Unit of each axis, if given.
    transforms
        Per level, ``(scale, translation)`` from :func:`combined_transform`.

    Returns
    -------
    unit : str
        Space unit (see :func:`physical_unit`).
    voxel_sizes : list of tuple of float
        Per level, the voxel size ``(x, y, z)`` in ``unit`` (1.0 along absent axes).
    position : tuple of float or None
        Level-0 translation ``(x, y, z)`` in ``unit``, if any.
    """
    idx = {a: letters.index(a) for a in "XYZ" if a in letters}
    unit, conv = physical_unit([units[i] for i in idx.values()])
    factor = dict(zip(idx, conv, strict=True))

    def xyz(values: Sequence[float], default: float) -> tuple[float, float, float]:
        x, y, z = (values[idx[a]] * factor[a] if a in idx else default for a in "XYZ")
        return float(x), float(y), float(z)

    voxels = [xyz(scale, 1.0) for scale, _ in transforms]
    shift = transforms[0][1]
    return unit, voxels, None if shift is None else xyz(shift, 0.0)


def channel_labels(omero: Any, n_channels: int) -> tuple[str, ...]:
    """Channel labels from ``omero`` metadata, or ``C0, C1 ...`` when they do not fit."""
    channels = omero.get("channels", []) if isinstance(omero, Mapping) else []
    labels = [str(c.get("label") or "") for c in channels if isinstance(c, Mapping)]
    if len(labels) == n_channels and all(labels):
        return tuple(labels)
    return tuple(f"C{i}" for i in range(n_channels))
