"""SpimData model and BDV XML: the BigStitcher format, round trips, transforms, merging."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pybdv
import pytest
from pybdv import metadata as bdv_meta

from scopeflow.core import FormatError, InputNotFoundError
from scopeflow.io._bdv_xml import (
    format_integer_pattern,
    parse_integer_pattern,
    read_spimdata,
    spimdata_to_xml,
    write_spimdata,
)
from scopeflow.io.spimdata import (
    AttributeValue,
    Partition,
    SpimData,
    ViewSetup,
    ViewTransform,
    compose,
    merge_spimdata,
)

# As BigStitcher writes it (abridged to 3 setups; element order and spelling kept): setups then
# <Attributes>, a pattern of time points, MissingViews, <Name> before <affine>, partitions, and
# the elements scopeflow does not model.
BIGSTITCHER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<SpimData version="0.2">
  <BasePath type="relative">.</BasePath>
  <SequenceDescription>
    <ImageLoader format="bdv.hdf5">
      <hdf5 type="relative">dataset.h5</hdf5>
      <partition>
        <path type="relative">dataset-00-00.h5</path>
        <timepoints>0</timepoints>
        <setups>0 1 2</setups>
      </partition>
      <partition>
        <path type="relative">dataset-01-00.h5</path>
        <timepoints>2</timepoints>
        <timepointsMapped>0</timepointsMapped>
        <setups>0 1 2</setups>
      </partition>
    </ImageLoader>
    <ViewSetups>
      <ViewSetup>
        <id>0</id>
        <name>0</name>
        <size>1388 1040 81</size>
        <voxelSize>
          <unit>µm</unit>
          <size>0.7310781027054596 0.7310781027054596 2.0</size>
        </voxelSize>
        <attributes>
          <illumination>0</illumination>
          <channel>0</channel>
          <tile>0</tile>
          <angle>0</angle>
        </attributes>
      </ViewSetup>
      <ViewSetup>
        <id>1</id>
        <name>1</name>
        <size>1388 1040 81</size>
        <voxelSize>
          <unit>µm</unit>
          <size>0.7310781027054596 0.7310781027054596 2.0</size>
        </voxelSize>
        <attributes>
          <illumination>0</illumination>
          <channel>0</channel>
          <tile>1</tile>
          <angle>1</angle>
        </attributes>
      </ViewSetup>
      <ViewSetup>
        <id>2</id>
        <name>2</name>
        <size>1388 1040 90</size>
        <voxelSize>
          <unit>µm</unit>
          <size>0.7310781027054596 0.7310781027054596 2.0</size>
        </voxelSize>
        <attributes>
          <illumination>1</illumination>
          <channel>1</channel>
          <tile>0</tile>
          <angle>0</angle>
        </attributes>
      </ViewSetup>
      <Attributes name="illumination">
        <Illumination>
          <id>0</id>
          <name>left</name>
        </Illumination>
        <Illumination>
          <id>1</id>
          <name>right</name>
        </Illumination>
      </Attributes>
      <Attributes name="channel">
        <Channel>
          <id>0</id>
          <name>488</name>
        </Channel>
        <Channel>
          <id>1</id>
          <name>561</name>
        </Channel>
      </Attributes>
      <Attributes name="tile">
        <Tile>
          <id>0</id>
          <name>0</name>
          <location>0.0 0.0 0.0</location>
        </Tile>
        <Tile>
          <id>1</id>
          <name>1</name>
          <location>912.0 0.0 0.0</location>
        </Tile>
      </Attributes>
      <Attributes name="angle">
        <Angle>
          <id>0</id>
          <name>0</name>
        </Angle>
        <Angle>
          <id>1</id>
          <name>45</name>
          <axis>0.0 1.0 0.0</axis>
          <degrees>45.0</degrees>
        </Angle>
      </Attributes>
    </ViewSetups>
    <Timepoints type="pattern">
      <integerpattern>0, 2</integerpattern>
    </Timepoints>
    <MissingViews>
      <MissingView timepoint="2" setup="1" />
    </MissingViews>
  </SequenceDescription>
  <ViewRegistrations>
    <ViewRegistration timepoint="0" setup="0">
      <ViewTransform type="affine">
        <Name>Translation to Regular Grid</Name>
        <affine>1.0 0.0 0.0 10.0 0.0 1.0 0.0 20.0 0.0 0.0 1.0 30.0</affine>
      </ViewTransform>
      <ViewTransform type="affine">
        <Name>calibration</Name>
        <affine>1.0 0.0 0.0 0.0 0.0 1.0 0.0 0.0 0.0 0.0 2.735715 0.0</affine>
      </ViewTransform>
    </ViewRegistration>
    <ViewRegistration timepoint="0" setup="1">
      <ViewTransform type="affine">
        <Name>calibration</Name>
        <affine>1.0 0.0 0.0 0.0 0.0 1.0 0.0 0.0 0.0 0.0 2.735715 0.0</affine>
      </ViewTransform>
    </ViewRegistration>
  </ViewRegistrations>
  <ViewInterestPoints>
    <ViewInterestPointsFile timepoint="0" setup="0" label="beads"
      params="DOG">interestpoints/tpId_0_viewSetupId_0.beads</ViewInterestPointsFile>
  </ViewInterestPoints>
  <BoundingBoxes />
  <PointSpreadFunctions />
  <StitchingResults />
  <IntensityAdjustments />
</SpimData>
"""


