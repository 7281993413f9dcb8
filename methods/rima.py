"""RIMA: cross-modal translation guided by a labelled Gromov-Wasserstein coupling.

Yu, Xie, Zhao, Chen, Zhang, Chen, Cheng, Liu, Zheng, Meng, "Robust Incomplete-Modality
Alignment for Ophthalmic Disease Grading and Diagnosis via Labeled Optimal Transport",
MICCAI 2025 (arXiv:2507.04999); code github.com/Qinkaiyu/RIMA.

With f_m = psi_m(x_m) * present_m the feature of modality m (B, d), sg the stop-gradient and
t_mn an MLP translator from modality m to n, in each training batch, for every pair m < n
and the rows P where both are present (y the labels):

    C^m_ik = ||sg f_m,i - sg f_m,k||^2 / max,  likewise C^n      (i, k in P; raw features)
    T* = entropic GW coupling of (C^m, 1/|P|) and (C^n, 1/|P|), eps, T_ij = 0 unless y_i = y_j
         (methods/_blocks/gromov.py)
    j(i) ~ T*_i. / sum T*_i.,   i(j) ~ T*_.j / sum T*_.j           (one partner each, sampled)
    L_mn = mean_{i in P} [1 - cos(t_mn(sg f_m,i), sg f_n,j(i))],  L_nm likewise with i(j)

The translations are always fused, present modality or not; for modality n,

    f^_n = mean_{m != n, m present} t_mn(sg f_m)   (zero when no other modality is present),
    g_n = G_n([f_n; f^_n]),   logits = W [g_1; ...; g_M] + b,
    L = CE(logits, y) + w_translate sum_{m != n} L_mn,

so CE trains the translators on every training row (the stop-gradient keeps both losses
from bending the encoders through the translators). A batch with no pair present
contributes L_mn = 0.

Hyper-parameters: gw_eps = 0.01 on max-normalised costs (the code's ott-jax epsilon 5e-3,
which linearises GW with half of POT's gradient, see methods/_blocks/gromov.py), w_translate
= 1 (the code adds its OT loss to CE with weight 1); no modality dropout (the code trains on
complete pairs; ``modality_dropout`` declares one, e.g. ``uniform-count``).

Fidelity:
- Paper (MICCAI 2025): class-restricted (labelled) entropic Gromov-Wasserstein couples the
  two modalities' samples; translators learn to map one modality onto its matched
  counterparts; class-prototype alignment; an asymmetric fusion of each modality with its
  translations.
- Official code (Qinkaiyu/RIMA@6d9191ead868dd8760171b006daa4c481fac79c7,
  ``baseline_models_fusion.py``, ``main.py``, and the vendored
  ``perturbot/perturbot/match/ott_egwl.py``): in every training batch
  ``get_coupling_egw_labels_ott`` solves labelled entropic GW with ott-jax (``epsilon=5e-3``,
  ``scale_cost='max_cost'`` squared-Euclidean point clouds, at most 2000 outer and 2000
  Sinkhorn iterations) on the detached backbone features grouped by label, once per
  direction (fundus to OCT, OCT to fundus); each translator input is a detached feature and
  its target a partner drawn by ``torch.multinomial`` from the plan's row, with
  ``1 - cos``; ``oct_fusion`` (an MLP on [OCT; its translation]) and an attention block over
  [fundus, its feature-transport image, its translation] are always fused and concatenated
  before a linear classifier; AdamW (lr 1e-4, weight decay 1e-5). After each epoch
  ``main.py`` also solves the coupling once over the whole training set, for the
  feature-to-feature transport matrix (``get_coupling_fot``) that the evaluation path uses.
  Training uses complete pairs (the dataset's missing-modality ``condition`` is commented
  out in ``main.py``).
- Ours: one GW coupling per pair of modalities and batch, its transpose for the reverse
  direction (GW is symmetric in its two spaces; the code solves the two directions
  separately), by POT-style projected Sinkhorn steps in torch with ott-jax's stopping rule
  and tolerances (methods/_blocks/gromov.py; at most 100 projections where the code allows
  2000). The same fusion for every modality, an MLP
  G_n on [f_n; f^_n], in place of the asymmetric pair of fusion blocks, and no
  feature-to-feature transport token (it needs the epoch-level coupling over the whole
  training set); no class-prototype alignment. Translators for every ordered pair generalise
  the method to M modalities, and an absent modality's own feature is zero. Defect not
  copied: the code concatenates the batch-order OCT feature with translations in label
  order (``OT_fudus`` is regrouped by class), so rows of different samples are fused.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.dropout import declared
from bench.interface import Batch, DatasetInfo, Method, Output, Stage, register_method
from methods._blocks.gromov import (
    entropic_gromov_wasserstein,
    max_normalised_sq_distances,
    sample_partners,
)
from methods._blocks.heads import linear_head, mlp


def labelled_gw_plan(source: Tensor, target: Tensor, labels: Tensor, eps: float) -> Tensor:
    """Labelled entropic GW coupling (n, n) of two paired clouds (row i of both is sample i,
    labels (n,)) in their own spaces, uniform masses, no gradient."""
    n = source.shape[0]
    mass = torch.full((n,), 1.0 / n, device=source.device)
    return entropic_gromov_wasserstein(
        max_normalised_sq_distances(source.detach()),
        max_normalised_sq_distances(target.detach()),
        mass,
        mass,
        eps,
        allowed=labels[:, None] == labels[None, :],
    ).plan


def translation_loss(translated: Tensor, partners: Tensor) -> Tensor:
    """mean_i [1 - cos(translated_i, partners_i)] for (n, d) tensors."""
    return (1 - F.cosine_similarity(translated.float(), partners.float(), dim=-1)).mean()


@register_method("rima")
class RIMA(Method):
    summary = (
        "Translators trained toward labelled-Gromov-Wasserstein partners; translations always "
        "fused with each modality"
    )
    citation = "Yu et al., MICCAI 2025 (arXiv:2507.04999)"
    version = 2  # 2: the labelled Gromov-Wasserstein coupling, translations always fused

    def __init__(
        self,
        info: DatasetInfo,
        gw_eps: float = 0.01,
        w_translate: float = 1.0,
        dropout: float = 0.0,
        modality_dropout: str = "none",
        **encoder: Any,
    ) -> None:
        super().__init__(info, **encoder)
        self.gw_eps, self.w_translate = gw_eps, w_translate
        self.modality_dropout = declared(modality_dropout)
        self.encoders = self.modality_encoders()
        d, m = self.encoders.feature_dim, info.num_modalities
        self.pairs = list(itertools.permutations(range(m), 2))
        self.translators = nn.ModuleDict({self._key(a, b): mlp([d, d, d]) for a, b in self.pairs})
        self.fusions = nn.ModuleList(mlp([2 * d, d, d]) for _ in range(m))
        self.head = linear_head(d * m, info.num_classes, dropout)

    @staticmethod
    def _key(m: int, n: int) -> str:
        return f"{m + 1}to{n + 1}"

    def stages(self) -> list[Stage]:
        return [Stage("main", modality_dropout=self.modality_dropout)]

    def translations(self, features: list[Tensor], present: Tensor) -> list[Tensor]:
        """f^_n (B, d) for every n: the mean translation from the other present modalities."""
        detached = [f.detach() for f in features]
        imputed = []
        for n in range(len(features)):
            sources = [m for m in range(len(features)) if m != n]
            stacked = torch.stack(
                [self.translators[self._key(m, n)](detached[m]) for m in sources], 1
            )
            weight = present[:, sources].to(stacked.dtype).unsqueeze(-1)  # (B, M - 1, 1)
            imputed.append((weight * stacked).sum(1) / weight.sum(1).clamp_min(1))
        return imputed

    def forward(self, batch: Batch) -> Output:
        features = self.encoders(batch)  # f_m, zero where absent
        imputed = self.translations(features, batch.present)
        fused = [
            g(torch.cat([f_n, t_n], dim=-1))
            for g, f_n, t_n in zip(self.fusions, features, imputed, strict=True)
        ]
        return Output(self.head(torch.cat(fused, dim=-1)), extras={"features": features})

    def loss(self, out: Output, batch: Batch, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce = F.cross_entropy(out.logits, y)
        features = [f.detach() for f in out.extras["features"]]
        translate = ce.new_zeros(())
        for m, n in itertools.combinations(range(len(features)), 2):
            rows = (batch.present[:, m] & batch.present[:, n]).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            source, target = features[m][rows], features[n][rows]
            plan = labelled_gw_plan(source, target, y[rows], self.gw_eps)
            forward = self.translators[self._key(m, n)](source)
            backward = self.translators[self._key(n, m)](target)
            translate = translate + translation_loss(forward, target[sample_partners(plan)])
            translate = translate + translation_loss(backward, source[sample_partners(plan.T)])
        total = ce + self.w_translate * translate
        return total, {"ce": float(ce.detach()), "translate": float(translate.detach())}

    @classmethod
    def search_space(cls, trial) -> dict:
        return {
            "gw_eps": trial.suggest_float("gw_eps", 0.005, 0.1, log=True),
            "w_translate": trial.suggest_float("w_translate", 0.1, 3.0, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }
