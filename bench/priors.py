"""Semantic priors: show a dataset's prior texts, generate new ones with an LLM, or import
the texts of KEDR's released code from a local clone.

Generation follows KEDR's two-step chain of thought (Li et al. 2026, Sec. 3.2): step 1
asks, as a medical imaging expert, for the visual characteristics of a disease that are
consistent across the imaging modalities; step 2 distils them into compact cross-modal
attributes. The naive prompt ("what features distinguish X") gives the ablation's
``naive`` text. Any OpenAI-compatible chat API works: ``BENCH_LLM_BASE_URL`` (default
https://api.openai.com/v1) and ``BENCH_LLM_API_KEY`` (or ``OPENAI_API_KEY``) come from the
environment; the key is sent only in the Authorization header, never logged or written.

Import: ``model/KEDR.py`` of a clone of github.com/lijing-coder/KEDR holds one text per
class and dataset (``self.vocab`` under ``if dataset_name == "SPC" / "MMC" / "Harvard"``).
The file is parsed with :mod:`ast`, never imported or executed; its texts are not shipped.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from bench.data.cards import Card, get_card, priors_classes
from bench.errors import BenchError, ConfigError, DataError
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


# the released code's prior texts ---------------------------------------------------------
RELEASED_REPOSITORY = "github.com/lijing-coder/KEDR"
RELEASED_FILE = Path("model", "KEDR.py")
_WHICH_FILE = f"pass a clone of {RELEASED_REPOSITORY} or its {RELEASED_FILE.as_posix()}"
# Released vocab name -> (our card, our class key of each released label index). SPC's order
# is the released label_list (lijing-coder/KEDR@6368bb8:dependency.py and main_train.py's
# class_names NEV, BCC, MEL, MISC, SK); MMC's and Harvard's follow their texts (the
# repository has no loader for them). Each text must name its class (the keyword).
RELEASED_VOCABS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "SPC": (
        "derm7pt",
        (
            ("nev", "nev"),
            ("bcc", "basal cell"),
            ("mel", "melanoma"),
            ("misc", "miscellaneous"),
            ("sk", "seborrheic"),
        ),
    ),
    "MMC": (
        "mmc-amd",
        (("wet_amd", "wet amd"), ("dry_amd", "dry amd"), ("pcv", "pcv"), ("normal", "normal")),
    ),
    "Harvard": ("harvard-glaucoma", (("no_glaucoma", "normal"), ("glaucoma", "glaucoma"))),
}


def _vocab_name(test: ast.expr) -> str | None:
    """``'SPC'`` for the test ``dataset_name == "SPC"``, else None."""
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "dataset_name"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and isinstance(test.comparators[0].value, str)
    ):
        return test.comparators[0].value
    return None


def _is_self_vocab(target: ast.expr) -> bool:
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "vocab"
        and isinstance(target.value, ast.Name)
        and target.value.id == "self"
    )


def released_vocabs(path: Path) -> dict[str, dict[int, str]]:
    """Every ``if dataset_name == NAME: self.vocab = {index: text, ...}`` of the released
    model file, read with :mod:`ast` (the file is parsed, never imported or executed)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError, SyntaxError) as err:
        raise DataError(
            f"cannot parse {path} ({type(err).__name__}: {err}): {_WHICH_FILE}"
        ) from err
    vocabs: dict[str, dict[int, str]] = {}
    for node in ast.walk(tree):
        name = _vocab_name(node.test) if isinstance(node, ast.If) else None
        if name is None:
            continue
        for statement in node.body:
            if isinstance(statement, ast.Assign) and any(map(_is_self_vocab, statement.targets)):
                try:
                    vocab = ast.literal_eval(statement.value)
                except ValueError as err:
                    raise DataError(
                        f"{path}: the {name} vocab is not a literal: {_WHICH_FILE}"
                    ) from err
                if not isinstance(vocab, dict) or not all(
                    isinstance(k, int) and isinstance(v, str) for k, v in vocab.items()
                ):
                    raise DataError(
                        f"{path}: the {name} vocab is not {{index: text}}: {_WHICH_FILE}"
                    )
                vocabs[name] = vocab
    if not vocabs:
        raise DataError(
            f"{path} holds no `if dataset_name == ...: self.vocab = {{...}}`: {_WHICH_FILE}"
        )
    return vocabs


def _clone_commit(folder: Path) -> str | None:
    """HEAD of the git clone ``folder``, or None when it is not one (or git is absent)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def import_released(path: Path, out: Path | None = None, commit: str | None = None) -> list[Path]:
    """Write one priors file per dataset of the released code's texts (``path``: a clone of
    lijing-coder/KEDR or its model/KEDR.py) into ``out`` (default: the working directory),
    as ``<dataset>.priors.released.yaml``, for ``--set hparams.kedr.priors_file=FILE``.

    The released texts are the output of its chain of thought, so they fill ``cot`` only;
    the ablations' ``naive`` and ``step1`` texts are not in the released code.
    """
    path = Path(path).expanduser()
    source = path / RELEASED_FILE if path.is_dir() else path
    if not source.is_file():
        raise ConfigError(f"{source} does not exist: {_WHICH_FILE}")
    vocabs = released_vocabs(source)
    unknown = sorted(set(vocabs) - set(RELEASED_VOCABS))
    if unknown:
        raise DataError(
            f"{source} has vocabs {', '.join(unknown)} that no card maps to (known: "
            f"{', '.join(RELEASED_VOCABS)}): {_WHICH_FILE}"
        )
    folder = source.parent.parent if path.is_file() else path
    provenance = {
        "imported_by": "bench priors import-released",
        "repository": RELEASED_REPOSITORY,
        "file": str(source.resolve()),
        "file_sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        "commit": commit or _clone_commit(folder) or "unknown (pass --commit)",
        "date": dt.date.today().isoformat(),
        "note": (
            "the released texts are its chain-of-thought output: they fill `cot` only; "
            "`naive` and `step1` (the prompt ablations) are not in the released code"
        ),
    }
    out = Path(out).expanduser() if out else Path.cwd()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for vocab_name, vocab in vocabs.items():
        dataset, classes = RELEASED_VOCABS[vocab_name]
        card = get_card(dataset)
        if sorted(vocab) != list(range(len(classes))):
            raise DataError(
                f"{source}: the {vocab_name} vocab has indices {sorted(vocab)}, expected "
                f"0..{len(classes) - 1} for the classes of {dataset}: {_WHICH_FILE}"
            )
        texts = {}
        for index, (key, keyword) in enumerate(classes):
            if keyword not in vocab[index].lower():
                raise DataError(
                    f"{source}: {vocab_name} text {index} does not mention {keyword!r}, so it "
                    f"is not {card.classes[key]!r} as in {RELEASED_REPOSITORY}@6368bb8: "
                    "check the file (its class order may have changed)"
                )
            texts[key] = {"cot": vocab[index]}
        document = {
            "dataset": dataset,
            "provenance": {**provenance, "vocab": vocab_name},
            "classes": {key: texts[key] for key in card.classes},
        }
        target = out / f"{dataset}.priors.released.yaml"
        target.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        written.append(target)
    return written
