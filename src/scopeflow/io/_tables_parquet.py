"""Feature tables in Parquet: one part file per unit of work, merged by streaming.

Parallel units never write the same file: unit ``u`` writes ``<dir>/part-<u>.parquet``
atomically (a hidden temporary file in the same folder, then a rename), so a reader or a merge
never sees half a part and a retried unit simply replaces its part. The merge streams record
batches from every part into one file (bounded memory whatever the number of rows), after
checking that the parts agree on their columns.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa
import pyarrow.parquet as pq

from scopeflow.core import FormatError, InputNotFoundError

if TYPE_CHECKING:  # pandas is imported only when a DataFrame is asked for (≈ 0.9 s)
    import pandas as pd

PART_PREFIX = "part-"
PART_SUFFIX = ".parquet"
ROW_GROUP_SIZE = 128 * 1024
"""Rows per row group of a merged file (also the most rows a merge holds in memory)."""
BATCH_SIZE = 64 * 1024

TableLike: TypeAlias = "pa.Table | pd.DataFrame"
"""A table in memory: a :class:`pyarrow.Table` or a :class:`pandas.DataFrame`."""

_UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def as_arrow(table: TableLike) -> pa.Table:
    """``table`` as a :class:`pyarrow.Table` (a DataFrame's index is dropped)."""
    if isinstance(table, pa.Table):
        return table
    if type(table).__name__ == "DataFrame" and type(table).__module__.startswith("pandas"):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise TypeError(f"expected a pyarrow.Table or pandas.DataFrame, got {type(table).__name__}")


def part_path(directory: str | Path, unit: str | int) -> Path:
    """Path of the part file of ``unit`` (integers are zero-padded to 6 digits)."""
    name = f"{unit:06d}" if isinstance(unit, int) and not isinstance(unit, bool) else str(unit)
    if not _UNIT.match(name):
        raise ValueError(f"unit {unit!r} must be letters, digits, '.', '_' or '-' (not first)")
    return Path(directory) / f"{PART_PREFIX}{name}{PART_SUFFIX}"


def atomic_target(path: Path) -> Path:
    """A new hidden temporary file beside ``path``, to be renamed onto it when complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_table_part(
    directory: str | Path, unit: str | int, table: TableLike, *, compression: str = "zstd"
) -> Path:
    """Write the rows of one unit of work as ``<directory>/part-<unit>.parquet``, atomically.

    Parameters
    ----------
    directory
        Folder of the parts (created if missing).
    unit
        Name of the unit of work: an integer (written zero-padded, so parts sort numerically)
        or a string of letters, digits, ``.``, ``_`` and ``-``.
    table
        The rows (a DataFrame's index is not written). A table with no rows is a valid part.
    compression
        Parquet compression codec.

    Returns
    -------
    Path
        The part file; an existing part of the same unit is replaced.
    """
    path = part_path(directory, unit)
    arrow = as_arrow(table)
    tmp = atomic_target(path)
    try:
        pq.write_table(arrow, tmp, compression=compression)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _natural_key(path: Path) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def table_parts(directory: str | Path) -> list[Path]:
    """Part files of ``directory`` in natural order (``part-2`` before ``part-10``)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputNotFoundError(directory, "table parts folder")
    found = directory.glob(f"{PART_PREFIX}*{PART_SUFFIX}")
    return sorted((p for p in found if p.is_file()), key=_natural_key)


def _schema(path: Path) -> tuple[pa.Schema, int]:
    try:
        meta = pq.read_metadata(path)
        return meta.schema.to_arrow_schema().remove_metadata(), int(meta.num_rows)
    except Exception as exc:
        raise FormatError(path, f"not a readable Parquet file: {exc}") from exc


def unified_schema(paths: Sequence[Path]) -> pa.Schema:
    """The schema of the merge of ``paths``: the first part's column order, unified types.

    Parts with no columns are ignored. All others must have the same column names. Types come
    from the parts that have rows (an empty part's types are often guesses, e.g. a text column
    of an empty DataFrame) and unify when they promote losslessly: nulls take any type,
    ``int32`` and ``int64`` give ``int64``, integers and floats give ``float64``.

    Raises
    ------
    FormatError
        A part is not Parquet, its columns differ from the first part's, or a column has types
        that cannot be unified (naming the parts).
    """
    found = [(p, *_schema(p)) for p in paths]
    found = [(p, s, n) for p, s, n in found if len(s.names)]
    if not found:
        return pa.schema([])
    ref_path, ref, _ = found[0]
    if len(set(ref.names)) != len(ref.names):
        raise FormatError(ref_path, f"duplicate column names in {ref.names}")
    for path, schema, _ in found[1:]:
        if set(schema.names) != set(ref.names) or len(schema.names) != len(ref.names):
            missing = [n for n in ref.names if n not in schema.names]
            extra = [n for n in schema.names if n not in ref.names]
            raise FormatError(
                path,
                f"its columns differ from those of {ref_path.name}: "
                f"missing {missing}, extra {extra}",
            )
    typed = [(p, s) for p, s, n in found if n] or [(p, s) for p, s, _ in found]
    return pa.schema([_unified_field(name, typed, ref_path.parent) for name in ref.names])


def _unified_field(name: str, schemas: Sequence[tuple[Path, pa.Schema]], where: Path) -> Any:
    types = [(p, s.field(name).type) for p, s in schemas]
    try:
        unified = pa.unify_schemas(
            [pa.schema([pa.field(name, t)]) for _, t in types], promote_options="permissive"
        )
    except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
        seen: dict[str, str] = {}
        for p, t in types:
            seen.setdefault(str(t), p.name)
        kinds = ", ".join(f"{t} in {p}" for t, p in seen.items())
        raise FormatError(
            where, f"column {name!r} has incompatible types across parts: {kinds}"
        ) from exc
    return unified.field(name)


def iter_part_batches(
    paths: Sequence[Path], schema: pa.Schema, *, batch_size: int = BATCH_SIZE
) -> Iterator[pa.RecordBatch]:
    """Record batches of every part, columns in ``schema``'s order and cast to its types."""
    for path in paths:
        try:
            pf = pq.ParquetFile(path)
            if not pf.schema_arrow.names:
                continue
            batches = pf.iter_batches(batch_size=batch_size, columns=schema.names)
            for batch in batches:
                yield from (
                    pa.Table.from_batches([batch]).select(schema.names).cast(schema).to_batches()
                )
        except (FormatError, GeneratorExit):
            raise
        except Exception as exc:
            raise FormatError(path, f"cannot read Parquet data: {exc}") from exc


def merge_table_parts(
    directory: str | Path,
    out_path: str | Path,
    *,
    row_group_size: int = ROW_GROUP_SIZE,
    compression: str = "zstd",
) -> Path:
    """Merge every ``part-*.parquet`` of ``directory`` into one Parquet file, streaming.

    Rows keep the parts' natural order (``part-2`` before ``part-10``), columns the first
    part's order. At most about ``row_group_size`` rows are held in memory. The output is
    written to a temporary file and renamed, so it is complete or absent.

    Parameters
    ----------
    directory
        Folder of the parts.
    out_path
        The merged file.
    row_group_size
        Rows per row group of the output.
    compression
        Parquet compression codec.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    InputNotFoundError
        ``directory`` does not exist.
    FormatError
        A part is unreadable, or the parts disagree on columns or types (see
        :func:`unified_schema`).
    """
    parts = table_parts(directory)
    schema = unified_schema(parts)
    if not schema.names:
        raise FormatError(directory, "no part files with columns to merge")
    out = Path(out_path)
    tmp = atomic_target(out)
    try:
        with pq.ParquetWriter(tmp, schema, compression=compression) as writer:
            pending: list[pa.RecordBatch] = []
            rows = 0
            for batch in iter_part_batches(parts, schema):
                pending.append(batch)
                rows += batch.num_rows
                while rows >= row_group_size:
                    table = pa.Table.from_batches(pending, schema=schema)
                    writer.write_table(table.slice(0, row_group_size), row_group_size)
                    rest = table.slice(row_group_size)
                    pending, rows = rest.to_batches(), rest.num_rows
            if rows:
                writer.write_table(pa.Table.from_batches(pending, schema=schema))
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def read_arrow_table(path: str | Path, *, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a Parquet table, or a folder of parts, as a :class:`pyarrow.Table`.

    Parameters
    ----------
    path
        A Parquet file, or a folder of ``part-*.parquet`` files (read as their merge).
    columns
        Only these columns, in this order.

    Raises
    ------
    InputNotFoundError
        ``path`` does not exist.
    FormatError
        The file (or a part) is not readable Parquet, or the parts disagree.
    KeyError
        A requested column is missing.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(path, "table")
    if path.is_dir():
        parts = table_parts(path)
        schema = unified_schema(parts)
        if columns is not None:  # read only those columns of each part
            _check_columns(path, columns, schema.names)
            schema = pa.schema([schema.field(c) for c in columns])
        table = pa.Table.from_batches(list(iter_part_batches(parts, schema)), schema=schema)
    else:
        if columns is not None:
            _check_columns(path, columns, _schema(path)[0].names)
        try:
            table = pq.read_table(path, columns=None if columns is None else list(columns))
        except Exception as exc:
            raise FormatError(path, f"not a readable Parquet file: {exc}") from exc
    return table


def _check_columns(path: Path, columns: Sequence[str], names: Sequence[str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise KeyError(f"{path}: no column(s) {missing}")


def read_table(path: str | Path, *, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """:func:`read_arrow_table` as a :class:`pandas.DataFrame` (same arguments and errors)."""
    frame: pd.DataFrame = read_arrow_table(path, columns=columns).to_pandas()
    return frame
