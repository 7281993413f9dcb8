"""Deep-equilibrium fusion (Ni, Wang, Yu, Ma, Shi, "Deep Equilibrium Multimodal Fusion",
arXiv:2306.16645, 2023): the fused representation is the fixed point z* = F(z*; h) of one
fusion layer over the branch injections h_b (B, d), b = 1..n. The state z = [z_1, ..., z_n,
z_f] holds one purified feature per branch and the fused feature; z* is solved from z = 0
by Anderson (or Broyden) with an implicit-differentiation backward (Bai, Kolter, Koltun,
"Deep Equilibrium Models", NeurIPS 2019), so memory does not grow with the iterations. An
absent branch (``present`` False) is masked inside F, so it adds nothing to z_f.

Two layers F share that solve:

:class:`PurifyCombineFusion`, the layer of the official code (jinhong-ni/DEQFusion
``DEQ_fusion.py``: ``SimpleResidualBlock`` per branch, ``DEQFusionBlock``, the weighted-sum
injection of ``DEQFusion.forward``), GN a GroupNorm of 4 groups:

    z_b' = GN3_b(ReLU(GN2_b(W2_b ReLU(GN1_b(W1_b z_b)) + h_b) + z_b)) * present_b
    x_f  = sum_b w_b h_b + c                              (scalars w_b = 1, c = 0 at start)
    z_f' = GN_f(ReLU(W_fuse sum_b present_b (z_f * W_gate(z_b' + z_f)) + x_f))

:class:`DEQFusion`, a contraction-first variant (KEDR's CAD module uses it):

    z_b' = ReLU(h_b + W2_b ReLU(LN(W1_b z_b))) * present_b            (purification)
    a_b  = sigmoid(G_1 z_b' + G_2 z_f) * present_b                     (gates)
    z_f' = ReLU(LN(W_f sum_b a_b z_b') + sum_b h_b)                    (fusion + injection)

with W2_b and G_2 scaled by 0.1 at initialisation, so that F starts as a contraction and
Anderson converges in a few steps; it has no residual z_b, gates each branch by a sigmoid,
and injects the plain sum of the h_b.

The backward solve stops at 20 steps or a relative residual of 1e-3, not at the official 56
steps and 1e-4: as training makes F less contractive, the adjoint solve runs into its step cap,
and every step costs a vector-Jacobian product (the measurement on synthetic-retina:
results/README.md, "DEQ adjoint tolerance"). A truncated adjoint solve is an approximate
implicit gradient, which Geng et al. ("On training implicit models", NeurIPS 2021) show still
trains DEQs. ``jacobian_samples`` > 0 estimates ||J_F(z*)||_F^2 / (B D) in training with that
many Hutchinson probes (Bai, Koltun, Kolter, "Stabilizing Equilibrium Models by Jacobian
Regularization", ICML 2021; the official code's ``jac_loss_estimate``, 2 probes), available as
:meth:`EquilibriumFusion.jacobian_loss` for the caller's loss. ``equilibrium=False`` applies F
once: from z = 0 for :class:`PurifyCombineFusion` (the official ``deq=False`` path), and for
:class:`DEQFusion` (KEDR's ``no-deq`` ablation) from z = [h_1, ..., h_n, mean of the present
h_b], so that every weight of F still reads a non-zero input and learns.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

from methods._blocks.deq import DEQStats, deq_solve


def group_norm(dim: int, groups: int = 4) -> nn.GroupNorm:
    """The official layer's ``GroupNorm(4, d)``, with gcd(4, d) groups when 4 does not divide d."""
    return nn.GroupNorm(math.gcd(groups, dim), dim)


class EquilibriumFusion(nn.Module, ABC):
    """The fixed point of ``layer`` over the branch injections, with its solver statistics;
    a subclass defines the layer F."""

    def __init__(
        self,
        dim: int,
        branches: int,
        equilibrium: bool = True,
        solver: str = "anderson",
        max_iter: int = 55,
        tol: float = 1e-3,
        backward_max_iter: int = 20,
        backward_tol: float = 1e-3,
        jacobian_samples: int = 0,
    ) -> None:
        super().__init__()
        self.dim, self.branches = dim, branches
        self.equilibrium, self.solver, self.max_iter, self.tol = equilibrium, solver, max_iter, tol
        self.backward_max_iter, self.backward_tol = backward_max_iter, backward_tol
        self.jacobian_samples = jacobian_samples
        self.last_stats = DEQStats(0, math.nan, False)  # backward fields fill in on backward

    @abstractmethod
    def layer(self, z: Tensor, h: Tensor, present: Tensor) -> Tensor:
        """One application of F: z (B, n+1, d), h (B, n, d), present (B, n) -> (B, n+1, d)."""

    def single_step_state(self, h: Tensor, present: Tensor) -> Tensor:
        """The state F is applied to once when ``equilibrium`` is False: zeros."""
        return h.new_zeros(h.shape[0], self.branches + 1, self.dim)

    def forward_stats(self) -> dict[str, float]:
        """Solver steps and residual of the last forward."""
        return {
            "deq_steps": float(self.last_stats.steps),
            "deq_residual": float(self.last_stats.residual),
        }

    def backward_stats(self) -> dict[str, float]:
        """Steps and residual of the implicit backward solve, once backward has run."""
        if not self.equilibrium:
            return {}
        return {
            "deq_backward_steps": float(self.last_stats.backward_steps),
            "deq_backward_residual": float(self.last_stats.backward_residual),
        }

    def jacobian_loss(self) -> Tensor | None:
        """The last training forward's differentiable estimate of ||J_F(z*)||_F^2 / (B D), or
        None (no probes asked, evaluation, or ``equilibrium`` False)."""
        return self.last_stats.jacobian

    def forward(self, h: Tensor, present: Tensor) -> Tensor:
        """Fused feature z_f* (B, d) from injections h (B, n, d) and branch presence (B, n)."""
        if not self.equilibrium:
            self.last_stats = DEQStats(1, math.nan, False)
            return self.layer(self.single_step_state(h, present), h, present)[:, -1]
        z0 = h.new_zeros(h.shape[0], self.branches + 1, self.dim)
        z, self.last_stats = deq_solve(
            lambda z: self.layer(z, h, present),
            z0,
            solver=self.solver,
            max_iter=self.max_iter,
            tol=self.tol,
            backward_max_iter=self.backward_max_iter,
            backward_tol=self.backward_tol,
            jacobian_samples=self.jacobian_samples if self.training else 0,
        )
        return z[:, -1]


class ResidualBranch(nn.Module):
    """The official ``SimpleResidualBlock``: z' = GN3(ReLU(GN2(W2 ReLU(GN1(W1 z)) + h) + z))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.norm1, self.norm2, self.norm3 = group_norm(dim), group_norm(dim), group_norm(dim)

    def forward(self, z: Tensor, h: Tensor) -> Tensor:
        out = self.norm2(self.linear2(torch.relu(self.norm1(self.linear1(z)))) + h)
        return self.norm3(torch.relu(out + z))


class PurifyCombineFusion(EquilibriumFusion):
    """The official DEQ fusion layer (see the module docstring), absent branches masked."""

    def __init__(self, dim: int, branches: int, **solve) -> None:
        super().__init__(dim, branches, **solve)
        self.purify = nn.ModuleList(ResidualBranch(dim) for _ in range(branches))
        self.gate = nn.Linear(dim, dim)
        self.fuse = nn.Linear(dim, dim)
        self.norm = group_norm(dim)
        self.injection_weights = nn.Parameter(torch.ones(branches))
        self.injection_bias = nn.Parameter(torch.zeros(()))

    def layer(self, z: Tensor, h: Tensor, present: Tensor) -> Tensor:
        mask = present.to(z.dtype).unsqueeze(-1)
        z_f = z[:, -1]
        purified = torch.stack(
            [branch(z[:, b], h[:, b]) for b, branch in enumerate(self.purify)], 1
        )
        purified = purified * mask
        extracted = (z_f.unsqueeze(1) * self.gate(purified + z_f.unsqueeze(1)) * mask).sum(1)
        injection = (self.injection_weights.view(1, -1, 1) * h).sum(1) + self.injection_bias
        fused = self.norm(torch.relu(self.fuse(extracted) + injection))
        return torch.cat([purified, fused.unsqueeze(1)], dim=1)


class DEQFusion(EquilibriumFusion):
    """The contraction-first layer (see the module docstring); KEDR's CAD fusion."""

    def __init__(self, dim: int, branches: int, **solve) -> None:
        super().__init__(dim, branches, **solve)
        self.purify = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim), nn.ReLU(), nn.Linear(dim, dim))
            for _ in range(branches)
        )
        self.gate_branch = nn.Linear(dim, dim)
        self.gate_fused = nn.Linear(dim, dim, bias=False)
        self.mix = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))
        with torch.no_grad():
            for block in self.purify:
                block[-1].weight.mul_(0.1)
            self.gate_fused.weight.mul_(0.1)

    def layer(self, z: Tensor, h: Tensor, present: Tensor) -> Tensor:
        mask = present.to(z.dtype).unsqueeze(-1)
        z_f = z[:, -1]
        purified = (
            torch.stack(
                [torch.relu(block(z[:, b]) + h[:, b]) for b, block in enumerate(self.purify)], dim=1
            )
            * mask
        )
        gates = torch.sigmoid(self.gate_branch(purified) + self.gate_fused(z_f).unsqueeze(1)) * mask
        fused = torch.relu(self.mix((gates * purified).sum(1)) + h.sum(1))
        return torch.cat([purified, fused.unsqueeze(1)], dim=1)

    def single_step_state(self, h: Tensor, present: Tensor) -> Tensor:
        """[h_1, ..., h_n, mean of the present h_b]: every weight reads a non-zero input."""
        count = present.sum(1, keepdim=True).clamp_min(1).to(h.dtype)
        return torch.cat([h, (h.sum(1) / count).unsqueeze(1)], dim=1)
