"""Feature tables: Parquet parts per unit of work, a streaming merge, and exports.

The cytometry pipeline measures objects batch by batch; each batch (unit of work) writes its
rows with :func:`write_table_part`, the ``write`` step merges them with
:func:`merge_table_parts`, and the exports turn the merged table into what downstream tools
read: CSV, FCS 3.1 (FlowJo, FCS Express, FlowKit, flowCore) and AnnData (scanpy).

Example
-------
>>> import pandas as pd
>>> from scopeflow.io.tables import merge_table_parts, read_table, write_table_part
>>> for unit in range(3):  # doctest: +SKIP
...     write_table_part("features", unit, pd.DataFrame({"image_id": [unit], "area": [1.0]}))
>>> merge_table_parts("features", "features.parquet")  # doctest: +SKIP
"""

from scopeflow.io._tables_export import (
    OBS_NAMES,
    OBS_PREFIXES,
    TableSource,
    export_anndata,
    export_csv,
    export_fcs,
)
from scopeflow.io._tables_parquet import (
    TableLike,
    merge_table_parts,
    part_path,
    read_arrow_table,
    read_table,
    table_parts,
    unified_schema,
    write_table_part,
)

__all__ = [
    "OBS_NAMES",
    "OBS_PREFIXES",
    "TableLike",
    "TableSource",
    "export_anndata",
    "export_csv",
    "export_fcs",
    "merge_table_parts",
    "part_path",
    "read_arrow_table",
    "read_table",
    "table_parts",
    "unified_schema",
    "write_table_part",
]
