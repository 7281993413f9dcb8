"""Fixed-point solvers and implicit backward (methods/_blocks/deq.py), against long unrolled
solves and torchdeq."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchdeq import get_deq

from methods._blocks.deq import (
    anderson,
    broyden,
    deq_solve,
    jacobian_frobenius_estimate,
    unrolled_solve,
)

BATCH, SHAPE, INPUT = 4, (2, 16), 8
DIM = SHAPE[0] * SHAPE[1]
TIGHT = {"max_iter": 200, "tol": 1e-10, "backward_max_iter": 200, "backward_tol": 1e-10}


class Cell(torch.nn.Module):
    """f(z) = tanh(W z + U x + b) on a (B, 2, 16) state; ||W||_2 = 0.7, so f is contractive."""

    def __init__(self, dtype=torch.float64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        w = torch.randn(DIM, DIM, generator=g, dtype=dtype)
        self.W = torch.nn.Parameter(0.7 * w / torch.linalg.matrix_norm(w, 2))
        self.U = torch.nn.Parameter(torch.randn(DIM, INPUT, generator=g, dtype=dtype))
        self.b = torch.nn.Parameter(0.1 * torch.randn(DIM, generator=g, dtype=dtype))
        self.x = torch.randn(BATCH, INPUT, generator=g, dtype=dtype, requires_grad=True)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = torch.tanh(z.flatten(1) @ self.W.T + self.x @ self.U.T + self.b)
        return out.view(-1, *SHAPE)

    def leaves(self) -> list[torch.Tensor]:
        return [self.W, self.U, self.b, self.x]

    def z0(self) -> torch.Tensor:
        return self.W.new_zeros(BATCH, *SHAPE)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def _gradients(cell: Cell, z: torch.Tensor) -> list[torch.Tensor]:
    return torch.autograd.grad(
        (z * torch.linspace(-1, 1, DIM).view(SHAPE)).square().sum(), cell.leaves()
    )


@pytest.fixture(scope="module")
def reference():
    """Fixed point and gradients of a 300-step unrolled solve (error 0.7^300)."""
    cell = Cell()
    z = unrolled_solve(cell, cell.z0(), steps=300)
    return z.detach(), _gradients(cell, z)


@pytest.mark.parametrize("solver", [anderson, broyden])
def test_solvers_reach_the_fixed_point(solver):
    cell = Cell(torch.float32)
    with torch.no_grad():
        result = solver(cell, cell.z0(), tol=1e-4)
        residual = (cell(result.z) - result.z).flatten(1).norm(dim=1)
        relative = residual / cell(result.z).flatten(1).norm(dim=1)
    assert result.converged and result.residual < 1e-4 and result.steps < 55
    assert result.z.shape == (BATCH, *SHAPE) and relative.max() < 1e-4


@pytest.mark.parametrize("solver", ["anderson", "broyden"])
def test_implicit_gradient_matches_long_unrolled_solve(solver, reference):
    cell = Cell()
    z, stats = deq_solve(cell, cell.z0(), solver=solver, **TIGHT)
    assert _relative(z.detach(), reference[0]) < 1e-8
    for implicit, unrolled in zip(_gradients(cell, z), reference[1], strict=True):
        assert _relative(implicit, unrolled) < 1e-3
    assert stats.converged and stats.backward_converged


@pytest.mark.parametrize("solver", ["anderson", "broyden"])
def test_agrees_with_torchdeq(solver):
    cell = Cell()
    deq = get_deq(
        core="indexing",
        ift=True,
        f_solver=solver,
        b_solver=solver,
        f_max_iter=200,
        b_max_iter=200,
        f_tol=1e-10,
        b_tol=1e-10,
        f_stop_mode="rel",
        b_stop_mode="rel",
    )
    (theirs,), _ = deq(cell, cell.z0())
    ours, _ = deq_solve(cell, cell.z0(), solver=solver, **TIGHT)
    assert _relative(ours.detach(), theirs.detach()) < 1e-8
    for a, b in zip(_gradients(cell, ours), _gradients(cell, theirs), strict=True):
        assert _relative(a, b) < 1e-3


def _saved_tensors(solve) -> int:
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    cell = Cell(torch.float32)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        solve(cell, cell.z0())
    return count


def test_graph_does_not_grow_with_forward_iterations():
    def implicit(steps):
        return _saved_tensors(lambda f, z0: deq_solve(f, z0, max_iter=steps, tol=0.0))

    def unrolled(steps):
        return _saved_tensors(lambda f, z0: unrolled_solve(f, z0, steps=steps))

    assert implicit(5) == implicit(40) < unrolled(5)
    assert unrolled(40) - unrolled(5) == 35 * (unrolled(6) - unrolled(5)) > 0


def test_stats_record_forward_and_backward_solves():
    cell = Cell(torch.float32)
    z, stats = deq_solve(cell, cell.z0(), solver="anderson")
    assert 1 < stats.steps <= 55 and stats.residual < 1e-3 and stats.converged
    assert stats.backward_steps == 0
    z.sum().backward()
    assert 0 < stats.backward_steps <= 56 and stats.backward_residual < 1e-4
    assert all(t.grad is not None for t in cell.leaves())


def test_without_grad_returns_the_fixed_point_without_a_graph():
    cell = Cell(torch.float32)
    with torch.no_grad():
        z, stats = deq_solve(cell, cell.z0(), solver="broyden")
    assert z.grad_fn is None and stats.converged


def test_low_precision_layer_under_autocast():
    cell = Cell(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, stats = deq_solve(cell, cell.z0(), tol=1e-2)
    z.float().sum().backward()
    assert stats.converged and all(torch.isfinite(t.grad).all() for t in cell.leaves())


def test_jacobian_frobenius_estimate_is_unbiased_and_differentiable():
    torch.manual_seed(0)
    weight = torch.randn(6, 6, requires_grad=True)
    z = torch.randn(BATCH, 6, requires_grad=True)
    estimate = jacobian_frobenius_estimate(z @ weight.T, z, n_samples=400)
    exact = weight.detach().square().sum() / 6  # ||J||_F^2 / D per sample
    assert abs(estimate.item() / exact.item() - 1) < 0.1
    estimate.backward()
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_nothing_of_the_solve_outlives_the_backward():
    """After backward, while the loss (and so the graph's nodes) is still alive, as it is
    through an optimiser step, no state-sized tensor of the solve may stay referenced."""

    class Track(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.created = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else (out,):
                if isinstance(t, torch.Tensor) and t.shape == (BATCH, *SHAPE):
                    self.created.append(weakref.ref(t))
            return out

    cell = Cell(torch.float32)
    track = Track()
    with track:
        z, _ = deq_solve(cell, cell.z0())
        loss = z.square().sum()
        loss.backward()
    del z
    alive = [ref() for ref in track.created if ref() is not None]
    assert loss.grad_fn is not None and alive == []
    assert all(leaf.grad is not None for leaf in cell.leaves())
