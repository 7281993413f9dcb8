"""Method-specific behaviour of the staged baselines: distill, shaspec, momke."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import methods.shaspec
from bench.errors import ConfigError, DataError
from bench.interface import Batch, build_method, hparam_names
from bench.spec import TrainSpec
from bench.train import MaskedSplit, fit, make_batch
from methods._blocks.distillation import cross_modal_rows, present_feature_mse, soft_target_kl
from methods.shaspec import fill_absent, shared_alignment

CPU = torch.device("cpu")
MIXED = [[True, True], [True, False], [False, True], [True, False]]


def batch_of(data, present: list[list[bool]]) -> Batch:
    rows = torch.tensor(present + [[True, True]] * (len(data.train) - len(present)))
    return make_batch(MaskedSplit(data.train, rows), torch.arange(len(present)), CPU)


def build(name, data, **hparams):
    torch.manual_seed(0)
    return build_method(name, data.info, hparams)


def trainable(module) -> set[bool]:
    return {p.requires_grad for p in module.parameters()}


def complete_splits(data) -> tuple[MaskedSplit, MaskedSplit]:
    """Train and validation splits with every modality: ``--apply-to test``'s training."""
    return tuple(
        MaskedSplit(split, torch.ones(len(split), 2, dtype=torch.bool))
        for split in (data.train, data.val)
    )


def record_training_calls(method, module, name="forward"):
    """Wrap ``module.<name>``: the (stage, batch) of each call made while ``method`` trains."""
    calls, original = [], getattr(module, name)

    def recording(batch):
        if method.training:
            calls.append((method.stage, batch))
        return original(batch)

    setattr(module, name, recording)
    return calls


class FirstChoiceTrial:
    """A stand-in for an Optuna trial that takes the lowest value of every range."""

    def suggest_float(self, name, low, high, log=False):
        return low

    def suggest_int(self, name, low, high):
        return low

    def suggest_categorical(self, name, choices):
        return choices[0]


@pytest.mark.parametrize("name", ["distill", "shaspec", "momke"])
def test_search_space_names_own_hyper_parameters_that_build(name, tiny_data):
    method_cls = type(build(name, tiny_data))
    space = method_cls.search_space(FirstChoiceTrial())
    assert space and set(space) <= set(hparam_names(method_cls))
    build(name, tiny_data, **space)


# distill -------------------------------------------------------------------------------------


def test_distill_teacher_trains_on_complete_pairs_then_student_under_missingness(tiny_data):
    method = build("distill", tiny_data)
    assert [(s.name, s.complete_only) for s in method.stages()] == [
        ("teacher", True),
        ("student", False),
    ]
    method.set_stage("teacher")
    assert trainable(method.teacher) == {True} and trainable(method.student) == {False}
    method.set_stage("student")
    assert trainable(method.teacher) == {False} and trainable(method.student) == {True}
    method.train()
    assert not method.teacher.training and method.student.training


def test_distill_fit_shows_the_teacher_only_complete_samples(tiny_data):
    n = len(tiny_data.train)
    present = torch.ones(n, 2, dtype=torch.bool)
    present[::3, 1] = False
    seen: dict[str, set[bool]] = {}
    method = build("distill", tiny_data)
    forward = method.forward

    def recording(batch):
        if method.training:
            seen.setdefault(method.stage, set()).add(bool(batch.present.all()))
        return forward(batch)

    method.forward = recording
    train = MaskedSplit(tiny_data.train, present)
    val = MaskedSplit(tiny_data.val, torch.ones(len(tiny_data.val), 2, dtype=torch.bool))
    result = fit(method, train, val, TrainSpec(epochs=2), CPU, seed=0)
    assert seen["teacher"] == {True} and False in seen["student"]
    assert set(result.best_epoch) == {"teacher", "student"}


