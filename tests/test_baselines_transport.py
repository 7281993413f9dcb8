"""Behaviour specific to ``rima``, ``imdr`` and ``deq-fusion`` (beyond the shared contract).

Inputs are precomputed features (backbone ``features``), so most tests run in well under a
second on CPU; the mechanism tests train on the tiny synthetic dataset.
"""

from __future__ import annotations

import pytest
import torch

import methods.rima
from bench.errors import ConfigError
from bench.interface import Batch, DatasetInfo, build_method
from bench.spec import TrainSpec
from bench.train import MaskedSplit, fit
from methods._blocks.fusion import PurifyCombineFusion
from methods.imdr import club, product_of_experts
from methods.rima import labelled_gw_plan

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
def complete_splits(data) -> tuple[MaskedSplit, MaskedSplit]:
    return tuple(
        MaskedSplit(split, torch.ones(len(split), 2, dtype=torch.bool))
        for split in (data.train, data.val)
    )


def test_rima_couples_only_samples_of_the_same_class():
    g = torch.Generator().manual_seed(0)
    source, target = torch.randn(6, D, generator=g), torch.randn(6, 2 * D, generator=g)
    y = torch.tensor([0, 0, 1, 1, 1, 2])
    plan = labelled_gw_plan(source, target, y, eps=0.01)
    assert (plan[y[:, None] != y[None, :]] == 0).all()
    assert torch.allclose(plan.sum(1), torch.full((6,), 1 / 6), atol=1e-3)
    assert plan[5, 5] == pytest.approx(1 / 6, abs=1e-3)  # the only sample of class 2


def test_rima_gw_coupling_reads_raw_features_up_to_isometry():
    """GW needs no shared space: rotating or shifting one modality's features changes
    nothing, where a linear OT between the two clouds would."""
    g = torch.Generator().manual_seed(1)
    source, target = torch.randn(8, D, generator=g), torch.randn(8, D, generator=g)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    rotation, _ = torch.linalg.qr(torch.randn(D, D, generator=g))
    plan = labelled_gw_plan(source, target, y, 0.01)
    assert torch.allclose(labelled_gw_plan(source @ rotation + 5, target, y, 0.01), plan, atol=1e-5)


def test_rima_always_fuses_the_translations_even_of_present_modalities():
    method = build("rima").eval()
    batch = features_batch([[True, True], [True, False], [False, True]])
    with torch.no_grad():
        before = method(batch).logits
        method.translators["1to2"][0].bias.add_(1.0)
        after = method(batch).logits
        f1, f2 = batch.images
        expected = torch.cat(
            [
                method.fusions[0](torch.cat([f1, method.translators["2to1"](f2)], -1)),
                method.fusions[1](torch.cat([f2, method.translators["1to2"](f1)], -1)),
            ],
            -1,
        )
    assert not torch.isclose(before[0], after[0]).all()  # a complete pair reads 1 -> 2
    assert torch.equal(before[2], after[2])  # modality 1 is absent: nothing to translate
    expected[1, :D] = method.fusions[0](torch.cat([f1[1], torch.zeros(D)]))  # no 2 -> 1
    expected[2, D:] = method.fusions[1](torch.cat([f2[2], torch.zeros(D)]))  # no 1 -> 2
    assert torch.allclose(after, method.head(expected), atol=1e-6)


def test_rima_translators_learn_from_the_task_loss_on_complete_training_pairs(tiny_data):
    """The mechanism: with --apply-to test every training pair is complete; CE alone
    (w_translate = 0) still trains the translators, because their output is always fused."""
    torch.manual_seed(0)
    method = build_method("rima", tiny_data.info, {"w_translate": 0.0})
    norms, after_backward = [], method.after_backward

    def record():
        norms.append(
            sum(
                float(p.grad.abs().sum())
                for p in method.translators.parameters()
                if p.grad is not None
            )
        )
        return after_backward()

    method.after_backward = record
    fit(method, *complete_splits(tiny_data), TrainSpec(epochs=1), torch.device("cpu"), seed=0)
    assert norms and min(norms) > 0


def test_rima_translation_targets_are_partners_drawn_from_the_coupling(monkeypatch):
    method = build("rima").train()
    batch = features_batch([[True, True]] * 6 + [[True, False]] * 2)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    plans = []
    solve = methods.rima.labelled_gw_plan

    def recording(source, target, labels, eps):
        plans.append((source, target, labels, eps))
        return solve(source, target, labels, eps)

    monkeypatch.setattr(methods.rima, "labelled_gw_plan", recording)
    loss, parts = method.loss(method(batch), batch, y)
    ((source, _, labels, eps),) = plans  # one coupling for the pair, both directions
    assert source.shape == (6, D) and not source.requires_grad and eps == 0.01
    assert torch.equal(source, batch.images[0][:6]) and torch.equal(labels, y[:6])
    assert parts["translate"] > 0 and torch.isfinite(loss)


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


def dropped(full: Batch, keep: list[list[bool]]) -> Batch:
    """``full`` with only the ``keep`` modalities, as the training loop's dropout makes it."""
    mask = torch.tensor(keep)
    images = tuple(x * mask[:, m, None] for m, x in enumerate(full.images))
    return Batch(images, mask, undropped=full)


def test_imdr_student_distils_from_a_frozen_teacher_in_eval_mode():
    method = build("imdr")
    method.set_stage("teacher")
    method.set_stage("student")
    method.train()
    assert method.student.training and not method.teacher.training
    full = features_batch([[True, True], [True, True], [True, True], [True, False]])
    batch = dropped(full, [[True, True], [True, False], [False, True], [True, False]])
    y = torch.tensor([0, 1, 2, 0])
    loss, parts = method.loss(method(batch), batch, y)
    loss.backward()
    assert parts["kd"] > 0 and parts["feat"] > 0 and parts["kd_rows"] == 0.5
    assert {"ce", "ib", "proxy", "mi", "fit"} <= set(parts)
    assert all(p.grad is None for p in method.teacher.parameters())


