"""Late fusion: per-modality encoders, zero-filled absent features, concatenation, linear head.

The lower bound every missing-modality method should beat (e.g. the "late fusion"
baseline of Wang et al., ShaSpec, CVPR 2023, Table 1).

    f_m = psi_m(x_m) * present_m,   logits = W [f_1; ...; f_M] + b,   L = CE(logits, y)

Fidelity:
- Paper: the late-fusion baseline of the missing-modality literature (e.g. ShaSpec, CVPR
  2023, Table 1): one encoder per modality, features concatenated, a classifier on top.
- Official code: none of its own; each paper builds it from its own backbones.
- Ours: per-modality encoders of the harness, an absent modality's feature zero-filled
  (``present`` decides, never the pixels), a linear head; nothing else departs.
"""

from __future__ import annotations

from typing import Any

import torch

from bench.interface import Batch, DatasetInfo, Method, Output, register_method
from methods._blocks.heads import linear_head


@register_method("late-fusion")
class LateFusion(Method):
    summary = "Per-modality encoders, zero-filled absent features, concat, linear head"
    citation = "Baseline; e.g. Wang et al., CVPR 2023 (ShaSpec), Table 1"

    def __init__(self, info: DatasetInfo, dropout: float = 0.0, **encoder: Any) -> None:
        super().__init__(info, **encoder)
        self.encoders = self.modality_encoders()
        width = self.encoders.feature_dim * info.num_modalities
        self.head = linear_head(width, info.num_classes, dropout)

    def fuse(self, batch: Batch) -> torch.Tensor:
        return torch.cat(self.encoders(batch), dim=-1)

    def forward(self, batch: Batch) -> Output:
        return Output(self.head(self.fuse(batch)))

    @classmethod
    def search_space(cls, trial) -> dict:
        return {"dropout": trial.suggest_float("dropout", 0.0, 0.5)}