def test_a_complete_only_stage_gets_the_steps_of_its_share_of_the_budget(tiny_data):
    n = len(tiny_data.train)
    present = torch.ones(n, 2, dtype=torch.bool)
    present[n // 4 :, 0] = False  # 75 % missing: the teacher sees a quarter of the pairs
    train = MaskedSplit(tiny_data.train, present)
    val = MaskedSplit(tiny_data.val, torch.ones(len(tiny_data.val), 2, dtype=torch.bool))
    result = fit(build("distill", tiny_data), train, val, TrainSpec(epochs=2), CPU, seed=0)
    epochs = [r.stage for r in result.history]
    assert epochs.count("teacher") == round(2 * 0.5 * n / (n // 4)) and epochs.count("student") == 2


def test_a_complete_only_stage_without_complete_pairs_says_what_to_do(tiny_data):
    train = MaskedSplit(tiny_data.train, torch.tensor([[True, False]] * len(tiny_data.train)))
    val = MaskedSplit(tiny_data.val, torch.ones(len(tiny_data.val), 2, dtype=torch.bool))
    with pytest.raises(DataError, match=r"teacher. trains on complete pairs only.*--apply-to"):
        fit(build("distill", tiny_data), train, val, TrainSpec(epochs=2), CPU, seed=0)


def test_distill_predicts_with_the_student_alone(tiny_data):
    method = build("distill", tiny_data).eval()
    batch = batch_of(tiny_data, MIXED)
    with torch.no_grad():
        expected = method.student.head(method.student.fuse(batch))
        assert torch.equal(method(batch).logits, expected)
    assert method.inference_modules() == [method.student]


def test_distill_loss_parts_per_stage(tiny_data):
    method = build("distill", tiny_data)
    batch, y = batch_of(tiny_data, MIXED), tiny_data.train.labels[:4]
    method.set_stage("teacher")
    assert set(method.loss(method(batch), batch, y)[1]) == {"ce"}
    method.set_stage("student")
    assert set(method.loss(method(batch), batch, y)[1]) == {"ce", "kd", "feat", "kd_rows"}


def test_distill_teacher_sees_every_modality_on_the_rows_the_student_lacks_one(tiny_data):
    """The mechanism: under --apply-to test every training pair is complete; the student
    stage drops a modality from some of them, and the teacher reads those rows whole."""
    method = build("distill", tiny_data)
    student = record_training_calls(method, method)
    teacher = record_training_calls(method, method.teacher, "fuse")
    fit(method, *complete_splits(tiny_data), TrainSpec(epochs=2), CPU, seed=0)
    student_batches = [b for stage, b in student if stage == "student"]
    teacher_batches = [b for stage, b in teacher if stage == "student"]
    assert len(student_batches) == len(teacher_batches) > 0
    lacking = 0
    for seen, taught in zip(student_batches, teacher_batches, strict=True):
        rows = ~seen.present.all(dim=1)
        lacking += int(rows.sum())
        assert taught.present[rows].all()
        for m, image in enumerate(taught.images):  # the dropped images themselves, not zeros
            assert (image[rows & ~seen.present[:, m]].abs().sum(dim=(1, 2, 3)) > 0).all()
    assert lacking > 0


def test_distill_distils_only_where_the_teacher_sees_what_the_student_lacks(tiny_data):
    method = build("distill", tiny_data).train()
    full = batch_of(tiny_data, [[True, True]] * 3 + [[True, False]])  # row 3: absent by protocol
    keep = torch.tensor([[True, True], [True, False], [False, True], [True, False]])
    images = tuple(x * keep[:, m].view(-1, 1, 1, 1) for m, x in enumerate(full.images))
    batch = Batch(images, keep, undropped=full)
    view, rows = method.teacher_view(batch)
    assert view is full and rows.tolist() == [False, True, True, False]
    _, parts = method.loss(method(batch), batch, tiny_data.train.labels[:4])
    assert parts["kd_rows"] == 0.5 and parts["kd"] > 0
    same_view = build("distill", tiny_data, cross_modal=False).train()
    assert same_view.teacher_view(batch)[0] is batch
    assert [s.modality_dropout for s in same_view.stages()] == [None, None]


def test_cross_modal_rows_need_a_complete_teacher_view():
    student = torch.tensor([[True, False], [True, True], [False, True], [True, False]])
    teacher = torch.tensor([[True, True], [True, True], [True, True], [True, False]])
    assert cross_modal_rows(student, teacher).tolist() == [True, False, True, False]


def test_soft_target_kl_is_hinton_kl_times_t_squared():
    student, teacher = torch.randn(5, 4), torch.randn(5, 4)
    p_t = torch.softmax(teacher / 2, dim=-1)
    expected = (p_t * (p_t.log() - torch.log_softmax(student / 2, dim=-1))).sum(-1).mean() * 4
    assert torch.allclose(soft_target_kl(student, teacher, 2.0), expected, atol=1e-6)
    assert soft_target_kl(teacher, teacher, 2.0).abs() < 1e-6


def test_feature_mse_counts_present_modalities_only():
    student, teacher = torch.zeros(2, 2, 3), torch.zeros(2, 2, 3)
    teacher[0, 1] = 100.0  # absent: ignored
    teacher[1, 0] = 2.0  # present: squared error 4
    present = torch.tensor([[True, False], [True, True]])
    assert present_feature_mse(student, teacher, present) == pytest.approx(4.0 / 3)
    assert present_feature_mse(student, teacher, torch.zeros(2, 2, dtype=torch.bool)) == 0


# shaspec -------------------------------------------------------------------------------------


def test_shaspec_fills_an_absent_modality_from_the_present_shared_features():
    shared = torch.tensor([[[1.0, 1.0], [3.0, 5.0], [0.0, 0.0]]])  # (1, M=3, d=2)
    present = torch.tensor([[False, True, False]])
    assert torch.equal(fill_absent(shared, present, "first"), torch.tensor([[3.0, 5.0]]))
    both = torch.tensor([[True, True, False]])
    assert torch.equal(fill_absent(shared, both, "first"), torch.tensor([[1.0, 1.0]]))
    assert torch.equal(fill_absent(shared, both, "mean"), torch.tensor([[2.0, 3.0]]))


def test_shaspec_alignment_uses_pairs_both_present_and_is_zero_without_any():
    shared = torch.tensor([[[0.0, 0.0], [1.0, 3.0]], [[0.0, 0.0], [9.0, 9.0]]])
    present = torch.tensor([[True, True], [True, False]])
    assert shared_alignment(shared, present) == pytest.approx(2.0)
    none = torch.tensor([[True, False], [False, True]])
    assert shared_alignment(shared, none) == 0


def test_shaspec_shared_encoder_is_one_module_and_sees_present_images_only(tiny_data):
    method = build("shaspec", tiny_data).eval()
    rows = []
    method.shared.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[0]))
    with torch.no_grad():
        method(batch_of(tiny_data, MIXED))
    assert rows == [5]  # 3 present fundus + 2 present OCT images, in one pass
    assert method.domain_classifier not in method.inference_modules()


def test_shaspec_prediction_for_a_missing_modality_uses_the_fill(tiny_data):
    method = build("shaspec", tiny_data, fill="mean").eval()
    batch = batch_of(tiny_data, [[True, False], [True, False]])
    with torch.no_grad():
        out = method(batch)
        shared = out.extras["shared"]
        d = shared.shape[-1]
        composed = shared[:, 0] + method.compose(
            torch.cat([shared[:, 0], out.extras["specific"][:, 0]], dim=-1)
        )
        fused = torch.cat([composed, shared[:, 0]], dim=-1)
        assert torch.allclose(out.logits, method.head(fused), atol=1e-6)
        assert fused.shape[-1] == 2 * d


def test_shaspec_trains_its_fill_path_on_complete_training_pairs(tiny_data, monkeypatch):
    """The mechanism: with --apply-to test the training pairs are complete, and the fill of
    an absent modality still gets a gradient, from the modality dropout after the warm-up."""
    gradients = []

    def fill_with_probe(shared, present, fill):
        value = fill_absent(shared, present, fill)
        if value.requires_grad:
            value.register_hook(lambda g: gradients.append(float(g.abs().sum())))
        return value

    monkeypatch.setattr(methods.shaspec, "fill_absent", fill_with_probe)
    method = build("shaspec", tiny_data)
    result = fit(method, *complete_splits(tiny_data), TrainSpec(epochs=3), CPU, seed=0)
    assert max(gradients) > 0
    assert result.dropout_masks["main"][0].all() and not result.dropout_masks["main"][2].all()
    (stage,) = method.stages()
    assert stage.modality_dropout.scheme == "uniform-count"
    assert stage.modality_dropout.warmup == pytest.approx(4 / 9)
    assert build("shaspec", tiny_data, modality_dropout="none").stages()[0].modality_dropout is None


def test_shaspec_rejects_an_unknown_fill(tiny_data):
    with pytest.raises(ConfigError, match="choose 'first' or 'mean'"):
        build("shaspec", tiny_data, fill="zeros")


# momke ---------------------------------------------------------------------------------------


def test_momke_trains_experts_then_routing(tiny_data):
    method = build("momke", tiny_data)
    assert [s.name for s in method.stages()] == ["experts", "fusion"]
    method.set_stage("experts")
    assert trainable(method.expert_heads) == {True} and trainable(method.routers) == {False}
    method.set_stage("fusion")
    assert trainable(method.expert_heads) == {False} and trainable(method.routers) == {True}
    assert trainable(method.experts) == {True}
    assert not any(h in method.inference_modules() for h in (method.expert_heads,))
    frozen = build("momke", tiny_data, freeze_experts=True)
    frozen.set_stage("fusion")
    assert trainable(frozen.experts) == {False} and trainable(frozen.encoders) == {False}
    frozen.set_stage("experts")
    assert trainable(frozen.experts) == {True}


def test_momke_expert_stage_scores_each_present_modality_with_its_own_expert(tiny_data):
    method = build("momke", tiny_data)
    method.set_stage("experts")
    method.eval()
    batch, y = batch_of(tiny_data, [[False, True]] * 4), tiny_data.train.labels[:4]
    with torch.no_grad():
        out = method(batch)
        p_2 = method.projections[1](method.encoders(batch)[1])
        own = F.log_softmax(method.expert_heads[1](method.experts[1](p_2)), dim=-1)
        assert torch.allclose(out.logits, own, atol=1e-6)
        _, parts = method.loss(out, batch, y)
    assert set(parts) == {"ce_2"}


def test_momke_routes_each_modality_through_every_expert(tiny_data):
    method = build("momke", tiny_data).eval()
    batch = batch_of(tiny_data, MIXED)
    calls = []
    for k, expert in enumerate(method.experts):
        expert.register_forward_hook(lambda module, args, out, k=k: calls.append(k))
    with torch.no_grad():
        method(batch)
    assert sorted(calls) == [0, 0, 1, 1]  # M modalities x M experts


def test_momke_fusion_stage_trains_on_masked_slots_of_complete_pairs(tiny_data):
    """The mechanism: the routed model is trained on inputs with masked slots (the code's
    stage 2), here drawn from complete training pairs under --apply-to test."""
    method = build("momke", tiny_data)
    calls = record_training_calls(method, method)
    result = fit(method, *complete_splits(tiny_data), TrainSpec(epochs=2), CPU, seed=0)
    by_stage = {}
    for stage, batch in calls:
        by_stage.setdefault(stage, []).append(batch.present)
    assert all(p.all() for p in by_stage["experts"])
    masked = torch.cat(by_stage["fusion"])
    assert (~masked.all(dim=1)).float().mean() > 0.3 and masked.any(dim=1).all()
    assert set(result.dropout_masks) == {"fusion"}
