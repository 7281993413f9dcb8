"""Behaviour specific to ``rima``, ``imdr`` and ``deq-fusion`` (beyond the shared contract).

Inputs are precomputed features (backbone ``features``), so every test runs in well under a
second on CPU.
"""

from __future__ import annotations

import pytest
import torch

from bench.errors import ConfigError
from bench.interface import Batch, DatasetInfo, build_method
from methods.imdr import club, product_of_experts
from methods.rima import labelled_barycentric_targets

D = 8


def info(modalities: int = 2, classes: int = 3) -> DatasetInfo:
    return DatasetInfo(
        name="toy",
        classes=tuple(f"c{k}" for k in range(classes)),
        modalities=tuple(f"m{m + 1}" for m in range(modalities)),
        channels=(1,) * modalities,
        image_size=8,
    )


def features_batch(present: list[list[bool]], seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor(present)
    images = tuple(
        torch.randn(len(present), D, generator=g) * mask[:, m, None] for m in range(mask.shape[1])
    )
    return Batch(images, mask)


def build(name: str, modalities: int = 2, **hparams) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_method(
        name, info(modalities), {"backbone": "features", "feature_dim": D, **hparams}
    )


# rima --------------------------------------------------------------------------------------
def test_rima_targets_mix_only_samples_of_the_same_class():
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(6, D, generator=g), torch.randn(6, D, generator=g)
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    goal = labelled_barycentric_targets(source, target, y, eps=0.05)
    for i in range(6):
        same = target[y == y[i]]
        # goal_i lies in the span of its class's targets: least-squares residual ~ 0
        coef = torch.linalg.lstsq(same.T, goal[i, :, None]).solution
        assert torch.allclose(same.T @ coef, goal[i, :, None], atol=1e-4)
    assert torch.allclose(goal[5], target[5], atol=1e-5)  # the only sample of class 2


def test_rima_fills_an_absent_modality_with_its_translation():
    method = build("rima").eval()
    batch = features_batch([[True, False], [False, True], [True, True]])
    with torch.no_grad():
        out = method(batch)
        f1, f2 = batch.images
        expected = torch.stack(
            [
                torch.cat([f1[0], method.translators["1to2"](f1[0:1])[0]]),
                torch.cat([method.translators["2to1"](f2[1:2])[0], f2[1]]),
                torch.cat([f1[2], f2[2]]),
            ]
        )
    assert torch.allclose(out.logits, method.head(expected), atol=1e-6)


def test_rima_without_complete_pairs_has_zero_translation_loss():
    method = build("rima").train()
    batch = features_batch([[True, False], [False, True], [True, False], [False, True]])
    y = torch.tensor([0, 1, 2, 0])
    loss, parts = method.loss(method(batch), batch, y)
    loss.backward()
    assert parts["translate"] == 0.0 and torch.isfinite(loss)


def test_rima_generalises_to_three_modalities():
    method = build("rima", modalities=3)
    assert sorted(method.translators) == ["1to2", "1to3", "2to1", "2to3", "3to1", "3to2"]
    batch = features_batch([[True, True, True], [True, False, True], [False, False, True]] * 2)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss, parts = method.loss(method(batch), batch, y)
    assert torch.isfinite(loss) and parts["translate"] > 0


# imdr --------------------------------------------------------------------------------------
def test_imdr_product_of_experts_ignores_absent_experts():
    g = torch.Generator().manual_seed(0)
    mu, sigma = torch.randn(2, 2, D, generator=g), torch.rand(2, 2, D, generator=g) + 0.1
    present = torch.tensor([[True, False], [False, False]])
    weights = torch.tensor([0.3, 0.7])
    mu_c, sigma_c = product_of_experts(mu, sigma, present, weights)
    changed = mu.clone()
    changed[:, 1] += 100
    assert torch.equal(product_of_experts(changed, sigma, present, weights)[0], mu_c)
    # no expert present: the N(0, I) prior
    assert torch.equal(mu_c[1], torch.zeros(D)) and torch.equal(sigma_c[1], torch.ones(D))
    precision = 1 + 0.3 / sigma[0, 0] ** 2
    assert torch.allclose(sigma_c[0], precision.rsqrt())
    assert torch.allclose(mu_c[0], 0.3 / sigma[0, 0] ** 2 * mu[0, 0] / precision)


def test_imdr_club_is_larger_for_dependent_than_for_independent_pairs():
    g = torch.Generator().manual_seed(0)
    s, noise = torch.randn(64, D, generator=g), torch.randn(64, D, generator=g)
    assert club(s, s + 0.1 * noise) > club(s, noise)


def test_imdr_trains_a_teacher_on_complete_data_then_a_student_from_it():
    method = build("imdr")
    teacher, student = method.stages()
    assert (teacher.name, teacher.epochs, teacher.complete_only) == ("teacher", 0.5, True)
    assert (student.name, student.complete_only) == ("student", False)

    method.set_stage("teacher")
    assert all(p.requires_grad for p in method.teacher.parameters())
    assert not any(p.requires_grad for p in method.student.parameters())
    with torch.no_grad():
        method.teacher.classifier[0].bias.add_(1.0)  # stands for training

    method.set_stage("student")
    assert not any(p.requires_grad for p in method.teacher.parameters())
    assert all(p.requires_grad for p in method.student.parameters())
    for name, value in method.teacher.state_dict().items():
        assert torch.equal(value, method.student.state_dict()[name]), name  # warm start
    assert method.inference_modules() == [method.student]


def test_imdr_student_distils_from_a_frozen_teacher_in_eval_mode():
    method = build("imdr")
    method.set_stage("teacher")
    method.set_stage("student")
    method.train()
    assert method.student.training and not method.teacher.training
    batch = features_batch([[True, True], [True, False], [False, True], [True, False]])
    y = torch.tensor([0, 1, 2, 0])
    loss, parts = method.loss(method(batch), batch, y)
    loss.backward()
    assert parts["kd"] >= 0 and {"ce", "ib", "proxy", "mi", "fit"} <= set(parts)
    assert all(p.grad is None for p in method.teacher.parameters())


def test_imdr_teacher_stage_has_no_distillation_term():
    method = build("imdr")
    method.set_stage("teacher")
    method.train()
    batch = features_batch([[True, True]] * 4)
    _, parts = method.loss(method(batch), batch, torch.tensor([0, 1, 2, 0]))
    assert "kd" not in parts


# deq-fusion --------------------------------------------------------------------------------
def test_deq_fusion_logs_solver_steps_and_residual():
    method = build("deq-fusion", tol=1e-3, max_iter=55).train()
    batch = features_batch([[True, True], [True, False], [False, True], [True, True]])
    loss, parts = method.loss(method(batch), batch, torch.tensor([0, 1, 2, 0]))
    assert 1 <= parts["deq_steps"] <= 55
    assert parts["deq_residual"] < 1e-3  # converges at initialisation
    loss.backward()
    after = method.after_backward()  # the implicit backward's own solve, logged by the loop
    assert 1 <= after["deq_backward_steps"] <= 20 and after["deq_backward_residual"] < 1e-3


def test_deq_fusion_rejects_an_unknown_solver():
    with pytest.raises(ConfigError, match="anderson"):
        build("deq-fusion", solver="newton")


def test_imdr_reads_the_poe_mean_unless_asked_to_sample():
    batch = features_batch([[True, True], [True, False], [False, True]])
    for sample, same in ((False, True), (True, False)):
        method = build("imdr", sample_common=sample).train()
        with torch.no_grad():
            first, second = method(batch).logits, method(batch).logits
        assert torch.equal(first, second) is same
