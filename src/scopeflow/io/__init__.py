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
from scopeflow.io._czi import CziReader
from scopeflow.io._tiff import OmeTiffReader, TiffReader

__all__ = [
    "AXES_ORDER",
    "CziReader",
    "ImageMetadata",
    "ImageReader",
    "OmeTiffReader",
    "TiffReader",
    "open_image",
    "reader_class",
    "reader_formats",
    "register_reader",
]
