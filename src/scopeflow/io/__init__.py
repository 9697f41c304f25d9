"""Layer 2 I/O: lazy readers (TIFF/OME-TIFF, CZI, OME-Zarr, BigDataViewer) and writers.

Readers are found by format name or file suffix through one registry
(:func:`open_image`, :func:`reader_class`); each returns lazy dask arrays plus
:class:`ImageMetadata`. Submodules load on first use (PEP 562), so that a worker reading
TIFF stacks does not import Zarr, HDF5 or dask.array; every reader is registered the first
time the registry is asked.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scopeflow.io._base import (
        AXES_ORDER,
        ImageMetadata,
        ImageReader,
        open_image,
        reader_class,
        reader_formats,
        register_reader,
    )
    from scopeflow.io._bdv_hdf5 import (
        PartitionInfo,
        cells_path,
        partition_filename,
        write_bdv_master,
        write_bdv_partition,
    )
    from scopeflow.io._bdv_reader import BdvReader
    from scopeflow.io._bdv_xml import read_spimdata, write_spimdata
    from scopeflow.io._czi import CziReader
    from scopeflow.io._omezarr import (
        OmeZarrReader,
        ZarrReader,
        create_ome_zarr,
        pyramid_steps,
        write_ome_zarr,
        write_ome_zarr_region,
    )
    from scopeflow.io._pyramid import Pyramid, propose_mipmaps
    from scopeflow.io._tiff import OmeTiffReader, TiffReader, read_tiff
    from scopeflow.io._tiff_stack import read_tiff_planes, tiff_stack_shape
    from scopeflow.io.spimdata import (
        AttributeValue,
        Partition,
        SpimData,
        ViewSetup,
        ViewTransform,
        merge_spimdata,
    )
    from scopeflow.io.tables import (
        export_anndata,
        export_csv,
        export_fcs,
        merge_table_parts,
        read_arrow_table,
        read_table,
        write_table_part,
    )

_WHERE = {
    "AXES_ORDER": "scopeflow.io._base",
    "AttributeValue": "scopeflow.io.spimdata",
    "BdvReader": "scopeflow.io._bdv_reader",
    "CziReader": "scopeflow.io._czi",
    "ImageMetadata": "scopeflow.io._base",
    "ImageReader": "scopeflow.io._base",
    "OmeTiffReader": "scopeflow.io._tiff",
    "OmeZarrReader": "scopeflow.io._omezarr",
    "Partition": "scopeflow.io.spimdata",
    "PartitionInfo": "scopeflow.io._bdv_hdf5",
    "Pyramid": "scopeflow.io._pyramid",
    "SpimData": "scopeflow.io.spimdata",
    "TiffReader": "scopeflow.io._tiff",
    "ViewSetup": "scopeflow.io.spimdata",
    "ViewTransform": "scopeflow.io.spimdata",
    "ZarrReader": "scopeflow.io._omezarr",
    "cells_path": "scopeflow.io._bdv_hdf5",
    "create_ome_zarr": "scopeflow.io._omezarr",
    "export_anndata": "scopeflow.io._tables_export",
    "export_csv": "scopeflow.io._tables_export",
    "export_fcs": "scopeflow.io._tables_export",
    "merge_spimdata": "scopeflow.io.spimdata",
    "merge_table_parts": "scopeflow.io._tables_parquet",
    "open_image": "scopeflow.io._base",
    "partition_filename": "scopeflow.io._bdv_hdf5",
    "propose_mipmaps": "scopeflow.io._pyramid",
    "pyramid_steps": "scopeflow.io._omezarr",
    "read_spimdata": "scopeflow.io._bdv_xml",
    "read_arrow_table": "scopeflow.io._tables_parquet",
    "read_table": "scopeflow.io._tables_parquet",
    "read_tiff": "scopeflow.io._tiff",
    "read_tiff_planes": "scopeflow.io._tiff_stack",
    "reader_class": "scopeflow.io._base",
    "reader_formats": "scopeflow.io._base",
    "register_reader": "scopeflow.io._base",
    "tiff_stack_shape": "scopeflow.io._tiff_stack",
    "write_bdv_master": "scopeflow.io._bdv_hdf5",
    "write_bdv_partition": "scopeflow.io._bdv_hdf5",
    "write_ome_zarr": "scopeflow.io._omezarr",
    "write_ome_zarr_region": "scopeflow.io._omezarr",
    "write_spimdata": "scopeflow.io._bdv_xml",
    "write_table_part": "scopeflow.io._tables_parquet",
}

__all__ = [
    "AXES_ORDER",
    "AttributeValue",
    "BdvReader",
    "CziReader",
    "ImageMetadata",
    "ImageReader",
    "OmeTiffReader",
    "OmeZarrReader",
    "Partition",
    "PartitionInfo",
    "Pyramid",
    "SpimData",
    "TiffReader",
    "ViewSetup",
    "ViewTransform",
    "ZarrReader",
    "cells_path",
    "create_ome_zarr",
    "export_anndata",
    "export_csv",
    "export_fcs",
    "merge_spimdata",
    "merge_table_parts",
    "open_image",
    "partition_filename",
    "propose_mipmaps",
    "pyramid_steps",
    "read_arrow_table",
    "read_spimdata",
    "read_table",
    "read_tiff",
    "read_tiff_planes",
    "reader_class",
    "reader_formats",
    "register_reader",
    "tiff_stack_shape",
    "write_bdv_master",
    "write_bdv_partition",
    "write_ome_zarr",
    "write_ome_zarr_region",
    "write_spimdata",
    "write_table_part",
]


def __getattr__(name: str) -> Any:
    """Import the submodule defining ``name`` on first access."""
    try:
        module = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
