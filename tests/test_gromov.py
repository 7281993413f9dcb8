"""Entropic Gromov-Wasserstein (methods/_blocks/gromov.py) against POT and its guarantees."""

from __future__ import annotations

import numpy as np
import ot
import pytest
import torch

from methods._blocks.gromov import (
    entropic_gromov_wasserstein,
    max_normalised_sq_distances,
    sample_partners,
)

TIGHT = {"max_iter": 5000, "rtol": 1e-14, "sinkhorn_max_iter": 20_000, "sinkhorn_tol": 1e-13}


def clouds(n: int = 12, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g, dtype=dtype)
    y = torch.randn(n, 3, generator=g, dtype=dtype)
    return max_normalised_sq_distances(x), max_normalised_sq_distances(y)


def uniform(n: int, dtype=torch.float64) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=dtype)


@pytest.mark.parametrize("eps", [0.1, 0.05])
def test_matches_pot_entropic_gromov_wasserstein(eps):
    c1, c2 = clouds()
    a = uniform(12)
    result = entropic_gromov_wasserstein(c1, c2, a, a, eps, **TIGHT)
    plan, log = ot.gromov.entropic_gromov_wasserstein(
        c1.numpy(),
        c2.numpy(),
        a.numpy(),
        a.numpy(),
        "square_loss",
        epsilon=eps,
        max_iter=5000,
        tol=1e-13,
        numItermax=20_000,
        stopThr=1e-13,
        log=True,
    )
    assert result.converged
    np.testing.assert_allclose(result.plan.numpy(), plan, atol=1e-6)
    np.testing.assert_allclose(result.cost.item(), log["gw_dist"], rtol=1e-5)


def test_a_support_mask_matches_pots_iteration_on_the_masked_cost():
    """The labelled problem: POT's own gradient and Sinkhorn, with forbidden pairs priced
    out of the plan, give the same coupling."""
    c1, c2 = clouds(seed=1)
    a = uniform(12)
    labels = torch.tensor([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3])
    allowed = labels[:, None] == labels[None, :]
    result = entropic_gromov_wasserstein(c1, c2, a, a, 0.05, allowed=allowed, **TIGHT)
    p, C1, C2 = a.numpy(), c1.numpy(), c2.numpy()
    const, h1, h2 = ot.gromov.init_matrix(C1, C2, p, p, "square_loss")
    plan = np.outer(p, p)
    for _ in range(500):
        cost = ot.gromov.gwggrad(const, h1, h2, plan) + 1e4 * ~allowed.numpy()
        previous = plan
        plan = ot.sinkhorn(p, p, cost, 0.05, method="sinkhorn_log", stopThr=1e-12)
        if np.abs(plan - previous).max() < 1e-12:
            break
    assert result.converged
    np.testing.assert_allclose(result.plan.numpy(), plan, atol=1e-7)
    assert (result.plan[~allowed] == 0).all()
    np.testing.assert_allclose(result.plan.sum(1).numpy(), p, atol=1e-10)


def test_the_coupling_is_invariant_to_rotations_and_scale_of_either_cloud():
    """GW compares distances within each space: an isometry (and, after max-normalisation,
    a rescaling) of one cloud changes nothing."""
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(10, 4, generator=g, dtype=torch.float64), torch.randn(10, 6, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    a = uniform(10)
    c2 = max_normalised_sq_distances(y.double())
    plan = entropic_gromov_wasserstein(max_normalised_sq_distances(x), c2, a, a, 0.05).plan
    moved = max_normalised_sq_distances(3.0 * x @ rotation + 1.0)
    assert torch.allclose(entropic_gromov_wasserstein(moved, c2, a, a, 0.05).plan, plan, atol=1e-9)


def test_float32_inputs_with_the_default_tolerances_stay_close_to_the_tight_solution():
    c1, c2 = clouds(n=32, seed=3, dtype=torch.float32)
    a = uniform(32, torch.float32)
    loose = entropic_gromov_wasserstein(c1, c2, a, a, 0.01)
    tight = entropic_gromov_wasserstein(
        c1.double(), c2.double(), a.double(), a.double(), 0.01, **TIGHT
    )
    assert loose.plan.dtype == torch.float32 and loose.converged
    assert (loose.plan.double() - tight.plan).abs().sum() < 0.03  # of a total mass of 1


def test_distances_of_a_single_or_repeated_point_are_zero_not_nan():
    assert torch.equal(max_normalised_sq_distances(torch.ones(1, 3)), torch.zeros(1, 1))
    assert torch.equal(max_normalised_sq_distances(torch.ones(4, 3)), torch.zeros(4, 4))


def test_partners_are_drawn_from_each_row_of_the_plan():
    plan = torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [0.0, 0.0, 0.0]])
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_partners(plan, g) for _ in range(2000)])
    assert (draws[:, 0] == 1).all()
    assert (
        set(draws[:, 1].tolist()) == {0, 2} and abs((draws[:, 1] == 0).float().mean() - 0.5) < 0.05
    )
    assert set(draws[:, 2].tolist()) == {0, 1, 2}  # an empty row: any partner
