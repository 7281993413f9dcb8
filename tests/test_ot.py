"""Log-domain entropic OT (methods/_blocks/ot.py) against POT and its own guarantees."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch
import torch.nn.functional as F

from methods._blocks.ot import (
    max_normalised,
    normalised_cost,
    pairwise_sq_euclidean,
    sinkhorn_log,
    sinkhorn_unbalanced_log,
    unit_vectors,
)


def _problem(n: int = 7, m: int = 5, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=dtype) + 0.1
    b = torch.rand(m, generator=g, dtype=dtype) + 0.1
    cost = torch.rand(n, m, generator=g, dtype=dtype)
    return a / a.sum(), b / b.sum(), cost


def _uniform(n: int, dtype=torch.float32) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=dtype)


def test_balanced_matches_pot_sinkhorn_log():
    a, b, cost = _problem()
    result = sinkhorn_log(a, b, cost, eps=0.05, max_iter=10_000, tol=1e-12)
    plan = ot.sinkhorn(
        a.numpy(),
        b.numpy(),
        cost.numpy(),
        0.05,
        method="sinkhorn_log",
        stopThr=1e-13,
        numItermax=10_000,
    )
    assert result.converged
    np.testing.assert_allclose(result.plan.numpy(), plan, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(result.cost.item(), (plan * cost.numpy()).sum(), rtol=1e-5)


@pytest.mark.parametrize("reg_type", ["kl", "entropy"])
def test_unbalanced_matches_pot_sinkhorn_stabilized(reg_type):
    a, b, cost = _problem(seed=1)
    result = sinkhorn_unbalanced_log(
        a, b, cost, eps=0.05, reg_m=0.5, reg_type=reg_type, max_iter=10_000, tol=1e-12
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns that reg_type='entropy' overrides c
        plan = ot.unbalanced.sinkhorn_unbalanced(
            a.numpy(),
            b.numpy(),
            cost.numpy(),
            0.05,
            0.5,
            method="sinkhorn_stabilized",
            reg_type=reg_type,
            stopThr=1e-15,
            numItermax=10_000,
        )
    assert result.converged
    np.testing.assert_allclose(result.plan.numpy(), plan, rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(result.cost.item(), (plan * cost.numpy()).sum(), rtol=1e-5)


def test_unbalanced_reference_measure_changes_the_plan():
    a, b, cost = _uniform(8, torch.float64), _uniform(8, torch.float64), _problem(8, 8)[2]
    kl = sinkhorn_unbalanced_log(a, b, cost, eps=0.1, reg_m=0.5, reg_type="kl")
    entropy = sinkhorn_unbalanced_log(a, b, cost, eps=0.1, reg_m=0.5, reg_type="entropy")
    assert abs(kl.plan.sum().item() - entropy.plan.sum().item()) > 0.1


def test_unbalanced_with_infinite_relaxation_is_balanced():
    a, b, cost = _problem(seed=2)
    balanced = sinkhorn_log(a, b, cost, eps=0.1, tol=1e-10)
    relaxed = sinkhorn_unbalanced_log(a, b, cost, eps=0.1, reg_m=float("inf"), tol=1e-10)
    torch.testing.assert_close(relaxed.plan, balanced.plan)


@pytest.mark.parametrize("unbalanced", [False, True])
def test_small_eps_and_huge_features_stay_finite(unbalanced):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 16, generator=g) * torch.logspace(0, 4, 32)[:, None]
    y = torch.randn(32, 16, generator=g) * 1e4
    u = _uniform(32)
    for cost in (normalised_cost(x, y), pairwise_sq_euclidean(x, y)):
        if unbalanced:
            result = sinkhorn_unbalanced_log(u, u, cost, eps=1e-3, reg_m=0.5, max_iter=200)
        else:
            result = sinkhorn_log(u, u, cost, eps=1e-3, max_iter=200)
        assert result.plan.dtype == torch.float32
        assert torch.isfinite(result.plan).all() and torch.isfinite(result.cost)
        assert (result.plan >= 0).all() and result.plan.sum() <= 1 + 1e-4
        if not unbalanced:  # columns are exact after every iteration
            torch.testing.assert_close(result.plan.sum(0), u, rtol=1e-3, atol=1e-6)


def test_batched_equals_looped():
    g = torch.Generator().manual_seed(4)
    cost = torch.rand(3, 6, 9, generator=g, dtype=torch.float64)
    a = torch.softmax(torch.randn(3, 6, generator=g, dtype=torch.float64), -1)
    b = _uniform(9, torch.float64)  # shared by the batch: broadcasts
    for solve, kwargs in ((sinkhorn_log, {}), (sinkhorn_unbalanced_log, {"reg_m": 0.5})):
        batched = solve(a, b, cost, eps=0.1, tol=1e-12, **kwargs)
        assert batched.plan.shape == (3, 6, 9) and batched.cost.shape == (3,)
        for i in range(3):
            single = solve(a[i], b, cost[i], eps=0.1, tol=1e-12, **kwargs)
            torch.testing.assert_close(batched.plan[i], single.plan)
            torch.testing.assert_close(batched.cost[i], single.cost)


def test_converged_flag_and_marginal_error():
    a, b, cost = _problem(dtype=torch.float32)
    easy = sinkhorn_log(a, b, cost, eps=0.5)
    assert easy.converged and easy.marginal_error < 1e-6 and easy.iterations < 100
    torch.testing.assert_close(easy.plan.sum(-1), a, atol=1e-6, rtol=0)
    torch.testing.assert_close(easy.plan.sum(-2), b, atol=1e-6, rtol=0)
    cut = sinkhorn_log(a, b, cost, eps=0.01, max_iter=1)
    assert not cut.converged and cut.iterations == 1 and cut.marginal_error > 1e-6


def test_detached_gradient_is_the_envelope_gradient():
    """dcost/dC with the plan detached is T*, the gradient of the regularised optimum, which
    autograd through the unrolled iterations reproduces at convergence."""
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(2, 12, 4, generator=g, dtype=torch.float64)
    cost = normalised_cost(x, y).detach().requires_grad_()
    u = _uniform(12, torch.float64)
    for solve, kwargs in ((sinkhorn_log, {}), (sinkhorn_unbalanced_log, {"reg_m": 0.5})):
        envelope = solve(u, u, cost, eps=0.1, tol=1e-10, **kwargs)
        (grad_envelope,) = torch.autograd.grad(envelope.cost, cost)
        torch.testing.assert_close(grad_envelope, envelope.plan)
        unrolled = solve(u, u, cost, eps=0.1, tol=1e-10, detach_plan=False, **kwargs)
        (grad_unrolled,) = torch.autograd.grad(unrolled.objective, cost)
        torch.testing.assert_close(grad_unrolled, grad_envelope, rtol=1e-4, atol=1e-7)


def test_gradient_reaches_features_through_normalised_cost():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(16, 8, generator=g, requires_grad=True)
    y = torch.randn(16, 8, generator=g)
    u = _uniform(16)
    sinkhorn_unbalanced_log(u, u, normalised_cost(x, y), eps=0.1, reg_m=0.5).cost.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_under_autocast_give_a_float32_plan(dtype):
    g = torch.Generator().manual_seed(7)
    x, y = torch.randn(2, 24, 8, generator=g).to(dtype)
    u = _uniform(24).to(dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cost = normalised_cost(x, y)
        result = sinkhorn_log(u, u, cost.to(dtype), eps=0.05)
    assert cost.dtype == result.plan.dtype == result.cost.dtype == torch.float32
    assert result.converged and torch.isfinite(result.plan).all()


def test_pairwise_sq_euclidean_is_accurate_far_from_the_origin():
    g = torch.Generator().manual_seed(8)
    offset = 1e4 * torch.randn(1, 8, generator=g, dtype=torch.float64)
    x = offset + torch.randn(5, 8, generator=g, dtype=torch.float64)
    y = offset + torch.randn(6, 8, generator=g, dtype=torch.float64)
    x, y = x.float(), y.float()  # the reference sees the same rounded inputs
    expected = torch.cdist(x.double(), y.double()).square().float()
    torch.testing.assert_close(pairwise_sq_euclidean(x, y), expected, rtol=1e-4, atol=1e-3)


def test_normalised_cost_is_in_unit_range_and_safe_for_one_sample():
    g = torch.Generator().manual_seed(9)
    cost = normalised_cost(torch.randn(10, 4, generator=g), torch.randn(3, 4, generator=g))
    assert cost.shape == (10, 3) and cost.min() >= 0 and cost.max() == 1
    single = normalised_cost(torch.randn(1, 4, generator=g), torch.randn(1, 4, generator=g))
    assert torch.isfinite(single).all()
    result = sinkhorn_log(_uniform(1), _uniform(1), single, eps=0.1)
    assert torch.isfinite(result.cost) and result.converged


def test_infinite_costs_are_never_transported():
    a, b, cost = _problem(6, 6, seed=10)
    forbidden = torch.eye(6, dtype=torch.bool)
    result = sinkhorn_log(a, b, cost.masked_fill(forbidden, float("inf")), eps=0.1)
    assert result.converged and torch.isfinite(result.cost)
    assert (result.plan[forbidden] == 0).all()


def test_unit_vectors_centre_over_the_batch_or_over_each_vectors_features():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64) + torch.arange(6.0)[:, None]
    by_features = unit_vectors(x, "features")
    torch.testing.assert_close(by_features.mean(-1), torch.zeros(6, dtype=torch.float64))
    torch.testing.assert_close(by_features.norm(dim=-1), torch.ones(6, dtype=torch.float64))
    shifted = x + torch.randn(6, 1, generator=g, dtype=torch.float64)  # a constant per row
    torch.testing.assert_close(unit_vectors(shifted, "features"), by_features)
    by_points = unit_vectors(x)
    torch.testing.assert_close(by_points, F.normalize(x - x.mean(0), dim=-1))
    assert not torch.allclose(unit_vectors(shifted), by_points)
    assert torch.equal(unit_vectors(torch.ones(1, 4), "features"), torch.zeros(1, 4))


def test_normalised_cost_is_max_normalised_batch_centred_cost():
    """The cost RIMA uses stays as it was: batch-centred clouds, divided by the detached max."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(7, 4, generator=g, requires_grad=True)
    y = torch.randn(5, 4, generator=g)
    raw = torch.cdist(F.normalize(x - x.mean(0), dim=1), F.normalize(y - y.mean(0), dim=1)) ** 2
    cost = normalised_cost(x, y)
    torch.testing.assert_close(cost, raw / raw.max(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(max_normalised(raw), raw / raw.max())
    (grad,) = torch.autograd.grad(cost.sum(), x)
    (expected,) = torch.autograd.grad((raw / raw.max().detach()).sum(), x)
    torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5)
