"""The encoder registries of ``bench.encoders``: built-ins, third-party entries, bad names.

The ``test-*`` entries below are registered when this module is imported, as a plugin
package registers its entries when its entry point is loaded.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench import encoders, results
from bench.cli import main
from bench.data import dataset_info, get_card
from bench.encoders import (
    create_encoder,
    create_text_encoder,
    register_image_encoder,
    register_text_encoder,
)
from bench.errors import ConfigError, UnknownNameError
from bench.interface import build_method
from tests.conftest import TINY_OPTIONS, run_args

BUILT_IMAGE_ENCODERS: list[int] = []  # in_chans of every test-channel-means built
ENCODED_TEXTS: list[list[str]] = []


class ChannelMeans(nn.Module):
    """Per-channel means, then a linear map to ``feature_dim``."""

    def __init__(self, in_chans: int, feature_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_chans, feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(2, 3)))


@register_image_encoder("test-channel-means")
def channel_means(in_chans: int, feature_dim: int, pretrained: str | None) -> ChannelMeans:
    BUILT_IMAGE_ENCODERS.append(in_chans)
    return ChannelMeans(in_chans, feature_dim)


def word_lengths(texts: list[str]) -> torch.Tensor:
    """(n, 3): number of words, mean and longest word length of each text."""
    ENCODED_TEXTS.append(list(texts))
    lengths = [[len(w) for w in text.split()] or [0] for text in texts]
    return torch.tensor([[len(w), sum(w) / len(w), max(w)] for w in lengths])


@register_text_encoder("test-word-lengths")
def word_lengths_encoder():
    return word_lengths


@register_text_encoder("test-not-installed")
def not_installed_encoder():
    raise ConfigError("test-not-installed needs a package that is not installed")


def test_a_registered_image_encoder_serves_any_method_through_hparams_star(tmp_path, capsys):
    BUILT_IMAGE_ENCODERS.clear()
    args = run_args(
        tmp_path,
        *("--methods", "late-fusion,kedr", "--rates", "0.4", "--seeds", "0"),
        *("--set", "hparams.*.backbone=test-channel-means", "--set", "hparams.*.feature_dim=8"),
        *("--set", "hparams.kedr.text_encoder=hashing"),
    )
    assert main(args) == 0
    frame = results.load("t", tmp_path)
    assert set(frame["status"]) == {"FINISHED"} and len(frame) == 2
    card = get_card("synthetic-retina")
    channels = list(dataset_info(card, card.resolve_options(TINY_OPTIONS)).channels)
    # one encoder per modality and method, twice: the pre-flight builds each method once
    assert channels * 4 == BUILT_IMAGE_ENCODERS


def test_a_registered_text_encoder_gives_kedr_its_prior_embeddings(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    ENCODED_TEXTS.clear()
    card = get_card("synthetic-retina")
    info = dataset_info(card, card.resolve_options({"image_size": 32}))
    hparams = {"backbone": "features", "feature_dim": 8, "text_encoder": "test-word-lengths"}
    model = build_method("kedr", info, hparams)
    (texts,) = ENCODED_TEXTS
    assert len(texts) == info.num_classes
    assert torch.equal(model.text_embeddings, word_lengths(texts).float())
    assert model.project.in_features == 3


def test_unknown_backbone_names_the_registered_encoders_and_timm():
    hint = "'features', 'small-cnn', 'test-channel-means' or a timm model name"
    with pytest.raises(ConfigError, match=hint):
        create_encoder("no-such-backbone", 3)


def test_timm_models_are_built_by_their_own_name():
    encoder = create_encoder("resnet18", 1)
    assert encoder.feature_dim == 512
    assert encoder(torch.zeros(2, 1, 32, 32)).shape == (2, 512)


def test_small_cnn_refuses_pretrained_weights():
    with pytest.raises(ConfigError, match="small-cnn has no pretrained weights"):
        create_encoder("small-cnn", 3, pretrained="hf-cache")


@pytest.mark.parametrize(
    ("name", "error", "hint"),
    [
        ("no-such-encoder", UnknownNameError, "use auto, hashing, hf:<source>, minilm"),
        ("hf", ConfigError, "needs a source: write hf:<source>"),
        ("hf:", ConfigError, "needs a source"),
        ("hashing:words", ConfigError, "takes no ':<source>': write hashing"),
    ],
)
def test_bad_text_encoder_names_say_how_to_write_them(name, error, hint):
    with pytest.raises(error, match=hint):
        create_text_encoder(name)


def test_auto_takes_the_first_text_encoder_that_can_run_here(monkeypatch):
    monkeypatch.setattr(encoders, "AUTO_TEXT_ENCODERS", ("test-not-installed", "hashing"))
    assert create_text_encoder("auto")[0] == "hashing"
    monkeypatch.setattr(encoders, "AUTO_TEXT_ENCODERS", ("test-word-lengths", "hashing"))
    assert create_text_encoder("auto")[0] == "test-word-lengths"


def test_hashing_embeddings_are_unit_norm_and_deterministic():
    name, encode = create_text_encoder("hashing")
    first, again = encode(["drusen and haemorrhage", "normal"]), encode(["normal"])
    assert name == "hashing" and first.shape == (2, 384)
    assert torch.allclose(first.norm(dim=1), torch.ones(2)) and torch.equal(first[1], again[0])