@pytest.fixture
def bigstitcher(tmp_path: Path) -> Path:
    path = tmp_path / "dataset.xml"
    path.write_text(BIGSTITCHER_XML, encoding="utf-8")
    return path


def test_reads_bigstitcher_xml(bigstitcher: Path) -> None:
    sd = read_spimdata(bigstitcher)
    folder = bigstitcher.parent.resolve()
    assert sd.image_loader == "bdv.hdf5"
    assert sd.hdf5 == folder / "dataset.h5"
    assert sd.partitions == [
        Partition(folder / "dataset-00-00.h5", (0,), (0, 1, 2)),
        Partition(folder / "dataset-01-00.h5", (2,), (0, 1, 2), (0,), None),
    ]
    assert sorted(sd.setups) == [0, 1, 2]
    s2 = sd.setups[2]
    assert s2.size == (1388, 1040, 90)
    assert s2.voxel_size == (0.7310781027054596, 0.7310781027054596, 2.0)
    assert s2.unit == "µm"
    assert s2.attributes == {"illumination": 1, "channel": 1, "tile": 0, "angle": 0}
    assert sd.attributes["channel"][1] == AttributeValue(1, "561")
    assert sd.attribute(1, "angle") == AttributeValue(
        1, "45", (("axis", "0.0 1.0 0.0"), ("degrees", "45.0"))
    )
    assert sd.attribute(1, "tile").get("location") == "912.0 0.0 0.0"  # type: ignore[union-attr]
    assert sd.timepoints == [0, 2]
    assert sd.missing_views() == [(2, 1)]
    assert (0, 2) in sd.views() and (2, 1) not in sd.views()
    names = [t.name for t in sd.transforms(0, 0)]
    assert names == ["Translation to Regular Grid", "calibration"]
    # the last transform applies first: calibration, then the translation
    expected = np.array([[1, 0, 0, 10], [0, 1, 0, 20], [0, 0, 2.735715, 30]], float)
    np.testing.assert_allclose(sd.view_model(0, 0), expected)
    assert sd.view_model(2, 2).tolist() == np.eye(4)[:3].tolist()  # no registration: identity
    assert [ET.fromstring(x).tag for x in sd.extra_xml] == [
        "ViewInterestPoints",
        "BoundingBoxes",
        "PointSpreadFunctions",
        "StitchingResults",
        "IntensityAdjustments",
    ]