def test_imdr_teacher_reads_the_undropped_view_on_the_rows_the_student_lacks_one():
    """The mechanism: the teacher's batch holds the modality the student lacks."""
    method = build("imdr")
    method.set_stage("teacher")
    method.set_stage("student")
    method.train()
    seen, forward = [], method.teacher.forward
    method.teacher.forward = lambda batch: seen.append(batch) or forward(batch)
    full = features_batch([[True, True]] * 4)
    batch = dropped(full, [[True, True], [True, False], [False, True], [True, True]])
    out = method(batch)
    (taught,) = seen
    assert taught is full and taught.present.all()
    assert out.extras["kd_rows"].tolist() == [False, True, True, False]
    same_view = build("imdr", cross_modal=False)
    assert [s.modality_dropout for s in same_view.stages()] == [None, None]
    assert method.stages()[1].modality_dropout.scheme == "uniform-count"


def test_imdr_teacher_stage_has_no_distillation_term():
    method = build("imdr")
    method.set_stage("teacher")
    method.train()
    batch = features_batch([[True, True]] * 4)
    _, parts = method.loss(method(batch), batch, torch.tensor([0, 1, 2, 0]))
    assert "kd" not in parts


# deq-fusion --------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["purify-combine", "contraction"])
def test_deq_fusion_logs_solver_steps_and_residual(layer):
    method = build("deq-fusion", tol=1e-3, max_iter=55, layer=layer).train()
    batch = features_batch([[True, True], [True, False], [False, True], [True, True]])
    loss, parts = method.loss(method(batch), batch, torch.tensor([0, 1, 2, 0]))
    assert 1 <= parts["deq_steps"] <= 55 and 0 <= parts["deq_residual"] < 1
    loss.backward()
    after = method.after_backward()  # the implicit backward's own solve, logged by the loop
    assert 1 <= after["deq_backward_steps"] <= 20 and after["deq_backward_residual"] >= 0
    if layer == "contraction":  # contractive from the start: converges at initialisation
        assert parts["deq_residual"] < 1e-3 and after["deq_backward_residual"] < 1e-3


def test_deq_fusion_rejects_an_unknown_solver_or_layer():
    with pytest.raises(ConfigError, match="anderson"):
        build("deq-fusion", solver="newton")
    with pytest.raises(ConfigError, match="purify-combine, contraction"):
        build("deq-fusion", layer="mlp")


def test_deq_fusion_layer_is_the_official_purify_then_combine_layer():
    """z_b' = GN(ReLU(GN(W2 ReLU(GN(W1 z_b)) + h_b) + z_b)); z_f' = GN(ReLU(W_fuse sum_b
    z_f * W_gate(z_b' + z_f) + sum_b w_b h_b + c)), absent branches masked."""
    method = build("deq-fusion")
    fusion = method.fusion
    assert isinstance(fusion, PurifyCombineFusion)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        fusion.injection_weights.copy_(torch.tensor([0.5, 2.0]))
        fusion.injection_bias.fill_(0.3)
        for module in fusion.modules():  # non-trivial norms
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.copy_(torch.rand(D, generator=g) + 0.5)
                module.bias.copy_(torch.randn(D, generator=g))
        z, h = torch.randn(3, 3, D, generator=g), torch.randn(3, 2, D, generator=g)
        present = torch.tensor([[True, True], [True, False], [False, True]])
        out = fusion.layer(z, h, present)

        def branch(b):
            blk = fusion.purify[b]
            inner = blk.norm2(blk.linear2(torch.relu(blk.norm1(blk.linear1(z[:, b])))) + h[:, b])
            return blk.norm3(torch.relu(inner + z[:, b])) * present[:, b, None]

        z_f = z[:, 2]
        purified = [branch(0), branch(1)]
        gated = sum(z_f * fusion.gate(purified[b] + z_f) * present[:, b, None] for b in range(2))
        injection = 0.5 * h[:, 0] + 2.0 * h[:, 1] + 0.3
        fused = fusion.norm(torch.relu(fusion.fuse(gated) + injection))
    assert torch.allclose(out, torch.stack([*purified, fused], 1), atol=1e-5)
    assert (out[1, 1] == 0).all() and (out[2, 0] == 0).all()


def test_deq_fusion_adds_the_jacobian_regulariser_in_training_only():
    method = build("deq-fusion").train()
    batch = features_batch([[True, True], [True, False], [False, True], [True, True]])
    y = torch.tensor([0, 1, 2, 0])
    out = method(batch)
    loss, parts = method.loss(out, batch, y)
    ce = torch.nn.functional.cross_entropy(out.logits, y)
    assert parts["jac"] > 0 and loss.item() == pytest.approx(ce.item() + 0.1 * parts["jac"])
    loss.backward()
    assert method.fusion.gate.weight.grad.abs().sum() > 0
    method.eval()
    with torch.no_grad():
        _, parts = method.loss(method(batch), batch, y)
    assert "jac" not in parts
    off = build("deq-fusion", jac_weight=0.0).train()
    assert "jac" not in off.loss(off(batch), batch, y)[1]


def test_imdr_reads_the_poe_mean_unless_asked_to_sample():
    batch = features_batch([[True, True], [True, False], [False, True]])
    for sample, same in ((False, True), (True, False)):
        method = build("imdr", sample_common=sample).train()
        with torch.no_grad():
            first, second = method(batch).logits, method(batch).logits
        assert torch.equal(first, second) is same
