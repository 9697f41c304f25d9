"""The shared test suite every image reader passes (subclass :class:`ReaderSuite`).

A subclass sets ``reader_cls`` and provides two fixtures:

- ``sample``: a :class:`ReaderSample` — a file written for the test and what must be read back;
- ``corrupt``: a path to a damaged file of the same format (e.g. truncated), which must raise
  :class:`~scopeflow.core.FormatError` naming the file, never return partial data.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import dask.array as da
import numpy as np
import pytest

from scopeflow.core import FormatError, InputNotFoundError, ScopeflowError
from scopeflow.io._base import ImageReader, open_image, reader_class


@dataclass
class ReaderSample:
    """A test file and its expected content, one entry per series."""

    path: Path
    arrays: list[np.ndarray[Any, Any]]
    axes: list[str]
    voxel_size: list[tuple[float, float, float]] | None = None
    channel_names: list[tuple[str, ...]] | None = None
    extra_checks: dict[str, Any] = field(default_factory=dict)


class ReaderSuite:
    """Tests every reader must pass."""

    reader_cls: ClassVar[type[ImageReader]]

    def test_registry_picks_this_reader(self, sample: ReaderSample) -> None:
        assert reader_class(sample.path) is self.reader_cls
        with open_image(sample.path) as reader:
            assert isinstance(reader, self.reader_cls)

    def test_series_and_metadata(self, sample: ReaderSample) -> None:
        with self.reader_cls(sample.path) as reader:
            assert reader.series_count == len(sample.arrays)
            for i, expected in enumerate(sample.arrays):
                meta = reader.metadata(i)
                assert meta.series == i
                assert meta.axes == sample.axes[i]
                assert meta.shape == expected.shape
                assert meta.dtype == expected.dtype
                if sample.voxel_size is not None:
                    np.testing.assert_allclose(meta.voxel_size, sample.voxel_size[i], rtol=1e-6)
                if sample.channel_names is not None:
                    assert meta.channel_names == sample.channel_names[i]
                assert len(meta.channel_names) == meta.size("C")

    def test_pixels_round_trip(self, sample: ReaderSample) -> None:
        with self.reader_cls(sample.path) as reader:
            for i, expected in enumerate(sample.arrays):
                arr = reader.to_dask(i)
                assert isinstance(arr, da.Array)
                assert arr.shape == expected.shape
                assert arr.dtype == expected.dtype
                np.testing.assert_array_equal(arr.compute(), expected)
                # a slice reads only what it needs and gives the same pixels
                index = tuple(slice(s // 2, s // 2 + 1) for s in expected.shape)
                np.testing.assert_array_equal(arr[index].compute(), expected[index])

    def test_lazy_array_survives_pickling(self, sample: ReaderSample) -> None:
        # arrays go to Dask workers in other processes
        with self.reader_cls(sample.path) as reader:
            arr = reader.to_dask(0)
        clone = pickle.loads(pickle.dumps(arr))
        np.testing.assert_array_equal(clone.compute(), sample.arrays[0])

    def test_series_out_of_range(self, sample: ReaderSample) -> None:
        with self.reader_cls(sample.path) as reader, pytest.raises(IndexError, match="series"):
            reader.metadata(len(sample.arrays))

    def test_missing_file(self, tmp_path: Path, sample: ReaderSample) -> None:
        missing = tmp_path / ("absent" + "".join(sample.path.suffixes))
        with pytest.raises(InputNotFoundError, match="absent"):
            self.reader_cls(missing)

    def test_corrupt_file_names_file_and_problem(self, corrupt: Path) -> None:
        with pytest.raises(FormatError) as info, self.reader_cls(corrupt) as reader:
            for i in range(reader.series_count):
                reader.to_dask(i).compute()
        assert str(corrupt) in str(info.value)
        assert isinstance(info.value, ScopeflowError)

    def test_not_this_format(self, tmp_path: Path, sample: ReaderSample) -> None:
        fake = tmp_path / ("fake" + "".join(sample.path.suffixes))
        if sample.path.is_dir():
            fake.mkdir()
            (fake / "README").write_text("not an image\n")
        else:
            fake.write_text("this is not an image file\n" * 10)
        with pytest.raises(FormatError, match="fake"), self.reader_cls(fake) as reader:
            reader.to_dask(0).compute()
