"""Unimodal bounds: one modality's encoder and a linear head.

``unimodal:m1`` and ``unimodal:m2`` bound what fusion adds. When the model's modality is
absent for a sample, its feature is zero and the head can only return its bias (the
class prior it learned): the honest unimodal result under missingness.

Fidelity:
- Paper: the single-modality rows of the missing-modality tables (e.g. IMDR, AAAI 2025,
  fundus-only and OCT-only models).
- Official code: IMDR's ``code/baseline.py`` (``Res2Net2D`` reads ``X[0]`` alone) is one;
  any backbone with a linear head.
- Ours: the harness's encoder of that modality and a linear head, trained on every training
  sample, with or without its modality (a sample without it teaches only the class prior).
"""

from __future__ import annotations

from typing import Any

from bench.errors import ConfigError
from bench.interface import Batch, DatasetInfo, Method, Output, register_method
from methods._blocks.heads import linear_head


@register_method(
    "unimodal", variants={"m1": {"modality": 1}, "m2": {"modality": 2}}, variants_only=True
)
class Unimodal(Method):
    summary = "One modality's encoder and a linear head (a bound for fusion)"
    citation = "Baseline"

    def __init__(
        self, info: DatasetInfo, modality: int = 1, dropout: float = 0.0, **encoder: Any
    ) -> None:
        super().__init__(info, **encoder)
        if not 1 <= modality <= info.num_modalities:
            raise ConfigError(
                f"unimodal modality {modality} does not exist: {info.name} has "
                f"modalities 1..{info.num_modalities}"
            )
        self.encoder = self.modality_encoders((modality - 1,))
        self.head = linear_head(self.encoder.feature_dim, info.num_classes, dropout)

    def forward(self, batch: Batch) -> Output:
        (feature,) = self.encoder(batch)
        return Output(self.head(feature))

    @classmethod
    def search_space(cls, trial) -> dict:
        return {"dropout": trial.suggest_float("dropout", 0.0, 0.5)}
