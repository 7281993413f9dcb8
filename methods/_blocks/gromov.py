"""Entropic Gromov-Wasserstein couplings on torch tensors, with an optional support mask.

Gromov-Wasserstein couples two point clouds that live in different spaces through their
intra-space distances C1 (n, n) and C2 (m, m) only (Mémoli, Found. Comput. Math. 2011);
the entropic problem (Peyré, Cuturi, Solomon, "Gromov-Wasserstein averaging of kernel and
distance matrices", ICML 2016), with the square loss L(x, y) = (x - y)^2, is

    T* = argmin_{T 1 = a, T^T 1 = b, T >= 0, T_ij = 0 where not allowed_ij}
             sum_{i,j,k,l} (C1_ik - C2_jl)^2 T_ij T_kl - eps H(T).

It is solved by projected gradient steps in the KL geometry (Peyré et al. 2016, Prop. 2;
POT's ``ot.gromov.entropic_gromov_wasserstein(..., solver='PGD')``): from T_0 = a b^T,

    (L (x) T)_ij = sum_k C1_ik^2 a_k + sum_l C2_jl^2 b_l - 2 (C1 T C2^T)_ij   (Prop. 1),
    T_{t+1} = Sinkhorn(a, b, cost = 2 (L (x) T_t) + (+inf where not allowed), eps),

each projection a log-domain Sinkhorn solve (the iteration of ``methods/_blocks/ot.py``
``sinkhorn_log``, Peyré & Cuturi 2019, Sec. 4.4) warm-started from the previous
projection's dual potentials (POT's ``warmstart=True``; ott-jax warm-starts too): the
consecutive linearisations are close, so a projection takes a few iterations where one
from zero takes hundreds. The iterations stop, as ott-jax's ``GromovWasserstein`` does,
once at least ``min_iter`` have run and two consecutive values of the GW cost
sum (L (x) T) . T agree to ``rtol``. The gradient 2 (L (x) T) and eps are POT's: ott-jax
linearises with L (x) T (no factor 2), so its eps is half of ours for the same plan.
Forbidding pairs (``allowed`` False) is the labelled problem of the ``perturbot`` package
that RIMA vendors (``match/ott_egwl.py``: cost + 1 / mask - 1), as long as every row and
column keeps an allowed entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from methods._blocks.ot import pairwise_sq_euclidean


@dataclass(frozen=True)
class GWResult:
    """plan: (n, m) coupling T.  cost: sum_ijkl (C1_ik - C2_jl)^2 T_ij T_kl (POT's
    ``gwloss``).  iterations: projections run.  sinkhorn_iterations: their Sinkhorn
    iterations in all.  converged: the GW cost settled to ``rtol``."""

    plan: Tensor
    cost: Tensor
    iterations: int
    sinkhorn_iterations: int
    converged: bool


def square_loss_tensor(c1: Tensor, c2: Tensor, a: Tensor, b: Tensor, plan: Tensor) -> Tensor:
    """L (x) T for the square loss (Peyré et al. 2016, Prop. 1): (n, m)."""
    constant = (c1.square() @ a)[:, None] + (c2.square() @ b)[None, :]
    return constant - 2 * c1 @ plan @ c2.T


def _projection(
    log_a: Tensor, log_b: Tensor, log_kernel: Tensor, u: Tensor, max_iter: int, tol: float
) -> tuple[Tensor, Tensor, Tensor, int]:
    """Log-domain Sinkhorn from the row potential u: v <- log b - LSE_i(u_i + log K_ij),
    u <- log a - LSE_j(v_j + log K_ij), until ||T 1 - a||_1 < tol (the columns are exact
    after each v-update). Returns (u, v, log T, iterations)."""
    for iteration in range(1, max_iter + 1):
        v = log_b - torch.logsumexp(u[:, None] + log_kernel, dim=0)
        log_plan = u[:, None] + log_kernel + v[None, :]
        log_rows = torch.logsumexp(log_plan, dim=1)
        if (log_rows.exp() - log_a.exp()).abs().sum() < tol or iteration == max_iter:
            break
        u = u + log_a - log_rows
    return u, v, log_plan, iteration


def entropic_gromov_wasserstein(
    c1: Tensor,
    c2: Tensor,
    a: Tensor,
    b: Tensor,
    eps: float,
    allowed: Tensor | None = None,
    max_iter: int = 100,
    min_iter: int = 5,
    rtol: float = 1e-3,
    sinkhorn_max_iter: int = 2000,
    sinkhorn_tol: float = 1e-3,
) -> GWResult:
    """Entropic GW coupling of (C1, a) and (C2, b), without gradients (see the module).

    c1: (n, n) and c2: (m, m) symmetric intra-space costs.  a: (n,), b: (m,) positive masses
    of equal total.  eps: entropic regularisation (POT's ``epsilon``).  allowed: (n, m) bool
    support mask, or None for every pair.  max_iter, min_iter, rtol: projections at most and
    at least, and the relative change of the GW cost that stops them (ott-jax's defaults:
    ``min_iterations=5``, ``threshold=1e-3``).  sinkhorn_max_iter, sinkhorn_tol: of each
    projection (ott-jax's Sinkhorn ``threshold=1e-3``; the code that RIMA vendors allows
    2000 iterations). Float32 or wider; float64 where 2 max|L (x) T| / eps could exceed 1e4.
    """
    with torch.no_grad(), torch.autocast(c1.device.type, enabled=False):
        dtype = torch.promote_types(c1.dtype, torch.float32)
        spread = 2 * float(c1.abs().amax() + c2.abs().amax()) ** 2
        if spread / eps > 1e4:  # what float32 no longer resolves in log T (ot.py's rule)
            dtype = torch.float64
        c1, c2, a, b = (t.detach().to(dtype) for t in (c1, c2, a, b))
        log_a, log_b = a.log(), b.log()
        plan, u = a[:, None] * b[None, :], torch.zeros_like(a)
        costs, sinkhorn_iterations, converged = [], 0, False
        while len(costs) < max_iter and not converged:
            gradient = 2 * square_loss_tensor(c1, c2, a, b, plan)
            if allowed is not None:
                gradient = gradient.masked_fill(~allowed, float("inf"))
            u, _, log_plan, steps = _projection(
                log_a, log_b, -gradient / eps, u, sinkhorn_max_iter, sinkhorn_tol
            )
            plan, sinkhorn_iterations = log_plan.exp(), sinkhorn_iterations + steps
            costs.append((square_loss_tensor(c1, c2, a, b, plan) * plan).sum())
            if len(costs) >= max(min_iter, 2):
                converged = bool((costs[-1] - costs[-2]).abs() <= 1e-8 + rtol * costs[-2].abs())
    return GWResult(plan, costs[-1], len(costs), sinkhorn_iterations, converged)


def max_normalised_sq_distances(x: Tensor) -> Tensor:
    """C_ik = ||x_i - x_k||^2 / max C (ott-jax's ``PointCloud(x, x, scale_cost='max_cost')``),
    float32 or wider; all zeros for a single point or identical points. x: (n, d)."""
    cost = pairwise_sq_euclidean(x, x)
    return cost / cost.amax().clamp_min(torch.finfo(cost.dtype).tiny)


def sample_partners(plan: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One partner j ~ T_i. / sum_j T_ij per row i of a (n, m) plan: (n,) indices."""
    weights = plan.clamp_min(0)
    empty = weights.sum(dim=1, keepdim=True) <= 0
    weights = torch.where(empty, torch.ones_like(weights), weights)
    return torch.multinomial(weights, 1, generator=generator).squeeze(1)


__all__ = [
    "GWResult",
    "entropic_gromov_wasserstein",
    "max_normalised_sq_distances",
    "sample_partners",
    "square_loss_tensor",
]
