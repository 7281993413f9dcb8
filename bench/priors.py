"""Semantic priors: show a dataset's prior texts, or generate new ones with an LLM.

Generation follows KEDR's two-step chain of thought (Li et al. 2026, Sec. 3.2): step 1
asks, as a medical imaging expert, for the visual characteristics of a disease that are
consistent across the imaging modalities; step 2 distils them into compact cross-modal
attributes. The naive prompt ("what features distinguish X") gives the ablation's
``naive`` text. Any OpenAI-compatible chat API works: ``BENCH_LLM_BASE_URL`` (default
https://api.openai.com/v1) and ``BENCH_LLM_API_KEY`` (or ``OPENAI_API_KEY``) come from the
environment; the key is sent only in the Authorization header, never logged or written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.data.cards import Card, get_card, priors_classes
from bench.errors import BenchError, ConfigError
from bench.files import read_mapping

DEFAULT_BASE_URL = "https://api.openai.com/v1"
KEY_VARIABLES = ("BENCH_LLM_API_KEY", "OPENAI_API_KEY")


def priors_path(card: Card) -> Path:
    if not card.priors_file:
        raise ConfigError(f"dataset {card.name!r} has no priors file: add 'priors:' to its card")
    return card.path.parent / card.priors_file


def read_priors(card: Card) -> dict[str, Any]:
    path = priors_path(card)
    if not path.is_file():
        raise ConfigError(f"priors file {path} is missing: restore it or run bench priors generate")
    raw = read_mapping(path, "priors file")
    priors_classes(raw, path)
    prompts = raw.get("prompts")
    if prompts is not None and not (
        isinstance(prompts, dict) and all(isinstance(p, str) for p in prompts.values())
    ):
        raise ConfigError(
            f"priors file {path}: prompts must map naive, cot_step1 and cot_step2 to prompt "
            "templates: fix the file"
        )
    return raw


def show(name: str) -> str:
    """The priors of dataset ``name`` as readable text."""
    card = get_card(name)
    raw = read_priors(card)
    lines = [f"# {card.name}: {priors_path(card)}", str(raw.get("provenance", "")).strip(), ""]
    for key, texts in (raw.get("classes") or {}).items():
        lines.append(f"## {card.classes.get(key, key)} ({key})")
        lines += [f"- {kind}: {text}" for kind, text in texts.items()]
        lines.append("")
    return "\n".join(lines)


def _api_key() -> str:
    for variable in KEY_VARIABLES:
        if os.environ.get(variable):
            return os.environ[variable]
    raise ConfigError(f"no API key: set {' or '.join(KEY_VARIABLES)} in the environment")


def chat(base_url: str, key: str, model: str, prompt: str, timeout: float = 120.0) -> str:
    """One chat completion (temperature 0); returns the assistant's text."""
    body = json.dumps(
        {
            "model": model,
            "temperature": 0,
            "messages": [{"role": "user", "content": prompt}],
        }
    ).encode()
    request = urllib.request.Request(
        base_url.rstrip("/") + "/chat/completions",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.load(response)
        return str(payload["choices"][0]["message"]["content"]).strip()
    except urllib.error.HTTPError as err:
        raise BenchError(
            f"the chat API at {base_url} answered HTTP {err.code}: check the model name "
            "and BENCH_LLM_BASE_URL"
        ) from err
    except (urllib.error.URLError, TimeoutError, KeyError, IndexError, ValueError) as err:
        raise BenchError(
            f"no usable answer from the chat API at {base_url} ({err}): "
            "check BENCH_LLM_BASE_URL and that the server is reachable"
        ) from err


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_out(card: Card, model: str) -> Path:
    """``<dataset>.priors.<model hash>.yaml`` in the working directory: the shipped cards may
    sit inside an installed package, which is no place to write."""
    return Path.cwd() / f"{card.name}.priors.{_sha(model)}.yaml"


def generate(name: str, model: str, out: Path | None = None) -> Path:
    """Ask the LLM for every class's naive, step-1 and CoT texts; write a new priors file
    (``out``, else :func:`default_out`), for ``--set hparams.kedr.priors_file=PATH``."""
    card = get_card(name)
    prompts = read_priors(card)["prompts"]
    base_url = os.environ.get("BENCH_LLM_BASE_URL", DEFAULT_BASE_URL)
    key = _api_key()
    count = int(card.options.get("modalities", len(card.modalities)))
    modalities = " and ".join(m["name"] for m in card.modalities[:count])
    classes = {}
    for class_key, disease in card.classes.items():
        fill = {"disease": disease, "modalities": modalities}
        step1 = chat(base_url, key, model, prompts["cot_step1"].format(**fill))
        classes[class_key] = {
            "naive": chat(base_url, key, model, prompts["naive"].format(**fill)),
            "step1": step1,
            "cot": chat(base_url, key, model, prompts["cot_step2"].format(**fill, step1=step1)),
        }
    document = {
        "dataset": card.name,
        "provenance": {
            "generated_by": "bench priors generate",
            "model": model,
            "base_url": base_url,
            "date": dt.date.today().isoformat(),
            "prompt_sha256": {k: _sha(v) for k, v in prompts.items()},
        },
        "prompts": prompts,
        "classes": classes,
    }
    out = out or default_out(card, model)
    out.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return out
