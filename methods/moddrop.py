"""ModDrop: late fusion through a shared hidden layer, trained with random modality dropout.

Neverova, Wolf, Taylor, Nebout, "ModDrop: adaptive multi-modal gesture recognition", IEEE
TPAMI 2016; Liu et al., "ModDrop++: a dynamic filter network with intra-subject
co-training for multiple sclerosis lesion segmentation with missing modalities", MICCAI
2022. The training loop (:mod:`bench.dropout`) drops modalities from the training samples
each epoch; a dropped feature is zero-filled, exactly as a missing one is at test time:

    f_m = psi_m(x_m) * keep_m,    keep ~ scheme (at least one present modality kept),
    logits = W_2 GELU(W_1 [f_1; ...; f_M] + b_1) + b_2          (``head='mlp'``)

Schemes: ``uniform-count`` (default, ModDrop++: the number dropped uniform on 0..k-1 of a
sample's k present modalities) or ``bernoulli`` (ModDrop: each present modality dropped with
probability ``drop_prob``). ``moddrop:bernoulli-linear`` is the earlier configuration of this
harness: ``bernoulli`` at 0.5 (a complete pair loses a modality 75 % of the time) and a linear
head on the concatenation.

Fidelity:
- Paper: ModDrop (TPAMI 2016) zeroes whole modality channels at random during training so
  that a network fusing the modalities through shared layers works with any subset of them;
  ModDrop++ (MICCAI 2022) adds a dynamic filter conditioned on the available modalities and
  intra-subject co-training (the same subject's full and dropped inputs, a feature
  consistency loss).
- Official code (han-liu/ModDropPlusPlus@1836c565b1451ad401acbc6d75aaed7ce7f5c9f9,
  ``data/ms_dataset.py``, ``models/ms_model.py``): per sample, ``random.sample(available,
  random.randint(0, len(available) - 1))`` modalities are zeroed and their modality code set
  to 0; the model is trained on both the full and the dropped input with L2 / SSIM / KL
  feature consistency between the two.
- Ours: per-modality encoders, concatenation and a one-hidden-layer MLP (width d) in place of
  a segmentation network with a dynamic filter; the dropout scheme of ModDrop++ without its
  dynamic filter and without intra-subject co-training (one forward per sample).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from bench.dropout import ModalityDropout
from bench.errors import ConfigError
from bench.interface import DatasetInfo, Stage, register_method
from methods._blocks.heads import mlp
from methods.late_fusion import LateFusion

HEADS = ("mlp", "linear")


@register_method(
    "moddrop", variants={"bernoulli-linear": {"scheme": "bernoulli", "head": "linear"}}
)
class ModDrop(LateFusion):
    summary = (
        "Late fusion through an MLP head, trained with random modality dropout (ModDrop++'s "
        "uniform number of dropped modalities)"
    )
    citation = "Neverova et al., TPAMI 2016; Liu et al., MICCAI 2022 (ModDrop++)"
    version = 2  # 2: uniform-count dropout and an MLP head

    def __init__(
        self,
        info: DatasetInfo,
        scheme: str = "uniform-count",
        drop_prob: float = 0.5,
        head: str = "mlp",
        dropout: float = 0.0,
        **encoder: Any,
    ) -> None:
        super().__init__(info, dropout, **encoder)
        if head not in HEADS:
            raise ConfigError(f"moddrop head {head!r} is not valid: choose one of {HEADS}")
        self.modality_dropout = ModalityDropout(scheme, drop_prob)
        d, m = self.encoders.feature_dim, info.num_modalities
        if head == "mlp":  # else late fusion's linear head
            self.head = nn.Sequential(nn.Dropout(dropout), mlp([m * d, d, info.num_classes]))

    def stages(self) -> list[Stage]:
        return [Stage("main", modality_dropout=self.modality_dropout)]

    @classmethod
    def search_space(cls, trial) -> dict:
        return {
            **super().search_space(trial),
            "scheme": trial.suggest_categorical("scheme", ["uniform-count", "bernoulli"]),
            "drop_prob": trial.suggest_float("drop_prob", 0.1, 0.7),
        }
