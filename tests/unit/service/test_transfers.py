"""Downloads: result listing, HTTP ranges, chunked reads and the streamed zip."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from scopeflow.core.errors import BadPathError
from scopeflow.service.transfers import (
    ByteRange,
    RangeNotSatisfiableError,
    iter_file,
    list_results,
    parse_range,
    result_path,
    zip_listed,
)

MiB = 1 << 20


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "outputs" / "previews").mkdir(parents=True)
    (run / "logs").mkdir()
    (run / "summary.json").write_text(json.dumps({"status": "succeeded"}), encoding="utf-8")
    (run / "config.yaml").write_text("a: 1\n", encoding="utf-8")
    (run / "logs" / "x.log").write_text("log\n", encoding="utf-8")
    (run / "outputs" / "table.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (run / "outputs" / "previews" / "t0.png").write_bytes(os.urandom(1000))
    (run / "outputs" / "big.bin").write_bytes(os.urandom(9 * MiB))
    secret = tmp_path / "secret.txt"
    secret.write_text("secret", encoding="utf-8")
    (run / "outputs" / "escape").symlink_to(secret)
    (run / "outputs" / "escape_dir").symlink_to(tmp_path)
    return run


def test_list_results(run_dir: Path) -> None:
    results = list_results(run_dir)
    assert [r["path"] for r in results] == [
        "outputs/big.bin",
        "outputs/previews/t0.png",
        "outputs/table.csv",
        "summary.json",
    ]
    assert results[0]["size"] == 9 * MiB
    assert all(isinstance(r["mtime"], float) for r in results)
    assert list_results(run_dir.parent / "nothing") == []


def test_result_path_agrees_with_the_listing(run_dir: Path) -> None:
    """One name checked without a walk: exactly what list_results lists, nothing else."""
    (run_dir / "outputs" / ".t.csv.abcd1234.tmp").write_text("half")  # engine temp file
    for r in list_results(run_dir):
        assert result_path(run_dir, r["path"]) == run_dir / r["path"]
    for rel in [
        "config.yaml",
        "logs/x.log",
        "outputs",
        "outputs/previews",
        "outputs/escape",
        "outputs/escape_dir/secret.txt",
        "outputs/.t.csv.abcd1234.tmp",
        "outputs/missing.csv",
        "outputs/../config.yaml",
    ]:
        assert result_path(run_dir, rel) is None, rel


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("", 100, None),
        ("bytes=0-99", 100, (0, 99)),
        ("bytes=0-0", 100, (0, 0)),
        ("bytes=10-19", 100, (10, 19)),
        ("bytes=10-", 100, (10, 99)),
        ("bytes=50-500", 100, (50, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=99-", 100, (99, 99)),
        ("Bytes = 1 - 2", 100, (1, 2)),
        ("bytes=100-", 100, RangeNotSatisfiableError),
        ("bytes=100-200", 100, RangeNotSatisfiableError),
        ("bytes=20-10", 100, RangeNotSatisfiableError),
        ("bytes=-0", 100, RangeNotSatisfiableError),
        ("bytes=-", 100, RangeNotSatisfiableError),
        ("bytes=0-1,5-6", 100, RangeNotSatisfiableError),
        ("items=0-1", 100, RangeNotSatisfiableError),
        ("bytes=a-b", 100, RangeNotSatisfiableError),
        ("bytes=-1-2", 100, RangeNotSatisfiableError),
        ("bytes 0-1", 100, RangeNotSatisfiableError),
        ("bytes=0-", 0, RangeNotSatisfiableError),
        ("bytes=-1", 0, RangeNotSatisfiableError),
    ],
)
def test_parse_range(header: str | None, size: int, expected: object) -> None:
    if expected is RangeNotSatisfiableError:
        with pytest.raises(RangeNotSatisfiableError) as exc:
            parse_range(header, size)
        assert exc.value.content_range == f"bytes */{size}"
    else:
        assert parse_range(header, size) == expected


def test_byte_range_headers() -> None:
    r = ByteRange(10, 19)
    assert r.length == 10
    assert r.content_range(100) == "bytes 10-19/100"


def test_iter_file(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    pieces = list(iter_file(path))
    assert b"".join(pieces) == data
    assert max(len(p) for p in pieces) == MiB
    r = parse_range("bytes=1000-", len(data))
    assert r is not None
    assert b"".join(iter_file(path, *r, chunk=4096)) == data[1000:]
    assert b"".join(iter_file(path, 5, 5)) == data[5:6]
    assert b"".join(iter_file(path, *ByteRange(0, 0))) == data[:1]


@pytest.mark.parametrize("compress", [False, True])
def test_zip_reads_back_identical(run_dir: Path, compress: bool) -> None:
    pieces = list(zip_listed(run_dir, list_results(run_dir), compress=compress))
    assert max(len(p) for p in pieces) <= 2 * MiB
    archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [r["path"] for r in list_results(run_dir)]
    for name in names:
        assert archive.read(name) == (run_dir / name).read_bytes()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    assert {i.compress_type for i in archive.infolist()} == {method}


def test_zip64_entries_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries past the ZIP64 limit (lowered here) are written as ZIP64 and read back."""
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 2 * MiB)
    (tmp_path / "outputs").mkdir()
    data = os.urandom(3 * MiB)
    (tmp_path / "outputs" / "big.bin").write_bytes(data)
    blob = b"".join(zip_listed(tmp_path, list_results(tmp_path)))
    monkeypatch.undo()
    archive = zipfile.ZipFile(io.BytesIO(blob))
    assert archive.read("outputs/big.bin") == data
    assert archive.infolist()[0].extra[:2] == b"\x01\x00"  # the ZIP64 extra field


