"""Layer 2 I/O: lazy readers (TIFF/OME-TIFF, CZI, OME-Zarr, BigDataViewer) and writers.

Readers are found by format name or file suffix through one registry
(:func:`open_image`, :func:`reader_class`); each returns lazy dask arrays plus
:class:`ImageMetadata`. Importing this package registers every reader.
"""

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
from scopeflow.io._tiff import OmeTiffReader, TiffReader
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
    read_table,
    write_table_part,
)

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
    "read_spimdata",
    "read_table",
    "reader_class",
    "reader_formats",
    "register_reader",
    "write_bdv_master",
    "write_bdv_partition",
    "write_ome_zarr",
    "write_ome_zarr_region",
    "write_spimdata",
    "write_table_part",
]