def _same(a: SpimData, b: SpimData) -> None:
    assert a.setups == b.setups
    assert a.attributes == b.attributes
    assert a.timepoints == b.timepoints
    assert a.registrations == b.registrations
    assert a.missing_views() == b.missing_views()
    assert a.hdf5 == b.hdf5
    assert a.partitions == b.partitions
    assert a.extra_xml == b.extra_xml


def test_bigstitcher_round_trip(bigstitcher: Path, tmp_path: Path) -> None:
    sd = read_spimdata(bigstitcher)
    out = write_spimdata(sd, tmp_path / "copy.xml")
    again = read_spimdata(out)
    _same(sd, again)
    text = out.read_text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<SpimData version="0.2">')
    assert '<BasePath type="relative">.</BasePath>' in text
    assert '<hdf5 type="relative">dataset.h5</hdf5>' in text
    assert "<timepointsMapped>0</timepointsMapped>" in text
    assert "<integerpattern>0, 2</integerpattern>" in text
    assert '<MissingView timepoint="2" setup="1" />' in text
    # written again from the copy: identical text
    assert spimdata_to_xml(again, tmp_path) == text


def test_paths_are_written_relative_to_the_new_xml(bigstitcher: Path, tmp_path: Path) -> None:
    sd = read_spimdata(bigstitcher)
    out = write_spimdata(sd, tmp_path / "sub" / "moved.xml")
    assert '<hdf5 type="relative">../dataset.h5</hdf5>' in out.read_text()
    assert read_spimdata(out).hdf5 == sd.hdf5


def test_prepend_transform_applies_last() -> None:
    sd = SpimData(timepoints=[0], hdf5=Path("x.h5"))
    sd.add_setup(ViewSetup(0, "v", (10, 10, 10), (1.0, 1.0, 2.0), attributes={"angle": 0}))
    calib = np.diag([1.0, 1.0, 2.0, 1.0])[:3]
    rot = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [-1, 0, 0, 5]], float)
    sd.prepend_transform(0, 0, calib, "calibration")
    sd.prepend_transform(0, 0, rot, "registration")
    assert [t.name for t in sd.transforms(0, 0)] == ["registration", "calibration"]
    model = sd.view_model(0, 0)
    np.testing.assert_allclose(model, compose(rot, calib))
    p = np.array([1.0, 2.0, 3.0, 1.0])
    np.testing.assert_allclose(model @ p, rot @ np.r_[calib @ p, 1.0])
    assert sd.attributes["angle"][0] == AttributeValue(0, "0")


@pytest.mark.parametrize(
    ("pattern", "values"),
    [("0-3, 7", [0, 1, 2, 3, 7]), ("0-10:5", [0, 5, 10]), ("5-3", [5, 4, 3]), ("4", [4])],
)
def test_integer_patterns(pattern: str, values: list[int]) -> None:
    assert parse_integer_pattern(pattern) == values
    assert parse_integer_pattern(format_integer_pattern(values)) == sorted(values)


def test_timepoints_range_and_list(tmp_path: Path) -> None:
    text = BIGSTITCHER_XML.replace(
        '<Timepoints type="pattern">\n      <integerpattern>0, 2</integerpattern>',
        '<Timepoints type="list"><Timepoint><id>3</id><name>3</name></Timepoint>'
        "<Timepoint><id>1</id></Timepoint>",
    )
    path = tmp_path / "list.xml"
    path.write_text(text, encoding="utf-8")
    assert read_spimdata(path).timepoints == [1, 3]
    sd = read_spimdata(path)
    sd.timepoints = [4, 5, 6]
    assert '<Timepoints type="range">' in spimdata_to_xml(sd, tmp_path)
    assert read_spimdata(write_spimdata(sd, tmp_path / "r.xml")).timepoints == [4, 5, 6]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not xml at all", "not well-formed"),
        ("<Other/>", "not <SpimData>"),
        ('<SpimData version="0.2"><BasePath type="relative">.</BasePath></SpimData>', "Sequence"),
        (BIGSTITCHER_XML.replace("<id>2</id>", "<id>two</id>"), "invalid SpimData"),
        (BIGSTITCHER_XML.replace('type="pattern"', 'type="weird"'), "Timepoints"),
        (BIGSTITCHER_XML.replace("2.735715 0.0</affine>", "2.7</affine>", 1), "12 finite"),
    ],
)
def test_bad_xml_raises_format_error_naming_the_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.xml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=match) as info:
        read_spimdata(path)
    assert str(path) in str(info.value)


