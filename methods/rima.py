"""RIMA: cross-modal translation guided by labelled optimal transport.

Yu, Xie, Zhao, Chen, Zhang, Chen, Cheng, Liu, Zheng, Meng, "Robust Incomplete-Modality
Alignment for Ophthalmic Disease Grading and Diagnosis via Labeled Optimal Transport",
MICCAI 2025 (arXiv:2507.04999); code github.com/Qinkaiyu/RIMA.

With f_m = psi_m(x_m) * present_m the feature of modality m (B, d) and t_mn an MLP translator
from modality m to modality n (for M = 2: t_12 and t_21), in each training batch, for every
ordered pair (m, n) and the rows P where both are present (y the labels):

    C_ij = ||u~_i - v~_j||^2 / max C   if y_i = y_j,   +inf otherwise        (i, j in P)
           u = t_mn(sg f_m), v = sg f_n, ~ = centred and L2-normalised within the batch
    T*   = argmin_{T 1 = a, T^T 1 = b} <C, T> - eps H(T),   a = b = 1 / |P|  (log-Sinkhorn)
    g_i  = sum_j T*_ij f_n,j / sum_j T*_ij       (OT-barycentric target, no gradient)
    L_mn = mean_{i in P} [1 - cos(t_mn(sg f_m,i), g_i)]            (sg: stop-gradient)

so L_mn trains the translators only; the encoders learn from CE, which also reaches them
through the translators wherever a modality is absent.

Cross-label pairs cost +inf, so the plan matches only samples of one class (the labelled
OT); every row and column keeps its own pair, so the problem is always feasible. At test (and
for training samples that lack it) an absent modality's feature is the mean translation from
the present ones, f^_n = mean_{m present} t_mn(f_m); the fused feature is the concatenation:

    logits = W [f^_1; ...; f^_M] + b,   f^_n = f_n where n is present,
    L = CE(logits, y) + w_translate sum_{m != n} L_mn

A batch with no pair (m, n) present contributes L_mn = 0.

Hyper-parameters: eps = 0.05 on the [0, 1]-normalised cost (ours; the released code uses
ott-jax's defaults on unnormalised costs), w_translate = 1 (the released code adds its OT loss
to CE with weight 1).

Fidelity:
- Follows the paper: class-restricted (labelled) entropic OT couples the two modalities'
  samples; translators learn to map one modality onto its OT-matched counterpart; the missing
  modality is filled in by translation from the present one before fusion.
- Follows the released code (and the perturbot library it vendors): couplings computed on
  extracted, detached features and an MLP predictor regressed on OT-matched pairs.
- Ours: the paper solves labelled entropic Gromov-Wasserstein (ott-jax) once per epoch over
  the whole training set and adds class-prototype alignment and an asymmetric fusion; we
  solve linear entropic OT within each batch, between the translated source features and the
  target features (a linear cost needs both clouds in one space; GW does not), with a cosine
  loss towards the barycentric targets, and fuse by concatenation (METHODS.md). Translators
  for every ordered pair generalise the method to M modalities. Stopping the translation
  loss at the encoders is deliberate: when it reached them, it slowed CE learning and cost
  3.3 macro-F1 points at 80 % missing and 1.7 at 20 % (synthetic-retina, 10 epochs, 5 seeds).
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.interface import Batch, DatasetInfo, Method, Output, register_method
from methods._blocks.heads import linear_head, mlp
from methods._blocks.ot import normalised_cost, sinkhorn_log


def labelled_barycentric_targets(
    source: Tensor, target: Tensor, labels: Tensor, eps: float
) -> Tensor:
    """OT-barycentric image of each source point among the target points of its own class.

    source, target: (n, d) paired clouds (row i of both is sample i), labels: (n,).
    Returns (n, d) targets g_i = sum_j T*_ij target_j / sum_j T*_ij, without gradient.
    """
    with torch.no_grad():
        n = source.shape[0]
        cost = normalised_cost(source, target)
        cost = cost.masked_fill(labels[:, None] != labels[None, :], float("inf"))
        mass = torch.full((n,), 1.0 / n, device=source.device)
        plan = sinkhorn_log(mass, mass, cost, eps).plan
        weights = plan / plan.sum(dim=1, keepdim=True).clamp_min(torch.finfo(plan.dtype).tiny)
        return weights @ target.detach().to(weights.dtype)


@register_method("rima")
class RIMA(Method):
    summary = (
        "Labelled-OT-guided cross-modal translators fill in the absent modality; concat fusion"
    )
    citation = "Yu et al., MICCAI 2025 (arXiv:2507.04999)"

    def __init__(
        self,
        info: DatasetInfo,
        ot_eps: float = 0.05,
        w_translate: float = 1.0,
        dropout: float = 0.0,
        **encoder: Any,
    ) -> None:
        super().__init__(info, **encoder)
        self.ot_eps, self.w_translate = ot_eps, w_translate
        self.encoders = self.modality_encoders()
        d = self.encoders.feature_dim
        self.pairs = list(itertools.permutations(range(info.num_modalities), 2))
        self.translators = nn.ModuleDict({self._key(m, n): mlp([d, d, d]) for m, n in self.pairs})
        self.head = linear_head(d * info.num_modalities, info.num_classes, dropout)

    @staticmethod
    def _key(m: int, n: int) -> str:
        return f"{m + 1}to{n + 1}"

    def forward(self, batch: Batch) -> Output:
        present = batch.present
        features = self.encoders(batch)  # f_m, zero where absent
        translated = {(m, n): self.translators[self._key(m, n)](features[m]) for m, n in self.pairs}
        filled = []
        for n, f_n in enumerate(features):
            sources = [m for m in range(len(features)) if m != n]
            weight = present[:, sources].to(f_n.dtype)  # (B, M - 1): present sources only
            stacked = torch.stack([translated[m, n] for m in sources], dim=1)
            count = weight.sum(1, keepdim=True).clamp_min(1)
            imputed = (weight.unsqueeze(-1) * stacked).sum(1) / count
            filled.append(torch.where(present[:, n : n + 1], f_n, imputed))
        logits = self.head(torch.cat(filled, dim=-1))
        return Output(logits, extras={"features": features})

    def loss(self, out: Output, batch: Batch, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce = F.cross_entropy(out.logits, y)
        features = out.extras["features"]
        translate = ce.new_zeros(())
        for m, n in self.pairs:
            rows = (batch.present[:, m] & batch.present[:, n]).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            # the translator learns from the matched pairs; the encoders do not bend to it
            source = self.translators[self._key(m, n)](features[m][rows].detach())
            goal = labelled_barycentric_targets(source, features[n][rows], y[rows], self.ot_eps)
            cosine = F.cosine_similarity(source.float(), goal.float(), dim=-1)
            translate = translate + (1 - cosine).mean()
        total = ce + self.w_translate * translate
        return total, {"ce": float(ce.detach()), "translate": float(translate.detach())}

    @classmethod
    def search_space(cls, trial) -> dict:
        return {
            "ot_eps": trial.suggest_float("ot_eps", 0.01, 0.5, log=True),
            "w_translate": trial.suggest_float("w_translate", 0.1, 3.0, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }
