"""Entropic optimal transport on torch tensors, solved in the log domain.

Balanced (Cuturi, "Sinkhorn Distances", NeurIPS 2013) and unbalanced with KL marginal
relaxation (Chizat, Peyré, Schmitzer, Vialard, "Scaling algorithms for unbalanced optimal
transport problems", Math. Comp. 2018; Frogner et al., NeurIPS 2015), written as in Peyré &
Cuturi, "Computational Optimal Transport" (2019), Sec. 4.4 (log-domain Sinkhorn) and 10.2.

Both solvers iterate on the log-scalings u = f / eps, v = g / eps of the dual potentials,

    log T_ij = u_i + v_j - C_ij / eps + log K0_ij,

with logsumexp reductions only, so eps down to 1e-3 and large costs stay finite. They return
float32 (float64 if an input is float64) with autocast disabled, whatever the caller's
precision; where max |C| / eps exceeds 1e4, beyond what float32 resolves in log T, the
iterations run in float64 and the results are cast back. Costs may hold +inf for forbidden
pairs as long as every row and every column keeps one finite entry; masses a, b must be
positive.

Gradients. With ``detach_plan=True`` (default) the plan is computed without autograd and
``cost = sum(T * C)`` carries the gradient through C only: dcost/dC = T*. By the envelope
theorem T* is the exact gradient of the regularised optimum ``objective`` (what the released
KEDR code back-propagates), not of ``sum(T* . C)``, whose full derivative adds
sum_ij C_ij dT*_ij / dC. With ``detach_plan=False`` autograd goes through every iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

_FLOAT32_LOG_RANGE = 1e4


@dataclass(frozen=True)
class OTResult:
    """Solution of an entropic OT problem of batch shape ``S`` (``()`` for a single one).

    plan: (*S, n, m) transport plan T.  cost: (*S,) transport cost <C, T>.
    objective: (*S,) value of the regularised problem the solver minimised.
    iterations: Sinkhorn iterations run (each updates v, then u).  converged: marginal_error
    below tol for every problem.  marginal_error: largest L1 violation of the row optimality
    condition (see the solvers), over the batch.
    """

    plan: Tensor
    cost: Tensor
    objective: Tensor
    iterations: int
    converged: bool
    marginal_error: float


def pairwise_sq_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """Squared Euclidean cost C_ij = ||x_i - y_j||^2, in float32 or wider.

    Computed as ||x_i||^2 + ||y_j||^2 - 2 <x_i, y_j> (one matmul, no (n, m, d) tensor) after
    translating both clouds by their joint mean (the distance is translation-invariant and the
    cancellation error shrinks with the norms), clamped at 0.

    x: (*S, n, d) points, y: (*S, m, d) points; returns (*S, n, m).
    """
    with torch.autocast(x.device.type, enabled=False):
        dtype = torch.promote_types(torch.promote_types(x.dtype, y.dtype), torch.float32)
        x, y = x.to(dtype), y.to(dtype)
        centre = torch.cat([x, y], dim=-2).mean(dim=-2, keepdim=True).detach()
        x, y = x - centre, y - centre
        sq = x.square().sum(-1)[..., :, None] + y.square().sum(-1)[..., None, :]
        return (sq - 2 * x @ y.mT).clamp_min(0)


def unit_vectors(x: Tensor, centre: Literal["points", "features"] = "points") -> Tensor:
    """Centred, L2-normalised vectors x~ = (x - m) / ||x - m|| row-wise, in float32 or wider.

    ``centre='points'``: m is the mean point of the cloud (over dim -2, the batch);
    ``'features'``: m is each vector's own mean over its features (dim -1), as the released
    KEDR code's ``OT_Attn_assem.normalize_feature`` does (lijing-coder/KEDR@6368bb8:
    model/KEDR.py). x: (*S, n, d); a zero vector stays zero instead of 0 / 0.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        dim = -2 if centre == "points" else -1
        return F.normalize(x - x.mean(dim=dim, keepdim=True), dim=-1)


def max_normalised(cost: Tensor) -> Tensor:
    """C / max(C) over the last two dimensions, with max(C) detached (an all-zero C stays 0)."""
    scale = cost.detach().amax(dim=(-2, -1), keepdim=True)
    return cost / scale.clamp_min(torch.finfo(cost.dtype).tiny)


