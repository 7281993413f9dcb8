"""Frozen-backbone mode: image features computed once per (dataset, backbone, weights, size)
and cached, so that a whole grid of fusion heads trains on them in minutes.

Each modality is encoded by its own copy of the backbone (``in_chans`` adapted by timm),
in eval mode, inputs scaled by the backbone's pretrained mean and std (ImageNet's for
timm weights, averaged over channels for grey modalities). The methods then see float
features (B, D) and are built with ``backbone='features'``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from bench.data import LoadedDataset, Split, save_arrays_atomically
from bench.encoders import create_encoder
from bench.protocol import SPLITS
from bench.spec import DatasetRef


def _weights_key(pretrained: str | None) -> str:
    if not pretrained or pretrained == "hf-cache":
        return str(pretrained)
    path = Path(pretrained).expanduser()
    stat = path.stat() if path.is_file() else None
    return f"{path.resolve()}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}"


def _normaliser(encoder: torch.nn.Module, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = getattr(getattr(encoder, "model", None), "pretrained_cfg", None) or {}
    mean = torch.tensor(cfg.get("mean", (0.5, 0.5, 0.5)), dtype=torch.float32)
    std = torch.tensor(cfg.get("std", (0.5, 0.5, 0.5)), dtype=torch.float32)
    if channels != len(mean):
        mean, std = mean.mean().repeat(channels), std.mean().repeat(channels)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


@torch.no_grad()
def _encode(
    pixels: torch.Tensor, encoder: torch.nn.Module, device: torch.device, batch_size: int
) -> np.ndarray:
    mean, std = (t.to(device) for t in _normaliser(encoder, pixels.shape[1]))
    out = []
    for start in range(0, len(pixels), batch_size):
        x = pixels[start : start + batch_size].to(device).float().div_(255.0)
        out.append(encoder((x - mean) / std).float().cpu())
    return torch.cat(out).numpy()


def frozen_features(
    data: LoadedDataset,
    ref: DatasetRef,
    backbone: str,
    pretrained: str | None,
    device: torch.device,
    cache_dir: Path,
    batch_size: int = 64,
) -> LoadedDataset:
    """``data`` with every image replaced by its frozen-backbone feature (float32)."""
    key = json.dumps([ref.name, list(ref.options), backbone, _weights_key(pretrained)], default=str)
    path = cache_dir / "features" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        with np.load(path) as cached:
            arrays = {k: cached[k] for k in cached.files}
    else:
        arrays = {}
        for m, channels in enumerate(data.info.channels):
            torch.manual_seed(0)  # a random-init backbone is still the same for every cell
            encoder = create_encoder(backbone, channels, pretrained=pretrained).to(device).eval()
            for split in SPLITS:
                pixels = data.split(split).images[m]
                arrays[f"{split}_{m}"] = _encode(pixels, encoder, device, batch_size)
        save_arrays_atomically(path, arrays)
    splits = {
        split: Split(
            tuple(
                torch.from_numpy(arrays[f"{split}_{m}"]) for m in range(data.info.num_modalities)
            ),
            data.split(split).labels,
        )
        for split in SPLITS
    }
    return LoadedDataset(data.info, splits["train"], splits["val"], splits["test"])
