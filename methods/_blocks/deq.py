"""Deep-equilibrium fixed points with an implicit-differentiation backward.

A DEQ layer outputs z* = f(z*) for f(z) = F_theta(z, x) (Bai, Kolter, Koltun, "Deep Equilibrium
Models", NeurIPS 2019). The forward pass finds z* with a root solver under ``no_grad``; the
backward pass differentiates the equilibrium condition (implicit function theorem, Bai et al.
2019, Thm. 1): for a loss l,

    dl/dtheta = (dl/dz*) (I - J_f(z*))^{-1} df/dtheta,

obtained by solving the adjoint fixed point  g = J_f(z*)^T g + dl/dz*  with the same solver,
using vector-Jacobian products, then back-propagating g through one differentiable call
f(z*). Memory does not grow with the number of solver iterations.

Every solver works per sample on z of shape (B, ...) flattened to (B, D), and measures the
relative residual  r = ||f(z) - z||_2 / ||f(z)||_2  per sample (Euclidean norm over the D
entries); ``tol`` bounds its maximum over the batch. Solvers keep the iterate of lowest
residual per sample and return f of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

Map = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class SolverStats:
    """z: (B, ...) solution f(z_k) at the best iterate z_k, in z0's dtype.  steps: evaluations
    of f.  residual: max over the batch of ||f(z_k) - z_k||_2 / ||f(z_k)||_2.  converged:
    residual < tol."""

    z: Tensor
    steps: int
    residual: float
    converged: bool


@dataclass
class DEQStats:
    """Solver statistics of one :func:`deq_solve` call, for logging. The backward fields are
    filled in when autograd runs the implicit backward (NaN / 0 until then). ``jacobian`` is
    the differentiable Jacobian estimate when :func:`deq_solve` was asked for one."""

    steps: int
    residual: float
    converged: bool
    backward_steps: int = 0
    backward_residual: float = math.nan
    backward_converged: bool = False
    jacobian: Tensor | None = None


class _Best:
    """Per-sample lowest-residual estimate f(z_k) over the iterations of a solver."""

    def __init__(self, fx: Tensor) -> None:
        self.fx = fx.clone()
        self.residual = torch.full(fx.shape[:1], math.inf, dtype=fx.dtype, device=fx.device)

    def update(self, x: Tensor, fx: Tensor) -> float:
        """Record f(x) where its relative residual improves; return the batch's worst best."""
        norm = fx.norm(dim=1).clamp_min(torch.finfo(fx.dtype).tiny)
        residual = (fx - x).norm(dim=1) / norm
        better = residual < self.residual
        self.fx = torch.where(better[:, None], fx, self.fx)
        self.residual = torch.where(better, residual, self.residual)
        return self.residual.max().item()


def _flat(f: Map, z0: Tensor) -> tuple[Map, Tensor]:
    """f as a map (B, D) -> (B, D) in float32 or wider, and z0 flattened the same way."""
    dtype = torch.promote_types(z0.dtype, torch.float32)
    shape = z0.shape

    def flat_f(x: Tensor) -> Tensor:
        return f(x.view(shape).to(z0.dtype)).reshape(shape[0], -1).to(dtype)

    return flat_f, z0.detach().reshape(shape[0], -1).to(dtype)


def anderson(
    f: Map,
    z0: Tensor,
    m: int = 6,
    lam: float = 1e-4,
    max_iter: int = 55,
    tol: float = 1e-3,
    beta: float = 1.0,
) -> SolverStats:
    """Anderson acceleration of z = f(z) (Walker & Ni, SIAM J. Numer. Anal. 2011, Alg. AA with
    mixing beta; regularised as in Bai et al. 2019). With the last n = min(k + 1, m) iterates
    z_i and residuals G_i = f(z_i) - z_i (rows of G, n x D), per sample:

        alpha = argmin_{1^T alpha = 1} ||G^T alpha||^2 + lam ||alpha||^2
              = H^{-1} 1 / (1^T H^{-1} 1),   H = G G^T + lam I,
        z_{k+1} = beta sum_i alpha_i f(z_i) + (1 - beta) sum_i alpha_i z_i,

    starting from z_0 (so z_1 = f(z_0) when beta = 1).

    f: map of tensors shaped like z0, f(z) = F(z, x).  z0: (B, ...) initial guess.
    m: history size.  lam: Tikhonov regularisation of the least squares.
    max_iter: evaluations of f at most.  tol: on the max relative residual.  beta: mixing.
    """
    flat_f, x = _flat(f, z0)
    batch, dim = x.shape
    history_f = x.new_zeros(batch, m, dim)  # f(z_i)
    history_g = x.new_zeros(batch, m, dim)  # G_i = f(z_i) - z_i
    gram = x.new_zeros(batch, m, m)  # G G^T, one row and column updated per step
    best = _Best(x)
    for k in range(max_iter):
        fx = flat_f(x)
        worst = best.update(x, fx)
        if worst < tol or k == max_iter - 1:
            break
        slot, n = k % m, min(k + 1, m)
        history_f[:, slot], history_g[:, slot] = fx, fx - x
        with torch.autocast(x.device.type, enabled=False):
            dots = (history_g * history_g[:, slot, None]).sum(-1)
            gram[:, slot], gram[:, :, slot] = dots, dots
            regularised = gram[:, :n, :n] + lam * torch.eye(n, dtype=x.dtype, device=x.device)
            weights = torch.linalg.solve(regularised, x.new_ones(batch, n, 1))
            alpha = weights / weights.sum(dim=1, keepdim=True)
            mixed_f = (alpha * history_f[:, :n]).sum(1)
            mixed_g = (alpha * history_g[:, :n]).sum(1)
            x = mixed_f - (1 - beta) * mixed_g  # beta sum a_i f(z_i) + (1 - beta) sum a_i z_i
    return SolverStats(best.fx.view(z0.shape).to(z0.dtype), k + 1, worst, worst < tol)


