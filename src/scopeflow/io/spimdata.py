"""The SpimData model of a multiview dataset (BigDataViewer / BigStitcher XML), and its merge.

A dataset has *view setups* (one per angle x channel x illumination x tile, each with a size and a
voxel size), *time points*, and one *view* per (time point, setup) that is not listed as missing.
Every view has a list of named affine transforms, row-major ``3 x 4`` on ``(x, y, z)`` pixel
coordinates. As in BigDataViewer, the list is concatenated so that the **last transform applies
first**: the view's model (pixel -> world) is ``T0 · T1 · … · Tn``, and registration *prepends*
its correction (:meth:`SpimData.prepend_transform`).

Reading and writing the XML is in :mod:`scopeflow.io._bdv_xml` (:func:`read_spimdata`,
:func:`write_spimdata`); :func:`merge_spimdata` joins per-time-point datasets into one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from scopeflow.core import FormatError, affine

#: View-setup attributes BigDataViewer defines, with their XML element names.
ATTRIBUTE_TAGS = {
    "illumination": "Illumination",
    "channel": "Channel",
    "tile": "Tile",
    "angle": "Angle",
}

View = tuple[int, int]
"""A view id: ``(time point, setup)``."""


def as_affine(a: ArrayLike) -> NDArray[np.float64]:
    """Return ``a`` (12 values, ``3 x 4`` or ``4 x 4``) as a read-only ``3 x 4`` float64 array."""
    arr = affine.as_affine(a)
    arr.setflags(write=False)
    return arr


def compose(*affines: ArrayLike) -> NDArray[np.float64]:
    """Compose affines right to left: ``compose(A, B)(p) == A(B(p))``; identity if none."""
    return as_affine(affine.compose(*affines))


@dataclass(frozen=True)
class AttributeValue:
    """One value of a view-setup attribute (a ``<Channel>``, ``<Angle>`` … element).

    Attributes
    ----------
    id
        Id the view setups refer to.
    name
        Name (BigDataViewer writes the id again when there is none).
    properties
        Further child elements as text, in order (``axis``/``degrees`` of an angle,
        ``location`` of a tile …), kept for round trips.
    """

    id: int
    name: str | None = None
    properties: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str | None:
        """Text of the property ``key``, if present."""
        return next((v for k, v in self.properties if k == key), None)


@dataclass(frozen=True)
class ViewSetup:
    """One view setup: an image size, a voxel size and attribute ids.

    Attributes
    ----------
    id
        Setup id (``s{id:02d}`` in BDV HDF5).
    name
        Name of the setup, if any.
    size
        Image size ``(x, y, z)`` in voxels, if known.
    voxel_size
        Voxel size ``(x, y, z)`` in ``unit``, if known.
    unit
        Unit of ``voxel_size`` as written in the file (e.g. ``"micrometer"``, ``"µm"``).
    attributes
        Attribute name -> value id, e.g. ``{"channel": 0, "angle": 2}``.
    """

    id: int
    name: str | None = None
    size: tuple[int, int, int] | None = None
    voxel_size: tuple[float, float, float] | None = None
    unit: str = "micrometer"
    attributes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size is not None:
            object.__setattr__(self, "size", tuple(int(n) for n in self.size))
        if self.voxel_size is not None:
            object.__setattr__(self, "voxel_size", tuple(float(v) for v in self.voxel_size))


@dataclass(frozen=True, eq=False)
class ViewTransform:
    """A named affine ``3 x 4`` (row-major, on ``(x, y, z)``) of a view registration."""

    name: str
    affine: NDArray[np.float64]

    def __post_init__(self) -> None:
        object.__setattr__(self, "affine", as_affine(self.affine))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ViewTransform):
            return NotImplemented
        return self.name == other.name and bool(np.array_equal(self.affine, other.affine))

    def __hash__(self) -> int:
        return hash((self.name, self.affine.tobytes()))


@dataclass(frozen=True)
class Partition:
    """One HDF5 partition file of a dataset split across files (BDV ``<partition>``).

    ``path`` is absolute, or relative to the folder of the XML. ``timepoints_mapped`` and
    ``setups_mapped`` are the ids inside the file when they differ from the dataset's.
    """

    path: Path
    timepoints: tuple[int, ...]
    setups: tuple[int, ...]
    timepoints_mapped: tuple[int, ...] | None = None
    setups_mapped: tuple[int, ...] | None = None


@dataclass
class SpimData:
    """A multiview dataset: setups, time points, registrations and where the pixels are.

    Attributes
    ----------
    setups
        View setups by id.
    attributes
        Attribute name (``"channel"``, ``"angle"``, ``"illumination"``, ``"tile"`` or another
        name) -> value id -> :class:`AttributeValue` (the ``<Attributes>`` definitions).
    timepoints
        Time point ids, ascending.
    registrations
        ``(time point, setup)`` -> transforms; the model is ``T0 · T1 · … · Tn``.
    missing
        Views listed in ``<MissingViews>``.
    hdf5
        The HDF5 file (``bdv.hdf5`` image loader): absolute, or relative to the XML's folder.
    partitions
        Partition files linked from ``hdf5``, if the dataset is split.
    image_loader
        Image loader format; other formats than ``bdv.hdf5`` keep their XML in ``loader_xml``.
    loader_xml
        Serialised ``<ImageLoader>`` element of a format scopeflow does not model.
    extra_xml
        Serialised top-level elements scopeflow does not model (``ViewInterestPoints`` …), kept
        as they are when the dataset is written again.
    """

    setups: dict[int, ViewSetup] = field(default_factory=dict)
    attributes: dict[str, dict[int, AttributeValue]] = field(default_factory=dict)
    timepoints: list[int] = field(default_factory=list)
    registrations: dict[View, list[ViewTransform]] = field(default_factory=dict)
    missing: set[View] = field(default_factory=set)
    hdf5: Path | None = None
    partitions: list[Partition] = field(default_factory=list)
    image_loader: str = "bdv.hdf5"
    loader_xml: str | None = None
    extra_xml: list[str] = field(default_factory=list)

    def views(self) -> list[View]:
        """All present views ``(time point, setup)``, sorted."""
        return [
            (t, s)
            for t in sorted(self.timepoints)
            for s in sorted(self.setups)
            if (t, s) not in self.missing
        ]

    def missing_views(self) -> list[View]:
        """Views of the dataset's time points and setups that are listed as missing, sorted."""
        tps, sids = set(self.timepoints), set(self.setups)
        return sorted(v for v in self.missing if v[0] in tps and v[1] in sids)

    def transforms(self, timepoint: int, setup: int) -> list[ViewTransform]:
        """The transforms of a view (first applies last); empty if it has none."""
        return list(self.registrations.get((timepoint, setup), []))

    def view_model(self, timepoint: int, setup: int) -> NDArray[np.float64]:
        """Composed affine ``T0 · T1 · … · Tn`` of a view: pixel ``(x, y, z)`` -> world."""
        return compose(*(t.affine for t in self.registrations.get((timepoint, setup), [])))

    def prepend_transform(
        self, timepoint: int, setup: int, affine: ArrayLike, name: str = "affine"
    ) -> None:
        """Apply ``affine`` after the view's current model: the new model is ``A · model``."""
        self.registrations.setdefault((timepoint, setup), []).insert(
            0, ViewTransform(name, as_affine(affine))
        )

    def set_transforms(
        self, timepoint: int, setup: int, transforms: Iterable[ViewTransform]
    ) -> None:
        """Replace the transforms of a view."""
        self.registrations[(timepoint, setup)] = list(transforms)

    def add_setup(self, setup: ViewSetup, **attribute_names: str) -> None:
        """Add a setup; its attribute ids get :class:`AttributeValue` entries when missing.

        ``attribute_names`` optionally name new values, e.g. ``channel="GFP"``.
        """
        self.setups[setup.id] = setup
        for attr, value_id in setup.attributes.items():
            values = self.attributes.setdefault(attr, {})
            if value_id not in values:
                values[value_id] = AttributeValue(
                    value_id, attribute_names.get(attr, str(value_id))
                )

    def attribute(self, setup: int, name: str) -> AttributeValue | None:
        """The value of attribute ``name`` of a setup, if it has one."""
        value_id = self.setups[setup].attributes.get(name)
        if value_id is None:
            return None
        return self.attributes.get(name, {}).get(value_id, AttributeValue(value_id))