def normalised_cost(x: Tensor, y: Tensor) -> Tensor:
    """C = D / max(D) with D_ij = ||x~_i - y~_j||^2, x~ = :func:`unit_vectors` of x centred on
    its mean point (likewise y~), and max(D) detached.

    x: (*S, n, d) features, y: (*S, m, d); returns (*S, n, m) in [0, 1], float32 or wider. A
    degenerate cloud (one point, all equal) gives a zero or constant cost instead of 0 / 0.
    (KEDR's released cost centres each vector over its features instead, and its loss uses
    D itself: see :func:`unit_vectors` and ``methods.kedr``.)
    """
    return max_normalised(pairwise_sq_euclidean(unit_vectors(x), unit_vectors(y)))


def sinkhorn_log(
    a: Tensor,
    b: Tensor,
    cost: Tensor,
    eps: float,
    max_iter: int = 1000,
    tol: float = 1e-6,
    detach_plan: bool = True,
) -> OTResult:
    """Balanced entropic OT by log-domain Sinkhorn (Cuturi 2013; Peyré & Cuturi 2019, Sec. 4.4):

        T* = argmin_T <C, T> - eps H(T)   s.t.  T 1 = a,  T^T 1 = b,  T >= 0,
        H(T) = -sum_ij T_ij log T_ij,

    iterating v <- log b - LSE_i(u_i - C_ij / eps), u <- log a - LSE_j(v_j - C_ij / eps) from
    u = v = 0, with T_ij = exp(u_i + v_j - C_ij / eps). Stops when ||T 1 - a||_1 < tol (the
    columns are exact after each v-update). This is POT's ``ot.sinkhorn(a, b, M, reg,
    method='sinkhorn_log')`` with reg = eps; ``objective`` is <C, T> + eps sum T log T.

    a: (n,) or (*S, n) source masses, summing to the same total as b.
    b: (m,) or (*S, m) target masses.
    cost: (n, m) or (*S, n, m) cost matrix C; batch dimensions broadcast against a and b.
    eps: entropic regularisation (> 0).  max_iter: at most this many iterations.
    tol: stopping threshold on the L1 marginal error.
    detach_plan: compute T without autograd; gradients reach C only through <C, T>.
    """
    return _sinkhorn(a, b, cost, eps, math.inf, "entropy", max_iter, tol, detach_plan)


def sinkhorn_unbalanced_log(
    a: Tensor,
    b: Tensor,
    cost: Tensor,
    eps: float,
    reg_m: float,
    reg_type: Literal["kl", "entropy"] = "kl",
    max_iter: int = 1000,
    tol: float = 1e-6,
    detach_plan: bool = True,
) -> OTResult:
    """Unbalanced entropic OT with KL-relaxed marginals, by the log-domain scaling algorithm
    of Chizat et al. 2018 (the KL proximal step of each marginal in closed form):

        T* = argmin_{T >= 0} <C, T> + eps KL(T | K0) + reg_m KL(T 1 | a) + reg_m KL(T^T 1 | b),
        KL(p | q) = sum p log(p / q) - p + q,

    K0 = a b^T for ``reg_type='kl'`` and K0 = 1 1^T for ``'entropy'`` (eps KL(T | 1 1^T) is
    -eps H(T) with H(T) = -sum T (log T - 1)); these are POT's ``reg_type`` options of
    ``ot.unbalanced.sinkhorn_unbalanced`` (default 'kl' since POT 0.9.5). With
    phi = reg_m / (reg_m + eps) and log T_ij = u_i + v_j - C_ij / eps + log K0_ij, iterate

        v_j <- phi (log b_j - LSE_i(u_i - C_ij / eps + log K0_ij)),
        u_i <- phi (log a_i - LSE_j(v_j - C_ij / eps + log K0_ij)),

    from u = v = 0. At the optimum T 1 = a exp(-eps u / reg_m) (and likewise for columns,
    exact after each v-update); iterations stop when ||T 1 - a exp(-eps u / reg_m)||_1 < tol.
    reg_m = inf recovers the balanced problem.

    a: (n,) or (*S, n) positive source masses.  b: (m,) or (*S, m) positive target masses.
    cost: (n, m) or (*S, n, m) cost matrix C; batch dimensions broadcast against a and b.
    eps: entropic regularisation (> 0), POT's ``reg``.  reg_m: marginal relaxation (> 0).
    reg_type: reference measure K0 of the entropic term, as above.
    max_iter, tol, detach_plan: as in :func:`sinkhorn_log`.
    """
    return _sinkhorn(a, b, cost, eps, reg_m, reg_type, max_iter, tol, detach_plan)


