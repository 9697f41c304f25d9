"""Read and write BigDataViewer / BigStitcher ``SpimData`` XML (``<SpimData version="0.2">``).

Element names follow bigdataviewer's ``mpicbg.spim.data`` (``XmlKeys``) and bigdataviewer-core's
``XmlIoHdf5ImageLoader``: ``<ImageLoader format="bdv.hdf5">`` holds ``<hdf5>`` and optional
``<partition>`` elements (``<path>``, ``<timepoints>``, ``<setups>``, and ``<timepointsMapped>`` /
``<setupsMapped>`` when ids differ inside the file). Time points are read from ``type="range"``
(``<first>``/``<last>``), ``type="pattern"`` (``<integerpattern>``: ``"0-10:2, 15"``) and
``type="list"`` (``<Timepoint><id>``); they are written as a range when contiguous, else as a
pattern. Paths are resolved against ``<BasePath>`` (relative to the XML's folder) when read and
written relative to the XML's folder when possible.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from scopeflow.core import FormatError, InputNotFoundError, atomic_write_text
from scopeflow.io.spimdata import (
    ATTRIBUTE_TAGS,
    AttributeValue,
    Partition,
    SpimData,
    ViewSetup,
    ViewTransform,
    as_affine,
)

_MODELLED = {"BasePath", "SequenceDescription", "ViewRegistrations"}


class _XmlError(Exception):
    """Internal: a problem in the XML, reported as FormatError with the file name."""


def read_spimdata(path: str | Path) -> SpimData:
    """Read a SpimData XML file; paths in the result are absolute.

    Raises
    ------
    InputNotFoundError
        The file does not exist.
    FormatError
        The file is not well-formed XML or not a valid SpimData document (names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(path, "SpimData XML")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FormatError(path, f"not well-formed XML: {exc}") from None
    try:
        return parse_spimdata(root, path.resolve().parent)
    except (_XmlError, ValueError, TypeError) as exc:
        raise FormatError(path, f"invalid SpimData XML: {exc}") from None


def _text(elem: ET.Element | None, what: str) -> str:
    if elem is None or elem.text is None or not elem.text.strip():
        raise _XmlError(f"missing <{what}>")
    return elem.text.strip()


def _child_text(parent: ET.Element, tag: str) -> str | None:
    child = parent.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split())


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in text.split())


def _path(elem: ET.Element, base: Path) -> Path:
    text = _text(elem, elem.tag)
    if elem.get("type", "relative") == "absolute":
        return Path(text)
    return Path(os.path.normpath(base / text))


def parse_integer_pattern(pattern: str) -> list[int]:
    """Integers of a BDV integer pattern: ``"0-10:2, 15, 20-18"`` (ranges inclusive)."""
    out: list[int] = []
    for entry in pattern.replace(" ", "").split(","):
        if not entry:
            continue
        head, _, step_text = entry.partition(":")
        if "-" in head[1:]:
            cut = head.index("-", 1)
            start, end = int(head[:cut]), int(head[cut + 1 :])
            step = int(step_text) if step_text else 1
            if step <= 0:
                raise _XmlError(f"bad step in integer pattern {pattern!r}")
            out.extend(
                range(start, end + 1, step) if end >= start else range(start, end - 1, -step)
            )
        else:
            out.append(int(head))
    return out


def format_integer_pattern(values: Iterable[int]) -> str:
    """Shortest comma-separated runs (``"0-3, 7, 9-10"``) of ascending unique integers."""
    vals = sorted(set(values))
    runs: list[str] = []
    i = 0
    while i < len(vals):
        j = i
        while j + 1 < len(vals) and vals[j + 1] == vals[j] + 1:
            j += 1
        runs.append(str(vals[i]) if i == j else f"{vals[i]}-{vals[j]}")
        i = j + 1
    return ", ".join(runs)


def _timepoints(elem: ET.Element | None) -> list[int]:
    if elem is None:
        raise _XmlError("missing <Timepoints>")
    kind = elem.get("type")
    if kind == "range":
        first, last = int(_text(elem.find("first"), "first")), int(_text(elem.find("last"), "last"))
        return list(range(first, last + 1))
    if kind == "pattern":
        return sorted(set(parse_integer_pattern(_text(elem.find("integerpattern"), "pattern"))))
    if kind == "list":
        return sorted(int(_text(tp.find("id"), "id")) for tp in elem.findall("Timepoint"))
    raise _XmlError(f"unknown <Timepoints type={kind!r}>")