def _conflict(path: Path | str, what: str, first: Any, other: Any, first_path: Path | str) -> None:
    raise FormatError(path, f"{what} conflicts with {first_path}: {other!r} vs {first!r}")


def merge_spimdata(
    inputs: Sequence[SpimData | str | Path], *, hdf5: str | Path | None = None
) -> SpimData:
    """Merge datasets (e.g. one XML per time point) into one: the pipeline's merge step.

    Time points, setups, attribute values, registrations and missing views are united. A view
    is missing in the result when no input holds it. The result's image data: when the inputs
    use different HDF5 files, each input becomes one :class:`Partition` (its file, time points
    and setups; inputs that have partitions keep them) and ``hdf5`` names the master file that
    :func:`~scopeflow.io._bdv_hdf5.write_bdv_master` writes to link them.

    Parameters
    ----------
    inputs
        Datasets or paths of their XML files. Paths in the result are absolute.
    hdf5
        Master HDF5 file of the result; required when the inputs use different files.

    Returns
    -------
    SpimData
        The merged dataset.

    Raises
    ------
    FormatError
        A setup, attribute value or registration differs between inputs (names the input).
    ValueError
        No inputs, or several HDF5 files and no ``hdf5`` given.
    """
    from scopeflow.io._bdv_xml import read_spimdata

    if not inputs:
        raise ValueError("merge_spimdata needs at least one dataset")
    items: list[tuple[str, SpimData]] = []
    for i, item in enumerate(inputs):
        if isinstance(item, SpimData):
            items.append((f"<dataset {i}>", item))
        else:
            items.append((str(item), read_spimdata(item)))

    out = SpimData(image_loader=items[0][1].image_loader, loader_xml=items[0][1].loader_xml)
    origin: dict[Any, str] = {}
    present: set[View] = set()
    extra: dict[str, ET.Element] = {}
    for src, sd in items:
        for sid, setup in sd.setups.items():
            if sid in out.setups and out.setups[sid] != setup:
                _conflict(src, f"setup {sid}", out.setups[sid], setup, origin[("s", sid)])
            out.setups[sid] = setup
            origin.setdefault(("s", sid), src)
        for attr, values in sd.attributes.items():
            dest = out.attributes.setdefault(attr, {})
            for vid, value in values.items():
                if vid in dest and dest[vid] != value:
                    _conflict(src, f"{attr} {vid}", dest[vid], value, origin[(attr, vid)])
                dest[vid] = value
                origin.setdefault((attr, vid), src)
        for view, transforms in sd.registrations.items():
            if view in out.registrations and out.registrations[view] != transforms:
                key = f"registration of view (timepoint {view[0]}, setup {view[1]})"
                _conflict(src, key, out.registrations[view], transforms, origin[("r", view)])
            out.registrations[view] = list(transforms)
            origin.setdefault(("r", view), src)
        present.update(sd.views())
        for elem in sd.extra_xml:
            _collect_extra(elem, extra)
    out.timepoints = sorted({t for _, sd in items for t in sd.timepoints})
    out.missing = {(t, s) for t in out.timepoints for s in out.setups} - present
    out.extra_xml = [ET.tostring(e, encoding="unicode") for e in extra.values()]
    _merge_image_data(out, [sd for _, sd in items], hdf5)
    return out


