"""ShaSpec: shared and specific feature modelling for missing modalities.

Wang, Chen, Avery, Liao, Hemming, Liao, Chen, Carneiro, "Multi-modal learning with missing
modality via shared-specific feature modelling", CVPR 2023; code github.com/billhhh/ShaSpec
(``DualNet_SS.py``, ``train_SS.py``). Per modality m (present_m its mask):

    s_m = E_sh(stem_m(x_m))                shared encoder, one set of weights for every m
    f_m = E_m(x_m)                         specific encoder of modality m
    g_m = s_m + W [s_m; f_m]               if m is present      (residual composition, W shared)
    g_m = s_fill                           if m is absent: s of the sample's first present
                                           modality (``fill="first"``) or their mean (``"mean"``)
    logits = V [g_1; ...; g_M] + b
    L = CE(logits, y) + w_shared L_sh + w_domain L_dom
    L_sh  = mean over pairs i < j of mean_{samples with i and j present} |s_i - s_j|      (L1)
    L_dom = CE(D(f_m), m) over the present (sample, modality)       (domain classifier D)

Training recipe: full-modality training first, then random modality dropout: the training
loop (:mod:`bench.dropout`) drops modalities with the ``uniform-count`` scheme (the number
kept uniform on 1..M, which ones uniformly) after a warm-up of 80000 / 180000 of the epochs,
so the fill path above is trained on complete training pairs too (``--apply-to test``
included); ``modality_dropout='none'`` trains without it.

Hyper-parameters: w_shared = 0.1 and w_domain = 0.02 (``alpha``, ``beta`` of the code's
``train_SS.py``); fill "first" (the code; the mean is its commented-out alternative);
modality dropout ``uniform-count`` with warm-up 4/9 (``run.sh``).

Fidelity:
- Paper (CVPR 2023): one weight-shared encoder and per-modality specific encoders, a shared
  residual composition layer, a distribution-alignment loss on shared features and a domain
  classification loss on specific features; an absent modality's feature is generated from
  the shared features of the present ones.
- Official code (billhhh/ShaSpec@081fe7a1e40d6bbc0736dc93e779a0a5a439d091, ``DualNet_SS.py``,
  ``train_SS.py``, ``run.sh``): L1 alignment over a 4-cycle of modality pairs and a linear
  domain classifier, both over every modality, dropped ones included (features of zeroed
  images); the absent fill is the shared feature of ``mode_split[0]``; ``run.sh`` trains
  80000 steps with every modality, then reloads that model and trains to step 180000 with
  ``--mode=random``: each step keeps ``random.randint(1, 4)`` of the 4 modalities, chosen by
  ``random.sample`` (batch size 1, so per sample); SGD with Nesterov momentum 0.99, lr 1e-2,
  poly decay.
- Ours: the code feeds single-channel MRI sequences straight into the shared encoder; our
  modalities differ in channels (fundus RGB, OCT grey), so a per-modality 1x1-conv stem maps
  each to ``stem_channels`` (3: a pretrained 3-channel backbone fits) before the shared
  encoder (with precomputed features, ``backbone="features"``, the stem is a linear layer
  and the shared encoder an MLP). The shared encoder runs on the present images only, so
  absent images neither cost compute nor enter BatchNorm statistics; L_sh covers pairs both
  present and L_dom present modalities, and L_sh averages over all pairs (the code sums a
  4-cycle of its 4 modalities). Composition is a linear layer on pooled features (the code:
  a 3x3x3 conv on feature maps for segmentation). The fill is the first present modality by
  index; in its random phase the code fills from the first of ``random.sample``'s order, a
  random kept modality. The two phases are one stage of the harness's loop (one optimiser
  and cosine schedule; the code's poly schedule restarts from the phase-1 checkpoint), and
  the warm-up is the same fraction of epochs rather than of steps.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.dropout import declared
from bench.errors import ConfigError
from bench.interface import Batch, DatasetInfo, Method, Output, Stage, register_method
from methods._blocks.heads import linear_head, mlp


def fill_absent(shared: Tensor, present: Tensor, fill: str) -> Tensor:
    """(B, d) stand-in for an absent modality: the first present s_m, or the present mean."""
    weight = present.to(shared.dtype).unsqueeze(-1)
    if fill == "mean":
        return (shared * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
    first = present.int().argmax(dim=1)  # the first True (0 when none is present)
    return shared[torch.arange(shared.shape[0], device=shared.device), first] * weight.amax(1)


def shared_alignment(shared: Tensor, present: Tensor) -> Tensor:
    """Mean over modality pairs of the L1 distance of their shared features, both present."""
    terms = []
    for i, j in itertools.combinations(range(present.shape[1]), 2):
        both = present[:, i] & present[:, j]
        if both.any():
            terms.append(F.l1_loss(shared[both, i].float(), shared[both, j].float()))
    return torch.stack(terms).mean() if terms else shared.new_zeros((), dtype=torch.float32)


@register_method("shaspec")
class ShaSpec(Method):
    summary = (
        "Shared (weight-tied) + specific encoders; absent shared feature filled from a present "
        "one; trained with random modality dropout after a full-modality warm-up"
    )
    citation = "Wang et al., CVPR 2023 (ShaSpec)"
    version = 2  # 2: training-time dropout after a full-modality warm-up

    def __init__(
        self,
        info: DatasetInfo,
        dropout: float = 0.0,
        stem_channels: int = 3,
        fill: str = "first",
        w_shared: float = 0.1,
        w_domain: float = 0.02,
        modality_dropout: str = "uniform-count",
        dropout_warmup: float = 80_000 / 180_000,
        **encoder: Any,
    ) -> None:
        super().__init__(info, **encoder)
        if fill not in ("first", "mean"):
            raise ConfigError(f"shaspec fill {fill!r} is not valid: choose 'first' or 'mean'")
        self.fill, self.w_shared, self.w_domain = fill, w_shared, w_domain
        self.modality_dropout = declared(modality_dropout, warmup=dropout_warmup)
        self.specific = self.modality_encoders()
        d = self.specific.feature_dim
        if self.encoder_args.backbone == "features":
            self.stems = nn.ModuleList(nn.Linear(d, d) for _ in info.channels)
            self.shared = mlp([d, d, d])
        else:
            self.stems = nn.ModuleList(nn.Conv2d(c, stem_channels, 1) for c in info.channels)
            self.shared = self.encoder_args.create(stem_channels)
        self.compose = nn.Linear(2 * d, d)
        self.head = linear_head(d * info.num_modalities, info.num_classes, dropout)
        self.domain_classifier = nn.Linear(d, info.num_modalities)

    def stages(self) -> list[Stage]:
        return [Stage("main", modality_dropout=self.modality_dropout)]

    def shared_features(self, batch: Batch) -> Tensor:
        """s_m (B, M, d) from the present images only; zeros where m is absent."""
        present = batch.present
        rows = [present[:, m].nonzero().squeeze(1) for m in range(present.shape[1])]
        stems = [stem(x[r]) for stem, x, r in zip(self.stems, batch.images, rows, strict=True)]
        encoded = self.shared(torch.cat(stems)).split([len(r) for r in rows])
        return torch.stack(
            [
                value.new_zeros(present.shape[0], value.shape[1]).index_copy(0, r, value)
                for value, r in zip(encoded, rows, strict=True)
            ],
            dim=1,
        )

    def forward(self, batch: Batch) -> Output:
        present = batch.present
        shared = self.shared_features(batch)  # (B, M, d)
        specific = torch.stack(self.specific(batch), dim=1).to(shared.dtype)  # zero if absent
        composed = shared + self.compose(torch.cat([shared, specific], dim=-1))
        fill = fill_absent(shared, present, self.fill).unsqueeze(1).expand_as(shared)
        fused = torch.where(present.unsqueeze(-1), composed, fill)
        return Output(self.head(fused.flatten(1)), extras={"shared": shared, "specific": specific})

    def loss(self, out: Output, batch: Batch, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        present = batch.present
        ce = F.cross_entropy(out.logits, y)
        aligned = shared_alignment(out.extras["shared"], present)
        modality = torch.arange(present.shape[1], device=y.device).expand_as(present)
        if present.any():
            domain_logits = self.domain_classifier(out.extras["specific"][present])
            domain = F.cross_entropy(domain_logits, modality[present])
        else:
            domain = ce.new_zeros(())
        total = ce + self.w_shared * aligned + self.w_domain * domain
        parts = {"ce": ce, "shared_l1": aligned, "domain": domain}
        return total, {k: float(v.detach()) for k, v in parts.items()}

    def inference_modules(self) -> list[nn.Module]:
        """The domain classifier only shapes training."""
        return [self.specific, self.stems, self.shared, self.compose, self.head]

    @classmethod
    def search_space(cls, trial) -> dict:
        return {
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "w_shared": trial.suggest_float("w_shared", 0.01, 1.0, log=True),
            "w_domain": trial.suggest_float("w_domain", 0.002, 0.2, log=True),
        }
