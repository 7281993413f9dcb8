"""KEDR-specific behaviour beyond the shared contract."""

from __future__ import annotations

import math

import ot
import pytest
import torch

from bench.data import dataset_info, get_card
from bench.interface import Batch, build_method
from bench.profile import count_parameters
from methods._blocks.ot import normalised_cost, sinkhorn_unbalanced_log
from methods.kedr import orthogonality

KEDR_VARIANTS = [
    "kedr",
    "kedr:no-ot",
    "kedr:no-ked",
    "kedr:contrastive",
    "kedr:no-conf",
    "kedr:no-deq",
    "kedr:prior-naive",
    "kedr:prior-step1",
]


def info_for(modalities: int = 2):
    card = get_card("synthetic-retina")
    return dataset_info(card, card.resolve_options({"modalities": modalities, "image_size": 32}))


def feature_batch(info, present):
    present = torch.tensor(present)
    torch.manual_seed(0)
    images = tuple(torch.randn(len(present), 16) for _ in range(info.num_modalities))
    return Batch(images, present)


def build(name, info, **hparams):
    torch.manual_seed(0)
    return build_method(
        name,
        info,
        {"backbone": "features", "feature_dim": 16, "text_encoder": "hashing", **hparams},
    )


def test_three_modalities_give_four_branches_and_finite_outputs():
    info = info_for(3)
    model = build("kedr", info)
    batch = feature_batch(
        info, [[True, True, True], [True, False, True], [False, False, True], [False, True, False]]
    )
    out = model(batch)
    assert out.logits.shape == (4, 4)
    assert set(out.confidences) == {"c_s", "c_1", "c_2", "c_3"}
    assert torch.equal(out.confidences["c_1"][2:] == 0, torch.tensor([True, True]))
    loss, parts = model.loss(out, batch, torch.tensor([0, 1, 2, 3]))
    assert torch.isfinite(loss) and {"cls", "conf", "orth", "ot", "deq_steps"} <= set(parts)


def test_inference_graph_drops_the_text_projection_and_auxiliary_heads():
    model = build("kedr", info_for())
    inference = count_parameters(model.inference_modules())
    dropped = count_parameters([model.project, model.aux_heads])
    assert inference == count_parameters([model]) - dropped


@pytest.mark.parametrize("name", KEDR_VARIANTS)
def test_each_variant_changes_what_it_says(name):
    model = build(name, info_for())
    batch = feature_batch(model.info, [[True, True], [True, False], [False, True]])
    out = model(batch)
    _, parts = model.loss(out, batch, torch.tensor([0, 1, 2]))
    has = set(parts)
    assert ("ot" in has) == (
        name in ("kedr", "kedr:prior-naive", "kedr:prior-step1", "kedr:no-deq", "kedr:no-conf")
    )
    assert ("contrastive" in has) == (name == "kedr:contrastive")
    assert ("orth" in has) == (name != "kedr:no-ked")
    assert bool(out.confidences) == (name != "kedr:no-conf")
    assert (parts["deq_steps"] == 1) == (name == "kedr:no-deq")


def test_prior_variants_read_different_texts():
    info = info_for()
    embeddings = {
        p: build(f"kedr:prior-{p}" if p != "cot" else "kedr", info).text_embeddings
        for p in ("cot", "naive", "step1")
    }
    assert not torch.equal(embeddings["cot"], embeddings["naive"])
    assert not torch.equal(embeddings["cot"], embeddings["step1"])


def test_confidences_track_the_true_class_probability_after_training():
    info = info_for()
    model = build("kedr", info)
    batch = feature_batch(info, [[True, True]] * 16)
    y = torch.arange(16) % 4
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        optimizer.zero_grad()
        loss, _ = model.loss(model(batch), batch, y)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        c = model(batch).confidences["c_s"]
    assert c.min() > 0.8  # memorised: TCP near 1, and c regresses onto it


def test_invalid_option_is_a_one_line_config_error():
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="kedr ot 'sinkhorn' is not valid"):
        build("kedr", info_for(), ot="sinkhorn")


# fidelity to the released code (lijing-coder/KEDR@6368bb8:model/KEDR.py) --------------------


class Fixed(torch.nn.Module):
    """Stands in for the text projection: the class anchors s_c are the given rows."""

    def __init__(self, anchors):
        super().__init__()
        self.anchors = anchors

    def forward(self, text):
        return self.anchors