def test_missing_xml() -> None:
    with pytest.raises(InputNotFoundError, match=r"nowhere\.xml"):
        read_spimdata("/nowhere.xml")


def _per_timepoint(tmp_path: Path, t: int, setups: dict[int, tuple[int, int, int]]) -> Path:
    sd = SpimData(timepoints=[t], hdf5=tmp_path / f"ds-t{t:05d}.h5")
    for sid, size in setups.items():
        sd.add_setup(ViewSetup(sid, f"s{sid}", size, (0.5, 0.5, 1.0), attributes={"angle": sid}))
        sd.prepend_transform(t, sid, np.diag([0.5, 0.5, 1.0, 1.0])[:3], "calibration")
        sd.prepend_transform(t, sid, np.c_[np.eye(3), [t, 0, 0]], f"drift {t}")
    return write_spimdata(sd, tmp_path / f"ds-t{t:05d}.xml")


def test_merge_per_timepoint_xmls(tmp_path: Path) -> None:
    xmls = [_per_timepoint(tmp_path, t, {0: (8, 8, 8), 1: (9, 8, 8)}) for t in (0, 1, 3)]
    xmls.append(_per_timepoint(tmp_path, 4, {0: (8, 8, 8)}))  # setup 1 not imaged at t=4
    merged = merge_spimdata(xmls, hdf5=tmp_path / "ds.h5")
    assert merged.timepoints == [0, 1, 3, 4]
    assert sorted(merged.setups) == [0, 1]
    assert merged.missing_views() == [(4, 1)]
    assert merged.hdf5 == tmp_path / "ds.h5"
    assert [(p.path.name, p.timepoints, p.setups) for p in merged.partitions] == [
        ("ds-t00000.h5", (0,), (0, 1)),
        ("ds-t00001.h5", (1,), (0, 1)),
        ("ds-t00003.h5", (3,), (0, 1)),
        ("ds-t00004.h5", (4,), (0,)),
    ]
    assert [t.name for t in merged.transforms(3, 1)] == ["drift 3", "calibration"]
    out = write_spimdata(merged, tmp_path / "ds.xml")
    _same(read_spimdata(out), merged)
    assert "<integerpattern>0-1, 3-4</integerpattern>" in out.read_text()
    # merging the merged dataset with itself changes nothing
    _same(merge_spimdata([out, out], hdf5=tmp_path / "ds.h5"), merged)


def test_merge_conflicts_name_the_input(tmp_path: Path) -> None:
    a = _per_timepoint(tmp_path, 0, {0: (8, 8, 8)})
    b = _per_timepoint(tmp_path, 1, {0: (8, 8, 9)})
    with pytest.raises(FormatError, match="setup 0 conflicts") as info:
        merge_spimdata([a, b], hdf5=tmp_path / "m.h5")
    assert str(b) in str(info.value)
    sd = read_spimdata(a)
    other = read_spimdata(a)
    other.set_transforms(0, 0, [ViewTransform("x", np.eye(4)[:3])])
    with pytest.raises(FormatError, match="registration of view"):
        merge_spimdata([sd, other])
    renamed = read_spimdata(a)
    renamed.attributes["angle"][0] = AttributeValue(0, "other")
    with pytest.raises(FormatError, match="angle 0"):
        merge_spimdata([sd, renamed])
    with pytest.raises(ValueError, match="master"):
        merge_spimdata([a, _per_timepoint(tmp_path, 2, {0: (8, 8, 8)})])
    with pytest.raises(ValueError, match="at least one"):
        merge_spimdata([])


