"""Deep-equilibrium fusion (Ni, Wang, Yu, Ma, Shi, "Deep Equilibrium Multimodal Fusion",
arXiv:2306.16645, 2023), used by ``deq-fusion`` and by KEDR's CAD module.

The fused representation is the fixed point z* = F(z*; h) of one fusion layer over the
branch injections h_b (B, d). The state z = [z_1, ..., z_n, z_f] holds one purified
feature per branch and the fused feature:

    z_b' = ReLU(LN(W2_b ReLU(LN(W1_b z_b))) + h_b) * present_b        (purification)
    a_b  = sigmoid(G [z_b'; z_f]) * present_b                          (gates)
    z_f' = ReLU(LN(W_f sum_b a_b z_b') + sum_b h_b)                    (fusion + injection)

solved from z = 0 by Anderson (or Broyden) with an implicit-differentiation backward
(Bai, Kolter, Koltun, "Deep Equilibrium Models", NeurIPS 2019), so memory does not grow
with the number of iterations. ``equilibrium=False`` applies F once from z = 0 (KEDR's
``no-deq`` ablation).

Fidelity: the per-branch purification, gated weighted sum and injection follow the paper's
description; their GroupNorm on 1-D features is LayerNorm here, and the gate reads the
branch and the fused state (our reading of the paper's "dynamic" weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from methods._blocks.deq import deq_solve


@dataclass(frozen=True)
class FusionStats:
    steps: int
    residual: float


class DEQFusion(nn.Module):
    def __init__(
        self,
        dim: int,
        branches: int,
        equilibrium: bool = True,
        solver: str = "anderson",
        max_iter: int = 55,
        tol: float = 1e-3,
    ) -> None:
        super().__init__()
        self.dim, self.branches = dim, branches
        self.equilibrium, self.solver, self.max_iter, self.tol = equilibrium, solver, max_iter, tol
        self.purify = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, dim),
                nn.LayerNorm(dim),
            )
            for _ in range(branches)
        )
        self.gate = nn.Linear(2 * dim, dim)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        self.last_stats = FusionStats(0, 0.0)

    def layer(self, z: Tensor, h: Tensor, present: Tensor) -> Tensor:
        """One application of F: z (B, n+1, d), h (B, n, d), present (B, n) -> (B, n+1, d)."""
        mask = present.to(z.dtype).unsqueeze(-1)
        z_f = z[:, -1]
        purified = torch.stack(
            [torch.relu(block(z[:, b]) + h[:, b]) for b, block in enumerate(self.purify)], dim=1
        ) * mask
        gates = torch.sigmoid(
            self.gate(torch.cat([purified, z_f.unsqueeze(1).expand_as(purified)], dim=-1))
        ) * mask
        fused = torch.relu(self.mix((gates * purified).sum(1)) + h.sum(1))
        return torch.cat([purified, fused.unsqueeze(1)], dim=1)

    def forward(self, h: Tensor, present: Tensor) -> Tensor:
        """Fused feature z_f* (B, d) from injections h (B, n, d) and branch presence (B, n)."""
        z0 = h.new_zeros(h.shape[0], self.branches + 1, self.dim)
        if not self.equilibrium:
            self.last_stats = FusionStats(1, float("nan"))
            return self.layer(z0, h, present)[:, -1]
        z, stats = deq_solve(
            lambda z: self.layer(z, h, present),
            z0,
            solver=self.solver,
            max_iter=self.max_iter,
            tol=self.tol,
        )
        self.last_stats = FusionStats(int(stats.steps), float(stats.residual))
        return z[:, -1]
