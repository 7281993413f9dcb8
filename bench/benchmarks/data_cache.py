"""One epoch read from the image files (decode + resize each time) vs from the decoded cache.

    .venv/bin/python -m bench.benchmarks.data_cache [--pairs 500] [--source 448] [--size 224]

Writes a csv-manifest dataset of ``--pairs`` pairs of ``--source`` px JPEGs (a colour and a
grey image per pair, smooth random content like a photograph, quality 90) in a temporary
folder, then times, once each:

- files: one epoch decoding and resizing every image in batches of 32, one thread (what a
  loader without a cache does every epoch);
- build: the first ``load_dataset`` of the ``csv`` card, which decodes every file into the
  memory-mapped cache (small thread pool) and returns the splits;
- cache: one epoch of the same batches copied out of the memory-mapped ``.npy`` stacks
  (warm page cache, as in every epoch after the first);
- reload: a second ``load_dataset`` (another cell or process): scan + copy out of the cache.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from bench.data import load_dataset
from bench.data.images import decode_image
from bench.spec import DatasetRef

BATCH = 32


def write_pairs(folder: Path, pairs: int, source: int) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(pairs):
        for name, mode in (("m1", "RGB"), ("m2", "L")):
            coarse = rng.integers(0, 256, (12, 12, 3) if mode == "RGB" else (12, 12), np.uint8)
            image = Image.fromarray(coarse).resize((source, source), Image.Resampling.BICUBIC)
            grain = rng.normal(0, 6, np.asarray(image).shape)
            pixels = np.clip(np.asarray(image) + grain, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:04d}_{name}.jpg", quality=90)
        rows.append([f"s{i}", "ab"[i % 2], f"{i:04d}_m1.jpg", f"{i:04d}_m2.jpg"])
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        csv.writer(fh).writerows([["id", "label", "m1", "m2"], *rows])
    return manifest


def epoch_from_files(folder: Path, pairs: int, size: int) -> float:
    start = time.perf_counter()
    for lo in range(0, pairs, BATCH):
        ids = range(lo, min(lo + BATCH, pairs))
        for name, channels in (("m1", 3), ("m2", 1)):
            batch = [decode_image(folder / f"{i:04d}_{name}.jpg", size, channels) for i in ids]
            torch.from_numpy(np.stack(batch))
    return time.perf_counter() - start


def epoch_from_cache(cache: Path) -> float:
    start = time.perf_counter()
    stacks = [np.load(path, mmap_mode="r") for path in sorted(cache.glob("decoded/*.npy"))]
    for lo in range(0, len(stacks[0]), BATCH):
        for stack in stacks:
            torch.from_numpy(np.array(stack[lo : lo + BATCH]))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--source", type=int, default=448, help="JPEG side in pixels")
    parser.add_argument("--size", type=int, default=224, help="decoded side in pixels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-data-cache-") as tmp:
        folder, cache = Path(tmp) / "data", Path(tmp) / "cache"
        folder.mkdir()
        manifest = write_pairs(folder, args.pairs, args.source)
        ref = DatasetRef.of(
            "csv", {"root": str(manifest), "image_size": args.size, "channels": "3,1"}
        )
        files = epoch_from_files(folder, args.pairs, args.size)
        start = time.perf_counter()
        load_dataset(ref, cache)
        build = time.perf_counter() - start
        cached = epoch_from_cache(cache)
        start = time.perf_counter()
        load_dataset(ref, cache)
        reload = time.perf_counter() - start
    images = 2 * args.pairs
    print(f"{args.pairs} pairs ({images} JPEGs, {args.source} px -> {args.size} px)")
    print(f"epoch from files (decode + resize, 1 thread): {files:8.3f} s")
    print(f"first load, building the cache (thread pool): {build:8.3f} s")
    print(f"epoch from the memory-mapped cache:           {cached:8.3f} s")
    print(f"load_dataset again, from the cache:           {reload:8.3f} s")
    print(f"files / cache per epoch: {files / cached:.0f}x")


if __name__ == "__main__":
    main()