def _unit_by_features(x):
    """The released OT_Attn_assem.normalize_feature, written out: centre each vector over its
    own features, then L2-normalise."""
    x = x - x.mean(dim=-1, keepdim=True)
    return x / x.norm(dim=-1, keepdim=True)


def test_ot_loss_is_the_plan_times_the_raw_squared_cost_on_a_hand_computed_case():
    """f~_s = (1, 0, -1)/sqrt2 and its negative, targets the same: D = [[0, 4], [4, 0]], max 4.
    The balanced plan of D / 4 at eps 0.5 is [[1, k], [k, 1]] / (2 (1 + k)), k = exp(-2), so
    L_OT = sum(T D) = 4k / (1 + k). (The max-normalised cost would give k / (1 + k).)"""
    model = build("kedr", info_for(), ot="balanced", ot_eps=0.5)
    shared = torch.tensor([[3.0, 2.0, 1.0], [2.0, 3.0, 4.0]])  # batch centring would differ
    model.project = Fixed(torch.tensor([[5.0, 4.0, 3.0], [0.0, 1.0, 2.0]]))
    k = math.exp(-2.0)
    loss = model._alignment_loss(shared, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx(4 * k / (1 + k), rel=1e-5)


def test_ot_loss_matches_the_released_formula_computed_with_pot():
    model = build("kedr", info_for())
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(12, 16, generator=g, dtype=torch.float64) + 3.0
    anchors = torch.randn(4, 16, generator=g, dtype=torch.float64)
    y = torch.arange(12) % 4
    model.project = Fixed(anchors)
    raw = torch.cdist(_unit_by_features(shared), _unit_by_features(anchors[y])) ** 2
    uniform = ot.unif(12)
    plan = ot.unbalanced.sinkhorn_knopp_unbalanced(
        uniform, uniform, (raw / raw.max()).numpy(), reg=0.1, reg_m=0.5, stopThr=1e-10
    )
    expected = float((torch.from_numpy(plan) * raw).sum())
    assert model._alignment_loss(shared, y).item() == pytest.approx(expected, rel=1e-4)


def test_ot_centres_each_vector_over_its_features_not_over_the_batch():
    """Shifting one sample by a constant on every feature leaves the released cost as it is;
    centring over the batch would move every sample's cost."""
    model = build("kedr", info_for())
    g = torch.Generator().manual_seed(1)
    shared, anchors = torch.randn(8, 16, generator=g), torch.randn(4, 16, generator=g)
    model.project = Fixed(anchors)
    y = torch.arange(8) % 4
    shifted = shared.clone()
    shifted[0] += 5.0
    torch.testing.assert_close(
        model._alignment_loss(shifted, y), model._alignment_loss(shared, y), rtol=1e-5, atol=0
    )
    old = build("kedr", info_for(), ot_centring="batch")
    old.project = Fixed(anchors)
    assert abs(old._alignment_loss(shifted, y) - old._alignment_loss(shared, y)) > 1e-3


def test_the_earlier_reading_is_kept_behind_switches():
    """ot_centring='batch' + ot_loss_cost='max-normalised' is sum(T* . C) with C the
    batch-centred, max-normalised cost, as before the fix."""
    model = build("kedr", info_for(), ot_centring="batch", ot_loss_cost="max-normalised")
    g = torch.Generator().manual_seed(2)
    shared, anchors = torch.randn(10, 16, generator=g), torch.randn(4, 16, generator=g)
    model.project = Fixed(anchors)
    y = torch.arange(10) % 4
    u = torch.full((10,), 0.1)
    expected = sinkhorn_unbalanced_log(u, u, normalised_cost(shared, anchors[y]), 0.1, 0.5).cost
    torch.testing.assert_close(model._alignment_loss(shared, y), expected)


def test_orthogonality_is_the_per_sample_cosine_squared_by_default():
    """Centred rows f_s = (1,0), (0,1), (-1,-1), f_m = (0,1), (1,0), (-1,-1): the same-sample
    cosines are 0, 0, 1 (mean square 1/3); over all nine pairs the mean square is 5/9."""
    shared = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    specific = torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, -1.0]])
    present = torch.ones(3, dtype=torch.bool)
    assert orthogonality(shared, specific, present).item() == pytest.approx(1 / 3)
    assert orthogonality(shared, specific, present, "all-pairs").item() == pytest.approx(5 / 9)


