"""The mechanisms of the bounds: ``unimodal:mK`` reads modality K alone; ``late-fusion``
reads every present modality (and nothing of an absent one)."""

from __future__ import annotations

import pytest
import torch

from bench.interface import Batch, build_method
from bench.train import MaskedSplit, make_batch


def complete_batch(data, n: int = 6) -> Batch:
    split = MaskedSplit(data.train, torch.ones(len(data.train), 2, dtype=torch.bool))
    return make_batch(split, torch.arange(n), torch.device("cpu"))


def logits_after_replacing(model, batch: Batch, modality: int) -> tuple[torch.Tensor, ...]:
    """Logits of ``batch`` and of it with one modality's images replaced by noise."""
    images = list(batch.images)
    images[modality] = torch.randn_like(images[modality])
    model.eval()
    with torch.no_grad():
        return model(batch).logits, model(Batch(tuple(images), batch.present)).logits


@pytest.mark.parametrize("read", [1, 2])
def test_a_unimodal_bound_reads_its_modality_and_only_it(tiny_data, read):
    torch.manual_seed(0)
    model = build_method(f"unimodal:m{read}", tiny_data.info, {})
    batch = complete_batch(tiny_data)
    ignored = 2 - read  # the index of the other modality
    same, other = logits_after_replacing(model, batch, ignored)
    assert torch.equal(same, other)
    same, changed = logits_after_replacing(model, batch, read - 1)
    assert not torch.allclose(same, changed)


def test_late_fusion_reads_both_modalities_when_both_are_present(tiny_data):
    torch.manual_seed(0)
    model = build_method("late-fusion", tiny_data.info, {})
    batch = complete_batch(tiny_data)
    for modality in (0, 1):
        clean, noisy = logits_after_replacing(model, batch, modality)
        assert not torch.allclose(clean, noisy)
