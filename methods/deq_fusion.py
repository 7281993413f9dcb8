"""Deep-equilibrium fusion: the DEQ fusion block alone over zero-filled features, linear head.

Ni, Wang, Yu, Ma, Shi, "Deep Equilibrium Multimodal Fusion", arXiv:2306.16645, 2023.
With h_m = psi_m(x_m) * present_m the per-modality features (B, d) and F the fusion layer of
``methods/_blocks/fusion.py`` (per-branch purification, gated sum, injection):

    z* = F(z*; h_1, ..., h_M),  z_0 = 0        (Anderson forward, implicit backward)
    logits = W z*_f + b,        L = CE(logits, y)

The solver's steps and final relative residual ||F(z) - z|| / ||F(z)|| are logged as the loss
parts ``deq_steps`` and ``deq_residual``; those of the implicit backward's solve as
``deq_backward_steps`` and ``deq_backward_residual`` (``after_backward``).

Hyper-parameters: Anderson (m = 6, lam = 1e-4), tolerance 1e-3, at most 55 forward steps
(METHODS.md) and 20 adjoint steps (METHODS.md says ~56; why fewer: methods/_blocks/fusion.py),
shared with KEDR's CAD module;
``solver='broyden'`` is the alternative of Bai et al. (NeurIPS 2019).

Fidelity:
- Follows the paper: the fused state is the fixed point of one fusion layer over the
  modality features, found by a root solver and differentiated implicitly, so memory does not
  grow with the iterations; a linear classifier on z*_f.
- Follows the shared block ``methods/_blocks/fusion.py`` (see its own Fidelity note for
  where its layer departs from the paper's). An absent modality's branch is masked inside F
  (not only zero-filled), so it adds nothing to z*_f.
- Ours: no Jacobian regulariser (Bai, Koltun, Kolter, ICML 2021; an optional stabiliser of
  DEQ training, off here as in METHODS.md's default).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bench.errors import ConfigError
from bench.interface import Batch, DatasetInfo, Method, Output, register_method
from methods._blocks.fusion import DEQFusion as DEQFusionBlock
from methods._blocks.heads import linear_head

SOLVERS = ("anderson", "broyden")


@register_method("deq-fusion")
class DEQFusion(Method):
    summary = (
        "Deep-equilibrium fusion block (Anderson, implicit backward) over zero-filled features"
    )
    citation = "Ni et al., Deep Equilibrium Multimodal Fusion, arXiv:2306.16645 (2023)"

    def __init__(
        self,
        info: DatasetInfo,
        solver: str = "anderson",
        max_iter: int = 55,
        tol: float = 1e-3,
        dropout: float = 0.0,
        **encoder: Any,
    ) -> None:
        super().__init__(info, **encoder)
        if solver not in SOLVERS:
            raise ConfigError(f"deq-fusion solver {solver!r} is not valid: choose one of {SOLVERS}")
        self.encoders = self.modality_encoders()
        d = self.encoders.feature_dim
        self.fusion = DEQFusionBlock(
            d, info.num_modalities, equilibrium=True, solver=solver, max_iter=max_iter, tol=tol
        )
        self.head = linear_head(d, info.num_classes, dropout)

    def forward(self, batch: Batch) -> Output:
        h = torch.stack(self.encoders(batch), dim=1)  # (B, M, d), zero where absent
        return Output(self.head(self.fusion(h, batch.present)))

    def loss(self, out: Output, batch: Batch, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        ce = F.cross_entropy(out.logits, y)
        return ce, {"ce": float(ce.detach()), **self.fusion.forward_stats()}

    def after_backward(self) -> dict[str, float]:
        return self.fusion.backward_stats()

    @classmethod
    def search_space(cls, trial) -> dict:
        return {
            "solver": trial.suggest_categorical("solver", list(SOLVERS)),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        }
