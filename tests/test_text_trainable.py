"""KEDR's text encoder: frozen by default, fine-tuned with ``text_trainable`` (an ``hf:`` model),
on a tiny BERT built here from a config (no download)."""

from __future__ import annotations

import pytest
import torch

from bench.errors import ConfigError
from tests.test_kedr import build, feature_batch, info_for

WORDS = ["normal", "dry", "wet", "amd", "pcv", "drusen", "fluid", "retina", "the", "of", "and"]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(str(vocab)).save_pretrained(folder)
    config = BertConfig(
        vocab_size=5 + len(WORDS),
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def text_parameters(model):
    return [p for name, p in model.named_parameters() if name.startswith("text_model.")]


def test_a_trainable_text_encoder_receives_gradients_from_the_alignment(tiny_bert, tmp_path):
    model = build("kedr", info_for(), text_encoder=f"hf:{tiny_bert}", text_trainable=True)
    assert model.project.in_features == 8 and len(text_parameters(model)) > 0
    batch = feature_batch(model.info, [[True, True], [True, False], [False, True], [True, True]])
    loss, _ = model.loss(model(batch), batch, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    grads = [p.grad for p in text_parameters(model) if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_the_text_encoder_is_frozen_by_default(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    model = build("kedr", info_for(), text_encoder=f"hf:{tiny_bert}")
    assert not text_parameters(model) and model.text_embeddings.shape == (4, 8)
    trainable = build("kedr", info_for(), text_encoder=f"hf:{tiny_bert}", text_trainable=True)
    with torch.no_grad():  # same model, same CLS pooling: the same embeddings before training
        torch.testing.assert_close(trainable.text_model(), model.text_embeddings)


def test_fine_tuned_text_is_part_of_the_inference_graph_only_with_enrichment(tiny_bert):
    hparams = {"text_encoder": f"hf:{tiny_bert}", "text_trainable": True}
    plain = build("kedr", info_for(), **hparams)
    assert all(m is not plain.text_model for m in plain.inference_modules())
    enriched = build("kedr", info_for(), enrichment="per-sample", **hparams)
    assert any(m is enriched.text_model for m in enriched.inference_modules())


def test_only_an_hf_encoder_can_be_trained():
    with pytest.raises(ConfigError, match="text_trainable needs an hf:"):
        build("kedr", info_for(), text_trainable=True)