def _setup(elem: ET.Element) -> ViewSetup:
    size = _child_text(elem, "size")
    vox = elem.find("voxelSize")
    voxel_size, unit = None, "micrometer"
    if vox is not None:
        unit = _child_text(vox, "unit") or unit
        voxel_size = _floats(_text(vox.find("size"), "voxelSize/size"))
    attrs = elem.find("attributes")
    attributes = {} if attrs is None else {a.tag: int(_text(a, a.tag)) for a in attrs}
    sizes = _ints(size) if size else None
    if (sizes is not None and len(sizes) != 3) or (voxel_size is not None and len(voxel_size) != 3):
        raise _XmlError("a view setup's size and voxel size need 3 values (x y z)")
    return ViewSetup(
        id=int(_text(elem.find("id"), "ViewSetup/id")),
        name=_child_text(elem, "name"),
        size=sizes,
        voxel_size=voxel_size,
        unit=unit,
        attributes=attributes,
    )


def _attribute_value(elem: ET.Element) -> AttributeValue:
    props = tuple((c.tag, (c.text or "").strip()) for c in elem if c.tag not in ("id", "name"))
    return AttributeValue(
        int(_text(elem.find("id"), f"{elem.tag}/id")), _child_text(elem, "name"), props
    )


def _image_loader(elem: ET.Element | None, base: Path, sd: SpimData) -> None:
    if elem is None:
        raise _XmlError("missing <ImageLoader>")
    sd.image_loader = elem.get("format", "")
    if sd.image_loader != "bdv.hdf5":
        sd.loader_xml = ET.tostring(elem, encoding="unicode")
        return
    hdf5 = elem.find("hdf5")
    if hdf5 is None:
        raise _XmlError("bdv.hdf5 image loader without <hdf5>")
    sd.hdf5 = _path(hdf5, base)
    for p in elem.findall("partition"):
        tps = _ints(_text(p.find("timepoints"), "partition/timepoints"))
        sids = _ints(_text(p.find("setups"), "partition/setups"))
        tmap, smap = _child_text(p, "timepointsMapped"), _child_text(p, "setupsMapped")
        path_elem = p.find("path")
        if path_elem is None:
            raise _XmlError("partition without <path>")
        sd.partitions.append(
            Partition(
                _path(path_elem, base),
                tps,
                sids,
                _ints(tmap) if tmap else None,
                _ints(smap) if smap else None,
            )
        )


def parse_spimdata(root: ET.Element, xml_dir: Path) -> SpimData:
    """Build a :class:`SpimData` from a parsed ``<SpimData>`` element (``xml_dir``: its folder)."""
    if root.tag != "SpimData":
        raise _XmlError(f"root element is <{root.tag}>, not <SpimData>")
    base_elem = root.find("BasePath")
    base = xml_dir if base_elem is None else _path(base_elem, xml_dir)
    seq = root.find("SequenceDescription")
    if seq is None:
        raise _XmlError("missing <SequenceDescription>")
    sd = SpimData()
    _image_loader(seq.find("ImageLoader"), base, sd)
    setups = seq.find("ViewSetups")
    if setups is None:
        raise _XmlError("missing <ViewSetups>")
    for elem in setups.findall("ViewSetup"):
        setup = _setup(elem)
        sd.setups[setup.id] = setup
    for group in setups.findall("Attributes"):
        name = group.get("name") or ""
        values = sd.attributes.setdefault(name, {})
        for child in group:
            value = _attribute_value(child)
            values[value.id] = value
    sd.timepoints = _timepoints(seq.find("Timepoints"))
    missing = seq.find("MissingViews")
    if missing is not None:
        for mv in missing.findall("MissingView"):
            sd.missing.add((int(mv.get("timepoint", "")), int(mv.get("setup", ""))))
    regs = root.find("ViewRegistrations")
    for reg in [] if regs is None else regs.findall("ViewRegistration"):
        view = (int(reg.get("timepoint", "")), int(reg.get("setup", "")))
        transforms = []
        for vt in reg.findall("ViewTransform"):
            if vt.get("type", "affine") != "affine":
                raise _XmlError(f"view {view}: only affine ViewTransforms are supported")
            name = _child_text(vt, "Name") or _child_text(vt, "name") or ""
            transforms.append(
                ViewTransform(name, as_affine(_floats(_text(vt.find("affine"), "affine"))))
            )
        sd.registrations[view] = transforms
    sd.extra_xml = [
        ET.tostring(child, encoding="unicode").strip()
        for child in root
        if child.tag not in _MODELLED
    ]
    return sd


# ---------------------------------------------------------------------------------------- write


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    elem = ET.SubElement(parent, tag, attrib)
    if text is not None:
        elem.text = text
    return elem


def _num(values: Iterable[float]) -> str:
    return " ".join(repr(float(v)) for v in values)


def _rel(path: Path, xml_dir: Path) -> tuple[str, str]:
    if not path.is_absolute():
        return path.as_posix(), "relative"
    try:
        return Path(os.path.relpath(path, xml_dir)).as_posix(), "relative"
    except ValueError:  # another drive (Windows)
        return path.as_posix(), "absolute"