def test_orthogonality_matches_the_released_module_on_present_rows():
    g = torch.Generator().manual_seed(3)
    shared, specific = torch.randn(2, 9, 16, generator=g)
    present = torch.tensor([True, True, False, True, True, True, False, True, True])
    fs, fm = shared[present], specific[present]
    fs = torch.nn.functional.normalize(fs - fs.mean(0), dim=1)
    fm = torch.nn.functional.normalize(fm - fm.mean(0), dim=1)
    expected = ((fs * fm).sum(1) ** 2).mean()
    torch.testing.assert_close(orthogonality(shared, specific, present), expected)


def test_the_tcp_target_is_detached_so_the_mse_does_not_train_the_auxiliary_heads():
    """Corbiere et al. (NeurIPS 2019) regress the confidence onto a fixed classifier's TCP."""
    model = build("kedr", info_for())
    batch = feature_batch(model.info, [[True, True]] * 6)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    out = model(batch)
    heads = list(model.aux_heads.parameters())
    conf = torch.autograd.grad(
        model._confidence_loss(out, out.extras["features"], out.extras["branch_present"], y),
        heads,
        retain_graph=True,
    )
    ce = sum(
        torch.nn.functional.cross_entropy(head(out.extras["features"][:, b]), y)
        for b, head in enumerate(model.aux_heads)
    )
    for got, want in zip(conf, torch.autograd.grad(ce, heads), strict=True):
        torch.testing.assert_close(got, want)


# semantic enrichment without the label -------------------------------------------------------


def test_enrichment_feeds_the_plan_aligned_anchors_to_the_shared_branch():
    info = info_for()
    batch = feature_batch(info, [[True, True], [True, False], [False, True], [True, True]])
    plain = build("kedr", info)(batch).extras
    enriched = build("kedr", info, enrichment="batch")(batch).extras
    torch.testing.assert_close(plain["shared"], enriched["shared"])  # the losses' f_s
    torch.testing.assert_close(plain["features"][:, 0], plain["shared"])
    assert not torch.allclose(enriched["features"][:, 0], enriched["shared"])


def test_enrichment_is_a_barycentric_projection_onto_the_anchors():
    """f'_s - f~_s is a convex combination of the anchors s~_c: with K = 4 anchors that are
    the unit vectors of 4 orthogonal directions, its coordinates are the weights."""
    model = build("kedr", info_for(), enrichment="per-sample")
    directions = torch.zeros(4, 16)
    directions[range(4), range(4)], directions[range(4), range(4, 8)] = 1.0, -1.0
    model.project = Fixed(directions)  # feature-centred, normalised: (e_c - e_{c+4}) / sqrt2
    g = torch.Generator().manual_seed(4)
    shared = torch.randn(5, 16, generator=g)
    extra = model._enriched(shared) - _unit_by_features(shared)
    weights = extra[:, :4] * math.sqrt(2)
    assert (weights > 0).all()
    torch.testing.assert_close(weights.sum(1), torch.ones(5))


def test_per_sample_enrichment_does_not_depend_on_the_rest_of_the_batch():
    g = torch.Generator().manual_seed(5)
    shared = torch.randn(6, 16, generator=g)
    per_sample = build("kedr", info_for(), enrichment="per-sample")
    torch.testing.assert_close(per_sample._enriched(shared)[:2], per_sample._enriched(shared[:2]))
    batch = build("kedr", info_for(), enrichment="batch")
    assert not torch.allclose(batch._enriched(shared)[:2], batch._enriched(shared[:2]))


def test_enrichment_keeps_the_text_projection_in_the_inference_graph():
    model = build("kedr", info_for(), enrichment="batch")
    inference = count_parameters(model.inference_modules())
    assert inference == count_parameters([model]) - count_parameters([model.aux_heads])


def test_per_sample_enrichment_with_a_balanced_plan_is_refused():
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="needs ot='unbalanced'"):
        build("kedr", info_for(), enrichment="per-sample", ot="balanced")


def test_no_ot_variant_has_no_enrichment_to_do():
    model = build("kedr:no-ot", info_for(), enrichment="batch")
    assert model.enrichment == "none" and not hasattr(model, "project")
