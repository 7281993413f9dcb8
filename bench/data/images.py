"""Images as uint8 arrays: decode, preprocess, resize, and the decoded cache.

Every adapter turns its files into ``(C, S, S)`` uint8 arrays through :func:`decode_image`
(or through its own reader, for npz volumes). :func:`cached_stack` decodes each file once per
(dataset, files, size, preprocessing) into a memory-mapped ``.npy`` under the cache folder,
and :func:`materialise` turns those arrays into the three :class:`~bench.data.Split` of a
:class:`~bench.data.LoadedDataset`, so that every later cell reuses the pixels without
decoding a file again. Augmentations act on tensors later, never here.

Preprocessing follows the MMC-AMD release (Wang et al., IEEE JBHI 2022, and its code,
github.com/li-xirong/mmc-amd): CLAHE on colour fundus photographs and a 3 x 3 median filter
on OCT B-scans, both at the source resolution, before the resize. Images are resized to a
square with Pillow's antialiased bilinear filter, without cropping (aspect ratio not kept).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFilter

from bench.data.dataset import LoadedDataset, Split
from bench.errors import ConfigError, DataError
from bench.interface import DatasetInfo

CACHE_VERSION = 1  # bump when decoding changes, so that old caches are not trusted
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
PREPROCESSING = ("none", "clahe", "median3")
SPLITS = ("train", "val", "test")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

Decoder = Callable[[Path, int], np.ndarray]  # (file, size) -> (C, size, size) uint8

log = logging.getLogger("bench.data")


# -- decoding -----------------------------------------------------------------------------


def decode_image(path: Path, size: int, channels: int, preprocessing: str = "none") -> np.ndarray:
    """``(channels, size, size)`` uint8 from an image file; 1 channel = grey, 3 = RGB."""
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB" if channels == 3 else "L")
    except DECODE_ERRORS as err:
        raise DataError(
            f"cannot decode image {path}: {err}; replace the file "
            "(`bench data verify` lists every such file)"
        ) from err
    return resize_to_chw(preprocess(image, preprocessing), size)


def decode_array(array: np.ndarray, size: int, preprocessing: str = "none") -> np.ndarray:
    """``(1, size, size)`` uint8 from a 2-D grey array (e.g. a slice of an npz volume)."""
    return resize_to_chw(preprocess(Image.fromarray(as_uint8(array)), preprocessing), size)


def as_uint8(array: np.ndarray) -> np.ndarray:
    """uint8 as is; floats in [0, 1] scaled by 255; anything else clipped to [0, 255]."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating) and array.size and float(array.max()) <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def resize_to_chw(image: Image.Image, size: int) -> np.ndarray:
    array = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


# -- preprocessing ------------------------------------------------------------------------


def preprocess(image: Image.Image, name: str) -> Image.Image:
    """Apply ``none``, ``clahe`` (on luminance for colour) or ``median3`` (per channel)."""
    if name == "none":
        return image
    if name == "median3":
        return image.filter(ImageFilter.MedianFilter(3))
    if name == "clahe":
        if image.mode == "L":
            return Image.fromarray(clahe(np.asarray(image)))
        luma, blue, red = image.convert("YCbCr").split()
        equalised = Image.fromarray(clahe(np.asarray(luma)))
        return Image.merge("YCbCr", (equalised, blue, red)).convert("RGB")
    raise ConfigError(f"unknown preprocessing {name!r}: choose one of {', '.join(PREPROCESSING)}")