def _write_loader(seq: ET.Element, sd: SpimData, xml_dir: Path) -> None:
    if sd.image_loader != "bdv.hdf5":
        if sd.loader_xml is None:
            raise ValueError(f"image loader {sd.image_loader!r} has no XML to write")
        seq.append(ET.fromstring(sd.loader_xml))
        return
    if sd.hdf5 is None:
        raise ValueError("a bdv.hdf5 dataset needs its HDF5 file (SpimData.hdf5)")
    loader = _sub(seq, "ImageLoader", format="bdv.hdf5")
    text, kind = _rel(sd.hdf5, xml_dir)
    _sub(loader, "hdf5", text, type=kind)
    for p in sd.partitions:
        elem = _sub(loader, "partition")
        text, kind = _rel(p.path, xml_dir)
        _sub(elem, "path", text, type=kind)
        _sub(elem, "timepoints", " ".join(map(str, p.timepoints)))
        if p.timepoints_mapped is not None and p.timepoints_mapped != p.timepoints:
            _sub(elem, "timepointsMapped", " ".join(map(str, p.timepoints_mapped)))
        _sub(elem, "setups", " ".join(map(str, p.setups)))
        if p.setups_mapped is not None and p.setups_mapped != p.setups:
            _sub(elem, "setupsMapped", " ".join(map(str, p.setups_mapped)))


def _write_setups(seq: ET.Element, sd: SpimData) -> None:
    setups = _sub(seq, "ViewSetups")
    for sid in sorted(sd.setups):
        s = sd.setups[sid]
        elem = _sub(setups, "ViewSetup")
        _sub(elem, "id", str(s.id))
        if s.name is not None:
            _sub(elem, "name", s.name)
        if s.size is not None:
            _sub(elem, "size", " ".join(str(n) for n in s.size))
        if s.voxel_size is not None:
            vox = _sub(elem, "voxelSize")
            _sub(vox, "unit", s.unit)
            _sub(vox, "size", _num(s.voxel_size))
        if s.attributes:
            attrs = _sub(elem, "attributes")
            for name, value in s.attributes.items():
                _sub(attrs, name, str(value))
    attributes = {name: dict(values) for name, values in sd.attributes.items()}
    for s in sd.setups.values():  # BigDataViewer needs every value a setup uses defined
        for name, vid in s.attributes.items():
            attributes.setdefault(name, {}).setdefault(vid, AttributeValue(vid))
    for name, values in attributes.items():
        group = _sub(setups, "Attributes", name=name)
        tag = ATTRIBUTE_TAGS.get(name, name[:1].upper() + name[1:])
        for vid in sorted(values):
            v = values[vid]
            elem = _sub(group, tag)
            _sub(elem, "id", str(v.id))
            _sub(elem, "name", v.name if v.name is not None else str(v.id))
            for key, text in v.properties:
                _sub(elem, key, text)


def spimdata_to_xml(sd: SpimData, xml_dir: str | Path) -> str:
    """Serialise ``sd`` as it would be written to a file in folder ``xml_dir``."""
    xml_dir = Path(xml_dir).resolve()
    root = ET.Element("SpimData", version="0.2")
    _sub(root, "BasePath", ".", type="relative")
    seq = _sub(root, "SequenceDescription")
    _write_loader(seq, sd, xml_dir)
    _write_setups(seq, sd)
    tps = sorted(set(sd.timepoints))
    if tps and tps == list(range(tps[0], tps[-1] + 1)):
        elem = _sub(seq, "Timepoints", type="range")
        _sub(elem, "first", str(tps[0]))
        _sub(elem, "last", str(tps[-1]))
    else:
        elem = _sub(seq, "Timepoints", type="pattern")
        _sub(elem, "integerpattern", format_integer_pattern(tps))
    missing = sd.missing_views()
    if missing:
        mv = _sub(seq, "MissingViews")
        for t, s in missing:
            _sub(mv, "MissingView", timepoint=str(t), setup=str(s))
    regs = _sub(root, "ViewRegistrations")
    for t, s in sorted(sd.registrations):
        reg = _sub(regs, "ViewRegistration", timepoint=str(t), setup=str(s))
        for vt in sd.registrations[(t, s)]:
            elem = _sub(reg, "ViewTransform", type="affine")
            _sub(elem, "Name", vt.name)
            _sub(elem, "affine", _num(vt.affine.ravel()))
    for extra in sd.extra_xml:
        root.append(ET.fromstring(extra))
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_spimdata(sd: SpimData, path: str | Path) -> Path:
    """Write ``sd`` as a SpimData XML file (atomically); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, spimdata_to_xml(sd, path.parent))