def broyden(f: Map, z0: Tensor, max_iter: int = 55, tol: float = 1e-3) -> SolverStats:
    """Broyden's "good" method for the root of g(z) = f(z) - z (Broyden, Math. Comp. 1965),
    with the inverse Jacobian kept in low-rank form as in Bai et al. 2019, per sample:

        J_g^{-1} ~ B_k = -I + sum_{i<k} u_i v_i^T,       z_{k+1} = z_k - B_k g(z_k),
        B_{k+1} = B_k + (dz - B_k dg) dz^T B_k / (dz^T B_k dg),
        dz = z_{k+1} - z_k,  dg = g(z_{k+1}) - g(z_k),

    i.e. u_k = (dz - B_k dg) / (dz^T B_k dg) and v_k = B_k^T dz; no line search. A rank-one
    update with a vanishing denominator is skipped.

    f, z0, max_iter, tol: as in :func:`anderson`.
    """
    flat_f, x = _flat(f, z0)
    batch, dim = x.shape
    us = x.new_zeros(batch, max_iter, dim)
    vs = x.new_zeros(batch, max_iter, dim)

    def inverse_jacobian(y: Tensor, k: int) -> Tensor:  # B_k y
        return -y + torch.einsum("bkd,bk->bd", us[:, :k], torch.einsum("bkd,bd->bk", vs[:, :k], y))

    def inverse_jacobian_t(y: Tensor, k: int) -> Tensor:  # B_k^T y
        return -y + torch.einsum("bkd,bk->bd", vs[:, :k], torch.einsum("bkd,bd->bk", us[:, :k], y))

    fx = flat_f(x)
    gx = fx - x
    best = _Best(x)
    worst = best.update(x, fx)
    steps = 1
    for k in range(max_iter - 1):
        if worst < tol:
            break
        step = -inverse_jacobian(gx, k)
        x = x + step
        fx = flat_f(x)
        steps += 1
        worst = best.update(x, fx)
        g_new = fx - x
        dg = g_new - gx
        v = inverse_jacobian_t(step, k)
        denominator = (v * dg).sum(dim=1)
        ok = denominator.abs() > torch.finfo(x.dtype).tiny
        u = (step - inverse_jacobian(dg, k)) / torch.where(ok, denominator, 1.0)[:, None]
        us[:, k] = torch.where(ok[:, None], u, 0.0)
        vs[:, k] = torch.where(ok[:, None], v, 0.0)
        gx = g_new
    return SolverStats(best.fx.view(z0.shape).to(z0.dtype), steps, worst, worst < tol)


SOLVERS: dict[str, Callable[..., SolverStats]] = {"anderson": anderson, "broyden": broyden}


class _ImplicitBackward(torch.autograd.Function):
    """Identity on z_out = f(z_in) whose backward swaps the incoming gradient v for the
    solution g of the adjoint fixed point g = J_f(z_in)^T g + v (Bai et al. 2019, Thm. 1).
    The backward then lets go of z_in and z_out, which would otherwise live on in this node
    for as long as the loss tensor does (through the optimiser step)."""

    @staticmethod
    def forward(
        ctx: Any,
        z_out: Tensor,
        z_in: Tensor,
        solve: Callable[..., SolverStats],
        stats: DEQStats,
        max_iter: int,
        tol: float,
    ) -> Tensor:
        # z_out keeps its graph to z_in: the backward reuses it for J^T g products.
        ctx.z_out, ctx.z_in, ctx.solve, ctx.stats = z_out, z_in, solve, stats
        ctx.max_iter, ctx.tol = max_iter, tol
        return z_out.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        z_out, z_in = ctx.z_out, ctx.z_in

        def adjoint(g: Tensor) -> Tensor:
            vjp = torch.autograd.grad(z_out, z_in, g.to(z_out.dtype), retain_graph=True)[0]
            return vjp.to(g.dtype) + grad.to(g.dtype)

        result = ctx.solve(adjoint, torch.zeros_like(grad), max_iter=ctx.max_iter, tol=ctx.tol)
        ctx.stats.backward_steps = result.steps
        ctx.stats.backward_residual = result.residual
        ctx.stats.backward_converged = result.converged
        ctx.z_out = ctx.z_in = ctx.solve = None
        return result.z.to(grad.dtype), None, None, None, None, None


def deq_solve(
    f: Map,
    z0: Tensor,
    solver: str = "anderson",
    max_iter: int = 55,
    tol: float = 1e-3,
    backward_max_iter: int = 56,
    backward_tol: float = 1e-4,
    jacobian_samples: int = 0,
    **solver_kwargs: Any,
) -> tuple[Tensor, DEQStats]:
    """Equilibrium z* = f(z*) with implicit gradients (Bai, Kolter, Koltun, NeurIPS 2019).

    Forward: z* from ``solver`` under ``no_grad``; then one differentiable call z = f(z*),
    which carries the gradients to the parameters of f and to every tensor f closes over
    (the injected input x of f(z) = F_theta(z, x)). Backward: the incoming gradient v is
    replaced by g solving g = J_f(z*)^T g + v, with the same solver (``backward_max_iter``,
    ``backward_tol``), so that dl/dtheta = g^T df(z*)/dtheta. Autograd stores one call of f,
    whatever the number of iterations, and nothing of it outlives the backward. With grad
    disabled, returns z* with no extra call.

    f: map of tensors shaped like z0.  z0: (B, ...) initial state (DEQ fusion: zeros).
    solver: 'anderson' or 'broyden'.  max_iter, tol: forward solver budget and tolerance
    on the relative residual.  jacobian_samples: when > 0 (and grad is enabled),
    ``stats.jacobian`` holds :func:`jacobian_frobenius_estimate` of f at z* with that many
    probes, differentiable, for a Jacobian regulariser (Bai, Koltun, Kolter, ICML 2021).
    solver_kwargs: extra arguments of the solver (Anderson m, lam, beta), used forward and
    backward.
    Returns (z of z0's shape, stats); stats' backward fields fill in during backward.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")

    def solve(fn: Map, start: Tensor, max_iter: int, tol: float) -> SolverStats:
        return SOLVERS[solver](fn, start, max_iter=max_iter, tol=tol, **solver_kwargs)

    with torch.no_grad():
        result = solve(f, z0, max_iter, tol)
    stats = DEQStats(result.steps, result.residual, result.converged)
    if not torch.is_grad_enabled():
        return result.z, stats
    # z* enters the graph as z* + (a 0-d zero leaf): the vector-Jacobian products need z_in
    # to require grad, and as a non-leaf it is freed with the graph, where a leaf z_in and a
    # .grad of its size would stay alive in its AccumulateGrad node as long as the loss does.
    anchor = torch.zeros((), dtype=result.z.dtype, device=result.z.device, requires_grad=True)
    z_in = result.z.detach() + anchor
    f_out = f(z_in)
    if jacobian_samples > 0:
        stats.jacobian = jacobian_frobenius_estimate(f_out, z_in, jacobian_samples)
    z_out = _ImplicitBackward.apply(f_out, z_in, solve, stats, backward_max_iter, backward_tol)
    return z_out, stats


def unrolled_solve(f: Map, z0: Tensor, steps: int = 30) -> Tensor:
    """z_{k+1} = f(z_k) for a fixed number of steps, every step kept in the autograd graph.

    The slow reference (what the released KEDR code does): backpropagation through the
    iterations, memory and backward time linear in ``steps``. f: map of tensors shaped like
    z0; z0: (B, ...) initial state.
    """
    z = z0
    for _ in range(steps):
        z = f(z)
    return z


def jacobian_frobenius_estimate(f_out: Tensor, z: Tensor, n_samples: int = 1) -> Tensor:
    """Hutchinson estimate of ||J_f(z)||_F^2 / (B D), differentiable (Bai, Koltun, Kolter,
    "Stabilizing Equilibrium Models by Jacobian Regularization", ICML 2021):

        ||J||_F^2 = E_{e ~ N(0, I)} ||e^T J||_2^2,

    averaged over ``n_samples`` Gaussian probes and divided by the number of entries B D.

    f_out: (B, ...) output f(z) with its graph to z.  z: (B, ...) input, requires grad
    (e.g. z* detached, then ``requires_grad_()``, then f_out = f(z)).
    """
    total = f_out.new_zeros(())
    for _ in range(n_samples):
        probe = torch.randn_like(f_out)
        (vjp,) = torch.autograd.grad(f_out, z, probe, retain_graph=True, create_graph=True)
        total = total + vjp.square().sum()
    return total / (n_samples * f_out.numel())