def _sinkhorn(
    a: Tensor,
    b: Tensor,
    cost: Tensor,
    eps: float,
    reg_m: float,
    reg_type: str,
    max_iter: int,
    tol: float,
    detach_plan: bool,
) -> OTResult:
    """Shared log-domain iteration of :func:`sinkhorn_log` and :func:`sinkhorn_unbalanced_log`."""
    if reg_type not in ("kl", "entropy"):
        raise ValueError(f"reg_type must be 'kl' or 'entropy', got {reg_type!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    with torch.autocast(cost.device.type, enabled=False):
        wide = torch.float64 in (a.dtype, b.dtype, cost.dtype)
        dtype = torch.float64 if wide else torch.float32
        finite = cost.detach().abs().nan_to_num(posinf=0.0)
        # float32 resolves log T only to ~1e-3 once |C| / eps passes 1e4: solve in float64.
        work = torch.float64 if finite.amax().item() / eps > _FLOAT32_LOG_RANGE else dtype
        batch = torch.broadcast_shapes(cost.shape[:-2], a.shape[:-1], b.shape[:-1])
        n, m = cost.shape[-2:]
        cost = cost.to(work).expand(*batch, n, m)
        a = a.to(work).detach().expand(*batch, n)
        b = b.to(work).detach().expand(*batch, m)
        log_a, log_b = a.log(), b.log()
        phi = 1.0 if math.isinf(reg_m) else reg_m / (reg_m + eps)

        with torch.set_grad_enabled(torch.is_grad_enabled() and not detach_plan):
            log_kernel = -cost / eps
            if reg_type == "kl":
                log_kernel = log_kernel + log_a[..., :, None] + log_b[..., None, :]
            u = torch.zeros_like(log_a)
            for iteration in range(1, max_iter + 1):
                u_kernel = u[..., :, None] + log_kernel
                v = phi * (log_b - torch.logsumexp(u_kernel, dim=-2))
                log_plan = u_kernel + v[..., None, :]
                log_rows = torch.logsumexp(log_plan, dim=-1)  # log T 1
                row_target = a if math.isinf(reg_m) else a * torch.exp(-eps * u / reg_m)
                error = (torch.exp(log_rows) - row_target).abs().sum(-1).max().item()
                if error < tol or iteration == max_iter:
                    break
                u = phi * (log_a - (log_rows - u))
            plan = torch.exp(log_plan)

        transport = (plan * torch.where(plan > 0, cost, 0)).sum((-2, -1))
        regulariser = _regulariser(
            plan.detach() if detach_plan else plan, a, b, eps, reg_m, reg_type
        )
        plan, transport, objective = (
            t.to(dtype) for t in (plan, transport, transport + regulariser)
        )
    return OTResult(plan, transport, objective, iteration, error < tol, error)


def _regulariser(
    plan: Tensor, a: Tensor, b: Tensor, eps: float, reg_m: float, reg_type: str
) -> Tensor:
    """eps KL(T | K0) + reg_m (KL(T 1 | a) + KL(T^T 1 | b)); eps sum T log T when balanced."""
    if math.isinf(reg_m):
        return eps * torch.xlogy(plan, plan).sum((-2, -1))
    reference = a[..., :, None] * b[..., None, :] if reg_type == "kl" else torch.ones_like(plan)
    rows, cols = plan.sum(-1), plan.sum(-2)
    return eps * _kl(plan, reference).sum(-1) + reg_m * (_kl(rows, a) + _kl(cols, b))


def _kl(p: Tensor, q: Tensor) -> Tensor:
    """Generalised KL(p | q) = sum p log(p / q) - p + q over the last dimension."""
    return (torch.xlogy(p, p) - torch.xlogy(p, q) - p + q).sum(-1)