def clahe(gray: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of a 2-D uint8 image.

    Zuiderveld, Graphics Gems IV (1994), with OpenCV's conventions: a ``tiles`` x ``tiles``
    grid; each tile's 256-bin histogram is clipped at ``clip_limit`` times its mean bin
    count and the excess spread evenly over all bins; each tile's CDF is a grey-level map,
    and every pixel blends the maps of its four nearest tile centres bilinearly.
    """
    gray = np.asarray(gray, dtype=np.uint8)
    height, width = gray.shape
    tile_h, tile_w = -(-height // tiles), -(-width // tiles)
    padded = np.pad(gray, ((0, tile_h * tiles - height), (0, tile_w * tiles - width)), "symmetric")
    blocks = padded.reshape(tiles, tile_h, tiles, tile_w).transpose(0, 2, 1, 3)
    blocks = blocks.reshape(tiles * tiles, tile_h * tile_w).astype(np.int64)
    offsets = 256 * np.arange(tiles * tiles)[:, None]
    hist = np.bincount((blocks + offsets).ravel(), minlength=256 * tiles * tiles)
    hist = hist.reshape(tiles, tiles, 256).astype(np.float64)
    area = tile_h * tile_w
    limit = max(1.0, clip_limit * area / 256.0)
    clipped = np.minimum(hist, limit)
    clipped += (hist - clipped).sum(axis=-1, keepdims=True) / 256.0
    lut = np.clip(np.rint(clipped.cumsum(axis=-1) * 255.0 / area), 0, 255)

    def neighbours(count: int, tile: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = (np.arange(count) + 0.5) / tile - 0.5
        low = np.floor(position)
        weight = position - low
        return (
            np.clip(low, 0, tiles - 1).astype(int),
            np.clip(low + 1, 0, tiles - 1).astype(int),
            weight,
        )

    y0, y1, wy = neighbours(height, tile_h)
    x0, x1, wx = neighbours(width, tile_w)
    y0, y1, wy = y0[:, None], y1[:, None], wy[:, None]
    top = lut[y0, x0, gray] * (1 - wx) + lut[y0, x1, gray] * wx
    bottom = lut[y1, x0, gray] * (1 - wx) + lut[y1, x1, gray] * wx
    return np.clip(np.rint(top * (1 - wy) + bottom * wy), 0, 255).astype(np.uint8)


# -- the decoded cache --------------------------------------------------------------------


def cache_path(
    sources: Sequence[Path], shape: tuple[int, ...], key: dict[str, Any], cache_dir: Path
) -> Path:
    """Where the decoded stack of ``sources`` lives; the name hashes every input of decoding."""
    stats = []
    for path in sources:
        try:
            stat = os.stat(path)
        except OSError as err:
            raise DataError(
                f"cannot read {path}: {err.strerror}; restore the file or run `bench data verify`"
            ) from err
        stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    identity = {"key": key, "shape": list(shape), "version": CACHE_VERSION, "sources": stats}
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    label = "-".join(str(key.get(part, "")) for part in ("dataset", "modality")).strip("-")
    return (
        cache_dir / "decoded" / f"{label or 'images'}-{hashlib.sha256(blob).hexdigest()[:16]}.npy"
    )


def cached_stack(
    sources: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    shape: tuple[int, int, int],
    key: dict[str, Any],
    cache_dir: Path,
    workers: int = 4,
) -> np.ndarray:
    """``(len(sources), *shape)`` uint8, memory-mapped read-only from ``cache_dir``.

    ``key`` names what else changes the pixels (dataset, modality, preprocessing); the
    file name also hashes every source's path, size and mtime, so an edited file decodes
    afresh and an unchanged one is never decoded twice. The stack is written under a
    temporary name and renamed only once complete and synced: a crash or a corrupt
    source leaves no file that a later run would trust.
    """
    expected = (len(sources), *shape)
    path = cache_path(sources, shape, key, cache_dir)
    if path.is_file():
        try:
            cached = np.load(path, mmap_mode="r")
            if cached.shape == expected and cached.dtype == np.uint8:
                return cached
        except (OSError, ValueError):
            pass
        log.warning("decoded cache %s is unreadable or stale: decoding again", path)
    _build(path, sources, decode, expected, workers)
    return np.load(path, mmap_mode="r")


def _build(
    path: Path,
    sources: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    expected: tuple[int, ...],
    workers: int,
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        _fill(tmp, sources, decode, expected, workers)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fill(
    tmp: str,
    sources: Sequence[Path],
    decode: Callable[[Path], np.ndarray],
    expected: tuple[int, ...],
    workers: int,
) -> None:
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=expected)

    def fill(index: int) -> None:
        array = decode(sources[index])
        if array.shape != expected[1:] or array.dtype != np.uint8:
            raise DataError(
                f"{sources[index]} decoded to {array.dtype} {array.shape}, "
                f"expected uint8 {expected[1:]}: check the file"
            )
        out[index] = array

    pool = ThreadPoolExecutor(max_workers=max(1, min(workers, os.cpu_count() or 1)))
    try:
        for future in [pool.submit(fill, i) for i in range(len(sources))]:
            future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    out.flush()


def materialise(
    info: DatasetInfo,
    splits: dict[str, tuple[list[tuple[Path, ...]], list[int]]],
    decoders: Sequence[Decoder],
    key: dict[str, Any],
    cache_dir: Path,
) -> LoadedDataset:
    """Three splits of uint8 tensors from per-split (sources per sample, label indices).

    Each modality's distinct files are decoded once into one cached stack (a fundus shared
    by several OCT B-scans is decoded once); each split copies its rows out of the
    memory map into RAM, so the returned tensors are ordinary writable tensors.
    """
    size = info.image_size
    tensors: dict[str, list[torch.Tensor]] = {name: [] for name in SPLITS}
    for m, (modality, channels) in enumerate(zip(info.modalities, info.channels, strict=True)):
        files = sorted({sources[m] for name in SPLITS for sources in splits[name][0]})
        row = {path: i for i, path in enumerate(files)}
        stack = cached_stack(
            files,
            lambda path, decode=decoders[m]: decode(path, size),
            (channels, size, size),
            {**key, "dataset": info.name, "modality": modality},
            cache_dir,
        )
        for name in SPLITS:
            rows = np.fromiter((row[s[m]] for s in splits[name][0]), dtype=np.int64)
            tensors[name].append(torch.from_numpy(np.array(stack[rows])))
    parts = {
        name: Split(tuple(tensors[name]), torch.tensor(splits[name][1], dtype=torch.long))
        for name in SPLITS
    }
    return LoadedDataset(info, parts["train"], parts["val"], parts["test"])


# -- finding files ------------------------------------------------------------------------


class CaseInsensitiveFinder:
    """Finds a file whose name may differ in case from the index (``Nel026.jpg``).

    Each folder is listed once per finder; an exact match wins, then the first name,
    in sorted order, that equals it ignoring case.
    """

    def __init__(self) -> None:
        self._listings: dict[Path, dict[str, str]] = {}

    def find(self, path: Path) -> Path | None:
        if path.is_file():
            return path
        folder = path.parent
        if folder not in self._listings:
            try:
                names = sorted(os.listdir(folder))
            except OSError:
                names = []
            listing: dict[str, str] = {}
            for name in names:
                listing.setdefault(name.lower(), name)
            self._listings[folder] = listing
        name = self._listings[folder].get(path.name.lower())
        return folder / name if name is not None and (folder / name).is_file() else None


def image_files(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (any case of suffix), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
