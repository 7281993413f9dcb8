"""ModDrop: late fusion trained with random modality dropout.

Neverova et al., "ModDrop: adaptive multi-modal gesture recognition", IEEE TPAMI 2016;
Liu et al., "ModDrop++", MICCAI 2022. During training each present modality of each
sample is dropped with probability p (default 0.5), keeping at least one; the dropped
feature is zero-filled, exactly as a missing one is at test time:

    keep_m ~ Bernoulli(1 - p) & present_m,  at least one keep_m per sample,
    logits = W [f_1 keep_1; ...; f_M keep_M] + b

Fidelity: ModDrop's dropout of whole modality channels with zero filling; ModDrop++'s
dynamic filter and intra-subject co-training are not included (our simplification).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from bench.interface import Batch, DatasetInfo, register_method
from methods.late_fusion import LateFusion


def drop_modalities(present: Tensor, p: float) -> Tensor:
    """Drop each present modality with probability ``p``, keeping at least one per sample."""
    keep = present & (torch.rand(present.shape, device=present.device) >= p)
    none_kept = ~keep.any(dim=1) & present.any(dim=1)
    if none_kept.any():
        # pick one of the sample's present modalities uniformly at random
        scores = torch.rand(present.shape, device=present.device) * present
        rescue = torch.nn.functional.one_hot(scores.argmax(dim=1), present.shape[1]).bool()
        keep = torch.where(none_kept.unsqueeze(1), rescue, keep)
    return keep


@register_method("moddrop")
class ModDrop(LateFusion):
    summary = "Late fusion trained with random per-sample modality dropout (p = 0.5)"
    citation = "Neverova et al., TPAMI 2016; Liu et al., MICCAI 2022 (ModDrop++)"

    def __init__(self, info: DatasetInfo, drop_prob: float = 0.5, **late_fusion: Any) -> None:
        super().__init__(info, **late_fusion)
        self.drop_prob = drop_prob

    def fuse(self, batch: Batch) -> Tensor:
        if self.training:
            batch = Batch(batch.images, drop_modalities(batch.present, self.drop_prob))
        return super().fuse(batch)

    @classmethod
    def search_space(cls, trial) -> dict:
        return {
            **super().search_space(trial),
            "drop_prob": trial.suggest_float("drop_prob", 0.1, 0.7),
        }