def test_merge_same_file_keeps_it_and_unites_extra_elements(bigstitcher: Path) -> None:
    sd = read_spimdata(bigstitcher)
    sd.partitions = []
    other = read_spimdata(bigstitcher)
    other.partitions = []
    other.extra_xml[0] = other.extra_xml[0].replace('timepoint="0"', 'timepoint="2"')
    merged = merge_spimdata([sd, other])
    assert merged.hdf5 == sd.hdf5 and merged.partitions == []
    points = ET.fromstring(merged.extra_xml[0])
    assert sorted(p.get("timepoint") for p in points) == ["0", "2"]


def test_reads_pybdv_xml(tmp_path: Path) -> None:
    data = np.arange(4 * 6 * 8, dtype=np.uint16).reshape(4, 6, 8)
    path = str(tmp_path / "p.h5")
    trafos = {
        "shift": [float(v) for v in (1, 0, 0, 5, 0, 1, 0, 6, 0, 0, 1, 7)],
        "scale": [float(v) for v in (2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0)],
    }
    pybdv.make_bdv(
        data,
        path,
        resolution=[2.0, 0.5, 0.25],
        unit="micrometer",
        setup_id=0,
        setup_name="first",
        affine=trafos,
        attributes={"channel": {"id": 0}, "angle": {"id": 3}},
    )
    pybdv.make_bdv(
        data,
        path,
        setup_id=1,
        resolution=[2.0, 0.5, 0.25],
        unit="micrometer",
        attributes={"channel": {"id": 1}, "angle": {"id": 3}},
    )
    sd = read_spimdata(tmp_path / "p.xml")
    assert sd.hdf5 == tmp_path.resolve() / "p.h5"
    assert sd.timepoints == [0]
    assert sd.setups[0].size == (8, 6, 4)
    assert sd.setups[0].voxel_size == (0.25, 0.5, 2.0)
    assert sd.setups[0].name == "first"
    assert sd.setups[1].attributes == {"channel": 1, "angle": 3}
    assert [t.name for t in sd.transforms(0, 0)] == ["shift", "scale"]
    np.testing.assert_allclose(
        sd.view_model(0, 0),
        compose(trafos["shift"], trafos["scale"]),  # shift . scale
    )
    np.testing.assert_allclose(sd.view_model(0, 1), np.diag([0.25, 0.5, 2.0, 1.0])[:3])
    # and pybdv reads what scopeflow writes from it
    out = write_spimdata(sd, tmp_path / "again.xml")
    assert bdv_meta.get_setup_ids(str(out)) == [0, 1]
    assert bdv_meta.get_resolution(str(out), 0) == [2.0, 0.5, 0.25]
    assert bdv_meta.get_size(str(out), 1) == (4, 6, 8)
    assert bdv_meta.get_time_range(str(out)) == (0, 0)
    assert list(bdv_meta.get_affine(str(out), 0).values()) == [
        trafos["shift"],
        trafos["scale"],
    ]


def test_undefined_attribute_values_are_defined_when_written(tmp_path: Path) -> None:
    sd = SpimData(timepoints=[0], hdf5=Path("x.h5"))
    sd.setups[0] = ViewSetup(0, "v", attributes={"channel": 4, "custom": 1})
    text = spimdata_to_xml(sd, tmp_path)
    assert '<Attributes name="custom">' in text and "<Custom>" in text
    again = read_spimdata(write_spimdata(sd, tmp_path / "a.xml"))
    assert again.attributes["channel"][4] == AttributeValue(4, "4")
    assert again.setups[0].size is None and again.setups[0].voxel_size is None
