"""Exports of feature tables: CSV, FCS 3.1 (flow-cytometry tools) and AnnData (``.h5ad``).

Every export takes a *source*: a Parquet file, a folder of ``part-*.parquet`` files (read as
their merge), a :class:`pyarrow.Table` or a :class:`pandas.DataFrame`. Outputs are written to a
temporary file in the destination folder and renamed, so they are complete or absent.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from scopeflow.core import FormatError, InputNotFoundError
from scopeflow.io._tables_parquet import (
    BATCH_SIZE,
    TableLike,
    as_arrow,
    atomic_target,
    iter_part_batches,
    table_parts,
    unified_schema,
)

TableSource: TypeAlias = "str | Path | TableLike"
"""A Parquet file, a folder of parts, or a table in memory."""

OBS_NAMES = (
    "image_id",
    "imagenumber",
    "objectnumber",
    "object",
    "object_id",
    "cell_id",
    "label",
    "number_object_number",
)
"""Column names (case-insensitive) that :func:`export_anndata` puts in ``obs`` by default."""
OBS_PREFIXES = ("Metadata_", "Location_", "Parent_", "Children_")
"""Column name prefixes that :func:`export_anndata` puts in ``obs`` by default."""


@dataclass(frozen=True)
class _Opened:
    """A table source opened once: its schema, row count, and batches of any columns."""

    schema: pa.Schema
    rows: int
    batches: Callable[[pa.Schema], Iterator[pa.RecordBatch]]

    def select(self, columns: Sequence[str] | None) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """Schema and record batches of only ``columns`` (all if None), in that order."""
        if columns is None:
            return self.schema, self.batches(self.schema)
        missing = [c for c in columns if c not in self.schema.names]
        if missing:
            raise KeyError(f"no column(s) {missing} in the table (it has {self.schema.names})")
        sub = pa.schema([self.schema.field(c) for c in columns])
        return sub, self.batches(sub)


def _open(source: TableSource) -> _Opened:
    """Open a Parquet file, a folder of parts or an in-memory table (metadata only)."""
    if not isinstance(source, str | Path):
        table = as_arrow(source)
        return _Opened(
            table.schema.remove_metadata(),
            table.num_rows,
            lambda sub: iter(table.select(sub.names).to_batches(max_chunksize=BATCH_SIZE)),
        )
    path = Path(source)
    if not path.exists():
        raise InputNotFoundError(path, "table")
    if path.is_dir():
        parts = table_parts(path)
        schema = unified_schema(parts)
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in parts)
        return _Opened(schema, rows, lambda sub: iter_part_batches(parts, sub))
    try:
        pf = pq.ParquetFile(path)
        schema, rows = pf.schema_arrow.remove_metadata(), pf.metadata.num_rows
    except Exception as exc:
        raise FormatError(path, f"not a readable Parquet file: {exc}") from exc
    return _Opened(schema, rows, lambda sub: _file_batches(path, pf, sub.names))


def _file_batches(path: Path, pf: Any, columns: list[str]) -> Iterator[pa.RecordBatch]:
    try:
        yield from pf.iter_batches(batch_size=BATCH_SIZE, columns=columns)
    except Exception as exc:
        raise FormatError(path, f"cannot read Parquet data: {exc}") from exc


def is_numeric(dtype: pa.DataType) -> bool:
    """Whether a column of ``dtype`` can be exported as numbers (integers, floats, booleans)."""
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)
    )


def _as_float(column: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A numeric Arrow column as float64, nulls as NaN."""
    out: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(
        pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False), dtype=np.float64
    )
    return out