def _merge_image_data(out: SpimData, inputs: list[SpimData], hdf5: str | Path | None) -> None:
    files = {sd.hdf5 for sd in inputs}
    if len(files) == 1 and not any(sd.partitions for sd in inputs) and hdf5 is None:
        out.hdf5 = inputs[0].hdf5
        return
    if hdf5 is None:
        raise ValueError("the datasets use different HDF5 files: give the master file (hdf5=)")
    out.hdf5 = Path(hdf5)
    for sd in inputs:
        if sd.partitions:
            out.partitions.extend(sd.partitions)
        elif sd.hdf5 is not None:
            views = sd.views()
            out.partitions.append(
                Partition(
                    sd.hdf5,
                    tuple(sorted({t for t, _ in views})),
                    tuple(sorted({s for _, s in views})),
                )
            )
    seen: set[tuple[Path, tuple[int, ...], tuple[int, ...]]] = set()
    unique = []
    for p in out.partitions:
        key = (p.path, p.timepoints, p.setups)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    out.partitions = unique


def _collect_extra(elem_xml: str, into: dict[str, ET.Element]) -> None:
    """Add the children of a serialised element to the element of its tag (no duplicates)."""
    elem = ET.fromstring(elem_xml)
    dest = into.setdefault(elem.tag, ET.Element(elem.tag, elem.attrib))
    have = {ET.tostring(c, encoding="unicode").strip() for c in dest}
    for child in elem:
        child.tail = None
        if ET.tostring(child, encoding="unicode").strip() not in have:
            dest.append(child)