def test_zip_streaming_memory_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    big = tmp_path / "outputs" / "big.bin"
    block = os.urandom(MiB)
    with big.open("wb") as f:
        for _ in range(64):
            f.write(block)
    total = 0
    tracemalloc.start()
    try:
        for piece in zip_listed(tmp_path, list_results(tmp_path)):
            total += len(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 64 * MiB
    assert peak < 16 * MiB, f"peak {peak / MiB:.1f} MiB"


def test_list_results_of_one_folder(run_dir: Path, tmp_path: Path) -> None:
    """``prefix``: the result files under one folder, at any depth, named as in the run."""
    zarr = run_dir / "outputs" / "img.ome.zarr"
    (zarr / "0" / "c" / "0").mkdir(parents=True)
    (zarr / "zarr.json").write_text("{}", encoding="utf-8")
    (zarr / "0" / "c" / "0" / "0").write_bytes(b"chunk")
    (zarr / "0" / ".c.abcd1234.tmp").write_bytes(b"half")  # an engine's temp file
    (run_dir / "outputs" / "img.ome.zarr.txt").write_text("beside", encoding="utf-8")
    (run_dir / "outputs" / "linked.zarr").symlink_to(zarr, target_is_directory=True)

    names = [r["path"] for r in list_results(run_dir, prefix="outputs/img.ome.zarr")]
    assert names == ["outputs/img.ome.zarr/0/c/0/0", "outputs/img.ome.zarr/zarr.json"]
    assert [r["path"] for r in list_results(run_dir, prefix="outputs/previews")] == [
        "outputs/previews/t0.png"
    ]
    everything = [r["path"] for r in list_results(run_dir)]
    assert [r["path"] for r in list_results(run_dir, prefix="outputs")] == everything[:-1]
    assert everything[-1] == "summary.json"
    for nothing in (
        "outputs/img",  # a prefix of a name, not a folder
        "outputs/table.csv",  # a file
        "outputs/missing",
        "outputs/linked.zarr",  # symbolic links are not followed
        "outputs/escape_dir",
        "logs",  # in the run, not a result
        "summary.json",
    ):
        assert list_results(run_dir, prefix=nothing) == [], nothing
    assert list_results(tmp_path / "no-run", prefix="outputs") == []
    for bad in ("../secret.txt", "/etc", "outputs/../logs", "outputs/", "", "a\\b"):
        with pytest.raises(BadPathError):
            list_results(run_dir, prefix=bad)
    data = b"".join(zip_listed(run_dir, list_results(run_dir, prefix="outputs/img.ome.zarr")))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert archive.namelist() == names
    assert archive.read("outputs/img.ome.zarr/0/c/0/0") == b"chunk"


def test_a_symlinked_outputs_folder_is_neither_listed_nor_served(
    run_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "scratch"
    (run_dir / "outputs").rename(elsewhere)
    (run_dir / "outputs").symlink_to(elsewhere)
    assert (run_dir / "outputs" / "table.csv").is_file()  # reachable through the link
    assert [r["path"] for r in list_results(run_dir)] == ["summary.json"]
    assert result_path(run_dir, "outputs/table.csv") is None
    assert list_results(run_dir, prefix="outputs/previews") == []