def _numeric_columns(schema: pa.Schema, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        names = [f.name for f in schema if is_numeric(f.type)]
    else:
        bad = [c for c in columns if not is_numeric(schema.field(c).type)]
        if bad:
            raise ValueError(f"columns {bad} are not numeric")
        names = list(columns)
    if not names:
        raise ValueError("the table has no numeric columns")
    return names


def export_csv(
    source: TableSource,
    out_path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    delimiter: str = ",",
) -> Path:
    """Write a table as CSV with a header row, streaming (nulls are empty fields).

    Parameters
    ----------
    source
        Parquet file, folder of parts, or table in memory.
    out_path
        The CSV file.
    columns
        Only these columns, in this order (default: all).
    delimiter
        Field separator.

    Returns
    -------
    Path
        ``out_path``.
    """
    schema, batches = _open(source).select(columns)
    out = Path(out_path)
    tmp = atomic_target(out)
    try:
        options = pacsv.WriteOptions(delimiter=delimiter)
        with pacsv.CSVWriter(str(tmp), schema, write_options=options) as writer:
            for batch in batches:
                writer.write_batch(batch)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def export_fcs(
    source: TableSource,
    out_path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write the numeric columns of a table as an FCS 3.1 list-mode file (float32 parameters).

    One event per row, one parameter per column (``$PnN`` = the column name, commas replaced by
    ``_``; ``$PnR`` = the column's maximum, rounded up). Non-numeric columns are left out;
    booleans become 0/1 and nulls NaN. Written with :mod:`flowio`; FlowJo, FCS Express,
    FlowKit and flowCore read this layout.

    Parameters
    ----------
    source
        Parquet file, folder of parts, or table in memory.
    out_path
        The ``.fcs`` file.
    columns
        Numeric columns to export, in this order (default: every numeric column).
    metadata
        Extra TEXT keywords (e.g. ``{"$CYT": "scopeflow"}``).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    ValueError
        A requested column is not numeric, or there is no numeric column.
    """
    opened = _open(source)
    names = _numeric_columns(opened.schema, columns)
    _, batches = opened.select(names)
    rows = opened.rows
    events = np.empty((rows, len(names)), dtype=np.float32)
    start = 0
    for batch in batches:
        stop = start + batch.num_rows
        for j in range(len(names)):
            events[start:stop, j] = _as_float(batch.column(j))
        start = stop
    keywords = {str(k): str(v) for k, v in (metadata or {}).items()}
    for j in range(len(names)):
        top = float(np.nanmax(events[:, j])) if rows and not np.isnan(events[:, j]).all() else 0.0
        keywords[f"p{j + 1}r"] = str(max(1, math.ceil(top)) if math.isfinite(top) else 262144)
    labels = _unique([n.replace(",", "_") for n in names])
    data = array("f")
    data.frombytes(np.ascontiguousarray(events, dtype="<f4").data.cast("B"))
    out = Path(out_path)
    tmp = atomic_target(out)
    try:
        with tmp.open("wb") as fh:
            import flowio

            flowio.create_fcs(fh, data, labels, metadata_dict=keywords)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}_{k}")
    return out


def default_obs(name: str, dtype: pa.DataType) -> bool:
    """Whether :func:`export_anndata` puts column ``name`` in ``obs`` by default."""
    return not is_numeric(dtype) or name.lower() in OBS_NAMES or name.startswith(OBS_PREFIXES)


def export_anndata(
    source: TableSource,
    out_path: str | Path,
    *,
    obs_columns: Sequence[str] | None = None,
    dtype: Any = np.float32,
) -> Path:
    """Write a table as AnnData (``.h5ad``): features in ``X``, identifiers in ``obs``.

    Parameters
    ----------
    source
        Parquet file, folder of parts, or table in memory.
    out_path
        The ``.h5ad`` file.
    obs_columns
        Columns for ``obs`` (per-object annotations). Default: identifiers and metadata --
        names in :data:`OBS_NAMES` and prefixes :data:`OBS_PREFIXES` (``image_id``,
        ``ObjectNumber``, ``Location_*``, ``Metadata_*`` ...). Non-numeric columns always go to
        ``obs``.
    dtype
        Type of ``X``.

    Returns
    -------
    Path
        ``out_path``. Every other numeric column is a variable (``var_names`` = column names);
        ``obs_names`` are the row numbers; ``Location_Center_X`` / ``_Y`` also fill
        ``obsm["spatial"]``.
    """
    schema, batches = _open(source).select(None)
    table = pa.Table.from_batches(list(batches), schema=schema)
    if obs_columns is None:
        obs = [f.name for f in schema if default_obs(f.name, f.type)]
    else:
        missing = [c for c in obs_columns if c not in schema.names]
        if missing:
            raise KeyError(f"no column(s) {missing} in the table (it has {schema.names})")
        obs = list(obs_columns)
        obs += [f.name for f in schema if not is_numeric(f.type) and f.name not in obs]
    features = [n for n in schema.names if n not in obs]
    x = np.empty((table.num_rows, len(features)), dtype=dtype)
    for j, name in enumerate(features):
        x[:, j] = _as_float(table.column(name))
    import anndata  # ≈ 2 s to import (pandas included): only when AnnData is asked for
    import pandas as pd

    frame: pd.DataFrame = table.select(obs).to_pandas()
    frame.index = pd.Index([str(i) for i in range(table.num_rows)])
    adata = anndata.AnnData(X=x, obs=frame, var=pd.DataFrame(index=pd.Index(features, dtype=str)))
    if {"Location_Center_X", "Location_Center_Y"} <= set(obs):
        adata.obsm["spatial"] = frame[["Location_Center_X", "Location_Center_Y"]].to_numpy(float)
    out = Path(out_path)
    tmp = atomic_target(out)
    try:
        adata.write_h5ad(tmp)
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out
