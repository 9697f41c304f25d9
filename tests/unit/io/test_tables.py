"""Feature tables: Parquet parts and their streaming merge, CSV / FCS / AnnData exports."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import anndata
import flowio
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from scopeflow.core import FormatError, InputNotFoundError
from scopeflow.io import tables
from scopeflow.io.tables import (
    export_anndata,
    export_csv,
    export_fcs,
    merge_table_parts,
    read_table,
    table_parts,
    write_table_part,
)

RNG = np.random.default_rng(5)


def features(n: int, image_id: int = 0) -> pd.DataFrame:
    """A CellProfiler-style feature table: identifiers, locations, metadata, measurements."""
    return pd.DataFrame(
        {
            "image_id": np.full(n, image_id, dtype=np.int64),
            "ObjectNumber": np.arange(1, n + 1, dtype=np.int64),
            "Location_Center_X": RNG.random(n) * 90,
            "Location_Center_Y": RNG.random(n) * 90,
            "Metadata_Well": [f"A{image_id}"] * n,
            "AreaShape_Area": RNG.integers(50, 900, n).astype(np.int64),
            "Intensity_MeanIntensity_nucleus": RNG.random(n) * 1e4,
            "Intensity_MeanIntensity_cytoplasm": RNG.random(n).astype(np.float32),
            "touching": RNG.random(n) > 0.5,
        }
    )


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    """Parts of units 0..11 (unit 5 empty), written in a shuffled order."""
    directory = tmp_path / "features"
    frames = {u: features(0 if u == 5 else 7 + u, u) for u in range(12)}
    for u in RNG.permutation(12):
        write_table_part(directory, int(u), frames[int(u)])
    expected = pd.concat([frames[u] for u in range(12)], ignore_index=True)
    return directory, expected


def test_part_files_are_atomic_and_named_by_unit(tmp_path: Path) -> None:
    path = write_table_part(tmp_path, 3, features(4))
    assert path == tmp_path / "part-000003.parquet"
    assert (
        write_table_part(tmp_path, "batch-b", pa.table({"a": [1]})).name == "part-batch-b.parquet"
    )
    write_table_part(tmp_path, 3, features(2))  # a retried unit replaces its part
    assert pq.ParquetFile(path).metadata.num_rows == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "part-000003.parquet",
        "part-batch-b.parquet",
    ]  # no temporary files left
    with pytest.raises(ValueError, match="unit"):
        write_table_part(tmp_path, "../escape", features(1))
    with pytest.raises(TypeError, match="DataFrame"):
        write_table_part(tmp_path, 1, {"a": [1]})  # type: ignore[arg-type]


def test_merge_round_trip_exact(parts: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    directory, expected = parts
    (directory / "notes.txt").write_text("not a part")
    (directory / ".part-000099.parquet.abc.tmp").write_bytes(b"half written")
    out = merge_table_parts(directory, tmp_path / "merged.parquet")
    merged = read_table(out)
    assert list(merged.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(merged, expected)
    pd.testing.assert_frame_equal(read_table(directory), expected)  # a folder reads as its merge
    pd.testing.assert_frame_equal(
        read_table(out, columns=["ObjectNumber", "image_id"]),
        expected[["ObjectNumber", "image_id"]],
    )
    assert [p.name for p in table_parts(directory)][:3] == [
        "part-000000.parquet",
        "part-000001.parquet",
        "part-000002.parquet",
    ]


def test_parts_in_natural_order_and_column_order_of_the_first(tmp_path: Path) -> None:
    for unit in ("b10", "b2", "b1"):
        frame = pd.DataFrame({"x": [float(unit[1:])], "unit": [unit]})
        write_table_part(tmp_path, unit, frame if unit == "b1" else frame[["unit", "x"]])
    merged = read_table(merge_table_parts(tmp_path, tmp_path / "m.parquet"))
    assert list(merged.columns) == ["x", "unit"]
    assert list(merged["unit"]) == ["b1", "b2", "b10"]


def test_types_are_unified_when_lossless(tmp_path: Path) -> None:
    write_table_part(tmp_path, 0, pa.table({"a": pa.array([1, 2], pa.int32()), "s": ["x", "y"]}))
    write_table_part(tmp_path, 1, pa.table({"a": pa.array([2.5]), "s": pa.nulls(1)}))
    write_table_part(tmp_path, 2, pd.DataFrame({"a": pd.Series([], dtype=object), "s": []}))
    out = merge_table_parts(tmp_path, tmp_path / "m.parquet")
    schema = pq.read_schema(out)
    assert schema.field("a").type == pa.float64()
    assert schema.field("s").type == pa.string()
    assert read_table(out)["a"].tolist() == [1.0, 2.0, 2.5]


def test_schema_mismatch_names_the_part(tmp_path: Path) -> None:
    write_table_part(tmp_path, 0, features(3))
    write_table_part(tmp_path, 1, features(3).drop(columns=["touching"]).assign(extra=1))
    with pytest.raises(
        FormatError, match=r"part-000001\.parquet.*missing \['touching'\], extra \['extra'\]"
    ):
        merge_table_parts(tmp_path, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_incompatible_types_are_named(tmp_path: Path) -> None:
    write_table_part(tmp_path, 0, pd.DataFrame({"a": [1, 2]}))
    write_table_part(tmp_path, 1, pd.DataFrame({"a": ["x"]}))
    with pytest.raises(
        FormatError, match=r"column 'a'.*int64 in part-000000.*string in part-000001"
    ):
        merge_table_parts(tmp_path, tmp_path / "m.parquet")


def test_truncated_part_or_table_is_a_format_error(
    parts: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    directory, _ = parts
    part = directory / "part-000004.parquet"
    part.write_bytes(part.read_bytes()[:-30])
    with pytest.raises(FormatError, match=r"part-000004\.parquet.*Parquet"):
        merge_table_parts(directory, tmp_path / "m.parquet")
    assert [p.name for p in tmp_path.iterdir()] == ["features"]  # no output, no temporary file
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    for call in (read_table, lambda p: export_csv(p, tmp_path / "x.csv")):
        with pytest.raises(FormatError, match=r"bad\.parquet"):
            call(bad)
    with pytest.raises(InputNotFoundError, match="absent"):
        merge_table_parts(tmp_path / "absent", tmp_path / "m.parquet")
    with pytest.raises(FormatError, match="no part files"):
        merge_table_parts(tmp_path / "features" / "..", tmp_path / "m.parquet")


def test_large_merge_streams_in_row_groups(tmp_path: Path) -> None:
    directory = tmp_path / "big"
    for unit in range(200):
        frame = pd.DataFrame(RNG.random((1000, 20)), columns=[f"f{i}" for i in range(20)])
        frame.insert(0, "image_id", unit)
        write_table_part(directory, unit, frame)
    # measure what pyarrow allocates during the merge on a pool of its own
    pool = pa.proxy_memory_pool(pa.default_memory_pool())
    default = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        out = merge_table_parts(directory, tmp_path / "big.parquet", row_group_size=20_000)
        gc.collect()
    finally:
        pa.set_memory_pool(default)
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 200_000
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [20_000] * 10
    whole = pq.read_table(out)
    assert pool.max_memory() < 0.4 * whole.nbytes, (pool.max_memory(), whole.nbytes)
    ids = whole.column("image_id").to_numpy()
    assert (np.diff(ids) >= 0).all() and ids[-1] == 199


def test_csv_round_trip_exact(parts: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    directory, expected = parts
    out = export_csv(directory, tmp_path / "features.csv")
    back = pd.read_csv(out)
    expected = expected.assign(
        Intensity_MeanIntensity_cytoplasm=expected["Intensity_MeanIntensity_cytoplasm"].astype(
            float
        )
    )
    pd.testing.assert_frame_equal(back, expected)
    sub = export_csv(
        expected, tmp_path / "sub.tsv", columns=["AreaShape_Area", "image_id"], delimiter="\t"
    )
    assert sub.read_text().splitlines()[0] == '"AreaShape_Area"\t"image_id"'


def test_fcs_export_reads_back_with_flowio(
    parts: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    directory, expected = parts
    expected.loc[3, "Intensity_MeanIntensity_nucleus"] = np.nan
    frame = expected.rename(columns={"AreaShape_Area": "Area,px"})
    out = export_fcs(frame, tmp_path / "features.fcs", metadata={"$CYT": "scopeflow"})
    fcs = flowio.FlowData(str(out))
    numeric = [c for c in frame.columns if c != "Metadata_Well"]
    assert fcs.version == "3.1"
    assert fcs.pnn_labels == [c.replace(",", "_") for c in numeric]
    assert fcs.event_count == len(frame)
    assert fcs.text["cyt"] == "scopeflow"
    assert fcs.text["p5r"] == str(int(np.ceil(frame["Area,px"].max())))
    events = fcs.as_array(preprocess=False)
    want = frame[numeric].astype(np.float64).to_numpy().astype(np.float32)
    np.testing.assert_array_equal(events, want)  # NaN where the table had NaN
    chosen = export_fcs(directory, tmp_path / "two.fcs", columns=["touching", "image_id"])
    two = flowio.FlowData(str(chosen))
    assert two.pnn_labels == ["touching", "image_id"]
    with pytest.raises(ValueError, match="not numeric"):
        export_fcs(frame, tmp_path / "x.fcs", columns=["Metadata_Well"])
    with pytest.raises(ValueError, match="no numeric"):
        export_fcs(pd.DataFrame({"s": ["a"]}), tmp_path / "x.fcs")


def test_anndata_export(parts: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    directory, expected = parts
    out = export_anndata(merge_table_parts(directory, tmp_path / "m.parquet"), tmp_path / "f.h5ad")
    adata = anndata.read_h5ad(out)
    obs = ["image_id", "ObjectNumber", "Location_Center_X", "Location_Center_Y", "Metadata_Well"]
    var = [c for c in expected.columns if c not in obs]
    assert list(adata.obs.columns) == obs
    assert list(adata.var_names) == var
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(
        adata.X, expected[var].astype(np.float64).to_numpy().astype(np.float32)
    )
    np.testing.assert_array_equal(adata.obs["ObjectNumber"], expected["ObjectNumber"])
    assert list(adata.obs["Metadata_Well"].astype(str)) == list(expected["Metadata_Well"])
    np.testing.assert_array_equal(
        adata.obsm["spatial"], expected[["Location_Center_X", "Location_Center_Y"]].to_numpy()
    )
    custom = anndata.read_h5ad(
        export_anndata(expected, tmp_path / "c.h5ad", obs_columns=["image_id"])
    )
    assert list(custom.obs.columns) == ["image_id", "Metadata_Well"]  # strings always go to obs
    assert "ObjectNumber" in custom.var_names
    with pytest.raises(KeyError, match="nope"):
        export_anndata(expected, tmp_path / "x.h5ad", obs_columns=["nope"])


def test_exports_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails half-way leaves the previous file as it was and no temporary file."""
    import types

    import anndata

    from scopeflow.io import _tables_export

    frame = features(5)
    exports = ((export_csv, "a.csv"), (export_fcs, "a.fcs"), (export_anndata, "a.h5ad"))
    for export, name in exports:
        export(frame, tmp_path / name)
    before = {name: (tmp_path / name).read_bytes() for _, name in exports}

    class FailingCsvWriter:
        def __init__(self, path: str, *args: object, **kwargs: object) -> None:
            Path(path).write_bytes(b"partial")

        def __enter__(self) -> FailingCsvWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def write_batch(self, batch: object) -> None:
            raise OSError("disk full")

    def failing_fcs(fh: object, *args: object, **kwargs: object) -> None:
        fh.write(b"partial")  # type: ignore[attr-defined]
        raise OSError("disk full")

    def failing_h5ad(self: object, path: object) -> None:
        Path(str(path)).write_bytes(b"partial")
        raise OSError("disk full")

    csv = types.SimpleNamespace(WriteOptions=pacsv.WriteOptions, CSVWriter=FailingCsvWriter)
    monkeypatch.setattr(_tables_export, "pacsv", csv)
    monkeypatch.setitem(sys.modules, "flowio", types.SimpleNamespace(create_fcs=failing_fcs))
    monkeypatch.setattr(anndata.AnnData, "write_h5ad", failing_h5ad)
    for export, name in exports:
        with pytest.raises(OSError, match="disk full"):
            export(features(7), tmp_path / name)
        assert (tmp_path / name).read_bytes() == before[name], name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "a.fcs", "a.h5ad"]


def test_public_names() -> None:
    assert set(tables.__all__) >= {
        "write_table_part",
        "merge_table_parts",
        "read_table",
        "export_csv",
        "export_fcs",
        "export_anndata",
    }
