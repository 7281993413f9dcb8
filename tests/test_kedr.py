"""KEDR-specific behaviour beyond the shared contract."""

from __future__ import annotations

import pytest
import torch

from bench.data import dataset_info, get_card
from bench.interface import Batch, build_method
from bench.profile import count_parameters

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
