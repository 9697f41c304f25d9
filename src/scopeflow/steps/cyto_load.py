"""Cytometry input: where the images are, how they are batched, and loading one batch.

Layouts (``input.layout``):

``channel_stacks``
    One multi-page TIFF per channel, page *i* of every file is image *i*
    (``pattern: ifc/ch{c}.tif``, ``{c}`` = channel index, or ``{channel}`` = channel name).
``array``
    One ``N x C x H x W`` array: Zarr, OME-Zarr or a TIFF hyperstack (``path: images.zarr``).
``fields``
    One file per image holding all channels as ``C x H x W`` (TIFF, OME-TIFF, CZI, OME-Zarr);
    ``pattern`` is a glob (``fields/*.tif``).
``files``
    One file per image and channel, named by a pattern with the groups ``{id}`` and
    ``{channel}`` (SCIP's ``{id}_Ch{channel}.tif``).

A unit of work is a batch of consecutive images. A batch never loads partially: an image that
cannot be read is reported with its file and the reason, and the rest of the batch is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from scopeflow.core import ConfigError, FormatError, InputNotFoundError
from scopeflow.core.config import StrictModel
from scopeflow.io import open_image, read_tiff, read_tiff_planes, tiff_stack_shape


class CytoInput(StrictModel):
    """Where the images of a cytometry run are (``input:`` in config.yaml)."""

    layout: Literal["channel_stacks", "array", "fields", "files"] = Field(
        "channel_stacks", description="how images and channels are laid out in files"
    )
    format: Literal["tiff", "ome-tiff", "zarr", "ome-zarr", "czi"] | None = Field(
        None, description="file format; by file suffix when not given"
    )
    pattern: str | None = Field(
        None,
        description="channel_stacks: file per channel with {c} or {channel}; fields: glob; "
        "files: pattern with {id} and {channel}",
    )
    path: str | None = Field(None, description="array layout: the N x C x H x W array")

    @model_validator(mode="after")
    def _needs(self) -> CytoInput:
        if self.layout == "array" and not self.path:
            raise ValueError("layout 'array' needs 'path'")
        if self.layout != "array" and not self.pattern:
            raise ValueError(f"layout {self.layout!r} needs 'pattern'")
        if self.layout == "files" and not (
            "{id}" in (self.pattern or "") and "{channel}" in (self.pattern or "")
        ):
            raise ValueError("layout 'files' needs a pattern with {id} and {channel}")
        return self


@dataclass
class LoadedBatch:
    """Images of one batch; unreadable images are listed in ``errors`` and left out.

    ``indices`` are the images' positions in the whole input (0-based), so that a batch with an
    unreadable image still numbers the others right.
    """

    image_ids: list[str]
    images: NDArray[Any]  # (n, C, H, W)
    sources: list[str]
    indices: list[int]
    errors: list[dict[str, str]] = field(default_factory=list)


@dataclass
class CytoSource:
    """The images of a run, enumerated once (cheap: metadata only)."""

    spec: CytoInput
    base: Path
    channels: list[str]

    def _resolve(self, rel: str) -> Path:
        path = Path(rel)
        return path if path.is_absolute() else self.base / path

    @cached_property
    def _stack_files(self) -> list[Path]:
        assert self.spec.pattern is not None
        files = [
            self._resolve(self.spec.pattern.format(c=i, channel=name))
            for i, name in enumerate(self.channels)
        ]
        for f in files:
            if not f.exists():
                raise InputNotFoundError(f, "channel stack")
        return files

    def _file_regex(self) -> tuple[re.Pattern[str], str]:
        """The ``files`` pattern as a regex with ``id`` and ``channel`` groups, and as a glob."""
        assert self.spec.pattern is not None
        regex = re.compile(
            re.escape(self.spec.pattern)
            .replace(re.escape("{id}"), r"(?P<id>.+?)")
            .replace(re.escape("{channel}"), r"(?P<channel>[^/]+?)")
            + "$"
        )
        return regex, self.spec.pattern.replace("{id}", "*").replace("{channel}", "*")

    @cached_property
    def _per_image(self) -> list[tuple[str, list[Path]]]:
        """``(image id, files)`` for the fields and files layouts, sorted by id."""
        assert self.spec.pattern is not None
        if self.spec.layout == "fields":
            files = sorted(p for p in self.base.glob(self.spec.pattern) if p.exists())
            if not files:
                raise InputNotFoundError(self.base / self.spec.pattern, "images matching")
            return [(_stem(p), [p]) for p in files]
        regex, glob = self._file_regex()
        found: dict[str, dict[str, Path]] = {}
        for p in self.base.glob(glob):
            m = regex.match(_rel(p, self.base))
            if m:
                found.setdefault(m["id"], {})[m["channel"]] = p
        if not found:
            raise InputNotFoundError(self.base / glob, "images matching")
        out = []
        for image_id in sorted(found, key=_natural):
            by_channel = found[image_id]
            keys = sorted(by_channel, key=_natural)
            if len(keys) != len(self.channels):
                raise FormatError(
                    next(iter(by_channel.values())),
                    f"image {image_id!r} has channels {keys}, expected {len(self.channels)}",
                )
            out.append((image_id, [by_channel[k] for k in keys]))
        return out

    @cached_property
    def count(self) -> int:
        """Number of images."""
        if self.spec.layout == "channel_stacks":
            if self._stacks_are_tiff:
                return tiff_stack_shape(self._stack_files[0])[0]
            with open_image(self._stack_files[0], self.spec.format) as reader:
                return reader.metadata(0).shape[0]
        if self.spec.layout == "array":
            assert self.spec.path is not None
            with open_image(self._resolve(self.spec.path), self.spec.format) as reader:
                meta = reader.metadata(0)
                if len(meta.shape) != 4:
                    raise FormatError(
                        self._resolve(self.spec.path),
                        f"expected an N x C x H x W array, got axes {meta.axes} {meta.shape}",
                    )
                return meta.shape[0]
        return len(self._per_image)

    def batches(self, batch_size: int) -> list[tuple[int, int]]:
        """``(start, stop)`` image index ranges of each batch."""
        return [(s, min(s + batch_size, self.count)) for s in range(0, self.count, batch_size)]

    def load(self, start: int, stop: int, step: int = 1) -> LoadedBatch:
        """Load images ``start, start + step, … < stop`` as ``(n, C, H, W)``.

        Only those images are read. Unreadable images are left out and reported in
        :attr:`LoadedBatch.errors`.
        """
        wanted = range(start, stop, step)
        if self.spec.layout == "channel_stacks":
            return self._load_stacks(wanted)
        if self.spec.layout == "array":
            assert self.spec.path is not None
            path = self._resolve(self.spec.path)
            with open_image(path, self.spec.format) as reader:
                data = reader.to_dask(0)[start:stop:step].compute(scheduler="sync")
            ids = [str(i) for i in wanted]
            return LoadedBatch(
                ids, np.asarray(data), [f"{path}[{i}]" for i in wanted], list(wanted)
            )
        return self._load_per_image(wanted)

    @cached_property
    def _stacks_are_tiff(self) -> bool:
        tiff = (".tif", ".tiff")
        return self.spec.format in (None, "tiff") and all(
            f.suffix.lower() in tiff and not f.name.lower().endswith((".ome.tif", ".ome.tiff"))
            for f in self._stack_files
        )

    def _read_stack(self, path: Path, wanted: range) -> NDArray[Any]:
        if self._stacks_are_tiff:  # one page per image: read just these pages
            return read_tiff_planes(path, wanted.start, wanted.stop, wanted.step)
        with open_image(path, self.spec.format) as reader:
            sl = slice(wanted.start, wanted.stop, wanted.step)
            return np.asarray(reader.to_dask(0)[sl].compute(scheduler="sync"))

    def _load_stacks(self, wanted: range) -> LoadedBatch:
        arrays = []
        for f in self._stack_files:
            try:
                arrays.append(self._read_stack(f, wanted))
            except FormatError:
                return self._load_stack_pages(wanted)
        ids = [str(i) for i in wanted]
        sources = [f"{self._stack_files[0]}[page {i}]" for i in wanted]
        return LoadedBatch(ids, np.stack(arrays, axis=1), sources, list(wanted))

    def _load_stack_pages(self, wanted: range) -> LoadedBatch:
        """Page by page, to isolate unreadable pages (slow path after a failure)."""
        good: list[NDArray[Any]] = []
        ids, sources, indices, errors = [], [], [], []
        for i in wanted:
            try:
                planes = [self._read_stack(f, range(i, i + 1))[0] for f in self._stack_files]
                good.append(np.stack(planes))
                ids.append(str(i))
                sources.append(f"{self._stack_files[0]}[page {i}]")
                indices.append(i)
            except FormatError as exc:
                errors.append({"image_id": str(i), "file": str(exc.path), "error": exc.problem})
        images = _stack_or_empty(good, len(self.channels))
        return LoadedBatch(ids, images, sources, indices, errors)

    def _load_per_image(self, wanted: range) -> LoadedBatch:
        good: list[NDArray[Any]] = []
        ids, sources, indices, errors = [], [], [], []
        for i in wanted:
            image_id, files = self._per_image[i]
            try:
                planes = [read_planes(f, self.spec.format) for f in files]
                image = np.concatenate(planes, axis=0)
                if image.shape[0] != len(self.channels):
                    raise FormatError(
                        files[0], f"has {image.shape[0]} channels, expected {len(self.channels)}"
                    )
                if good and image.shape != good[0].shape:
                    raise FormatError(
                        files[0], f"shape {image.shape} differs from the batch's {good[0].shape}"
                    )
                good.append(image)
                ids.append(image_id)
                sources.append(str(files[0]))
                indices.append(i)
            except (FormatError, InputNotFoundError) as exc:
                path = getattr(exc, "path", files[0])
                errors.append({"image_id": image_id, "file": str(path), "error": str(exc)})
        images = _stack_or_empty(good, len(self.channels))
        return LoadedBatch(ids, images, sources, indices, errors)


def discover_channels(spec: CytoInput, base: Path) -> list[str]:
    """Channel names from the input itself, for a config that does not list them.

    ``array`` and ``fields``: the first file's metadata (OME / CZI channel names, Zarr
    ``channels`` attribute; generic ``C0``, ``C1``, … where the file has none). ``files``: the
    ``{channel}`` parts of the matching file names, in natural order. ``channel_stacks``: the
    files carry no names, so the config must list them.

    Raises
    ------
    ConfigError
        The names cannot be found (layout, or no readable input).
    """

    def fail(why: str) -> ConfigError:
        return ConfigError("config", [("channels", f"not given, and {why}; list them")])

    try:
        if spec.layout == "files":
            source = CytoSource(spec, base, [])
            assert spec.pattern is not None
            regex, glob = source._file_regex()
            names = {m["channel"] for p in base.glob(glob) if (m := regex.match(_rel(p, base)))}
            if not names:
                raise fail(f"no file matches {spec.pattern!r} under {base}")
            return sorted(names, key=_natural)
        if spec.layout == "array":
            assert spec.path is not None
            path = CytoSource(spec, base, [])._resolve(spec.path)
        elif spec.layout == "fields":
            assert spec.pattern is not None
            files = sorted(base.glob(spec.pattern))
            if not files:
                raise fail(f"no file matches {spec.pattern!r} under {base}")
            path = files[0]
        else:
            raise fail("channel stacks carry no channel names")
        with open_image(path, spec.format) as reader:
            meta = reader.metadata(0)
    except (FormatError, InputNotFoundError) as exc:
        raise fail(f"the input cannot be read ({exc})") from None
    return list(meta.channel_names)


def _rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def read_planes(path: Path, fmt: str | None) -> NDArray[Any]:
    """A file's pixels as ``(C, H, W)``.

    A 2-D image is one channel. Otherwise the one axis besides Y and X longer than 1 is the
    channel axis, whatever the file calls it (a plain multi-page TIFF's pages read as Z).
    """
    if fmt in (None, "tiff", "ome-tiff") and path.suffix.lower() in (".tif", ".tiff"):
        data, axes = read_tiff(path)  # small files: eager, ~50x cheaper than a lazy reader
        shape = data.shape
    else:
        with open_image(path, fmt) as reader:
            meta = reader.metadata(0)
            data = np.asarray(reader.to_dask(0).compute(scheduler="sync"))
        axes, shape = meta.axes, meta.shape
    if "S" in axes:
        raise FormatError(path, "RGB images are not supported as cytometry channels")
    extra = [i for i, ax in enumerate(axes) if ax not in "YX" and shape[i] > 1]
    if len(extra) > 1:
        raise FormatError(path, f"expected one image of C x H x W, got axes {axes} {shape}")
    singles = tuple(i for i, ax in enumerate(axes) if ax not in "YX" and i not in extra)
    data = data.squeeze(axis=singles) if singles else data
    return data if extra else data[None]


def _stack_or_empty(images: list[NDArray[Any]], channels: int) -> NDArray[Any]:
    return np.stack(images) if images else np.zeros((0, channels, 0, 0), dtype=np.uint16)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _natural(key: str) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


def check_channels(channels: list[str], source: str) -> None:
    """Channel names must be unique and non-empty."""
    if not channels or len(set(channels)) != len(channels):
        raise ConfigError(source, [("channels", "expected a list of unique channel names")])
