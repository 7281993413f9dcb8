"""Malformed inputs, as a new user would hand them to ``bench``: flags, config / hparams /
priors YAML, dataset cards, manifests and data folders. Each case runs the CLI in this
process on files of its own, and the table records its exit status and the message the
user reads; ``tests/test_malformed_inputs.py`` asserts that none ends in a traceback and
that none leaves a FINISHED or sticky-FAILED run in the store.

    python -m tests.malformed_inputs            # prints the table (Markdown)
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sqlite3
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.cli import main
from bench.failures import STICKY
from bench.failures import TAG as FAILURE_TAG
from tests.conftest import TINY_SETS
from tests.data_fixtures import build_csv, build_derm7pt, corrupt, write_csv

Build = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    """``build(folder)`` writes the case's files under ``folder`` and returns the argv;
    ``env(folder)`` the environment variables the case sets."""

    kind: str
    what: str
    build: Build
    env: Callable[[Path], dict[str, str]] = field(default=lambda folder: {})


@dataclass(frozen=True)
class Outcome:
    case: Case
    exit_code: int | None  # None: an exception escaped the CLI
    message: str  # the last line the user read on stderr (or the traceback's last line)
    traceback: bool
    finished: int  # FINISHED runs left in the store
    sticky: int  # FAILED runs whose failure class sticks


def results(folder: Path) -> Path:
    return folder / "results"


def run(folder: Path, *extra: str, tiny: bool = True) -> list[str]:
    """``bench run`` of one fast cell into the case's own results dir, plus ``extra``."""
    args = ["run", "--results-dir", str(results(folder)), "--experiment", "t", "--epochs", "1"]
    args += ["--methods", "late-fusion", "--rates", "0.2", "--seeds", "0"]
    for item in TINY_SETS if tiny else []:
        args += ["--set", item]
    return args + list(extra)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def config_case(what: str, text: str | bytes) -> Case:
    """``bench run --config FILE`` with the grid's flags but ``--rates``, which FILE sets."""

    def build(folder: Path) -> list[str]:
        args = run(folder, "--config", str(write(folder / "grid.yaml", text)))
        at = args.index("--rates")
        return args[:at] + args[at + 2 :]

    return Case("config YAML", what, build)


def hparams_case(what: str, text: str) -> Case:
    return Case(
        "hparams YAML", what, lambda f: run(f, "--hparams", str(write(f / "best.yaml", text)))
    )


def priors_case(what: str, text: str) -> Case:
    def build(folder: Path) -> list[str]:
        path = write(folder / "priors.yaml", text)
        return run(folder, "--methods", "kedr", "--set", f"hparams.kedr.priors_file={path}")

    return Case("priors YAML", what, build)


TOY_CARD = {
    "name": "toy",
    "summary": "a toy card",
    "adapter": "synthetic-retina",
    "classes": {"normal": "Normal", "dry_amd": "Dry", "wet_amd": "Wet", "pcv": "PCV"},
    "modalities": [{"name": "fundus", "channels": 3}, {"name": "oct", "channels": 1}],
    "options": {
        "image_size": 32,
        "modalities": 2,
        "n_train": 80,
        "n_test": 40,
        "val_fraction": 0.25,
        "label_noise": 0.0,
        "difficulty": 1.0,
        "data_seed": 0,
    },
    "priors": "toy.priors.yaml",
}


def card_case(what: str, text: str, argv: Callable[[Path], list[str]] | None = None) -> Case:
    """A folder of cards (``BENCH_DATASETS_DIR``) holding the card ``text``."""

    def build(folder: Path) -> list[str]:
        write(folder / "cards" / "toy.yaml", text)
        return argv(folder) if argv else ["list"]

    return Case("dataset card", what, build, lambda f: {"BENCH_DATASETS_DIR": str(f / "cards")})


def toy_card(**changes) -> str:
    return yaml.safe_dump({**TOY_CARD, **changes})


def toy_run(folder: Path) -> list[str]:
    return run(folder, "--datasets", "toy", tiny=False)


def toy_priors(folder: Path) -> list[str]:
    write(folder / "cards" / "toy.priors.yaml", "classes:\n  normal: {cot: [unclosed\n")
    return ["priors", "show", "toy"]


def csv_case(what: str, make: Callable[[Path], Path], *extra: str) -> Case:
    """``bench run`` on the csv card with the manifest ``make(folder)`` returns."""

    def build(folder: Path) -> list[str]:
        manifest = make(folder / "cohort")
        sets = ["--set", "dataset_options.csv.image_size=16", *extra]
        return run(folder, "--datasets", "csv", "--data-root", f"csv={manifest}", *sets, tiny=False)

    return Case("manifest", what, build)


def good_manifest(root: Path) -> Path:
    return build_csv(root)[0]


def manifest_without_label(root: Path) -> Path:
    return write_csv(root / "manifest.csv", ["id", "m1", "m2"], [["s0", "a.png", "b.png"]])


def manifest_with_header_only(root: Path) -> Path:
    return write_csv(root / "manifest.csv", ["id", "label", "m1", "m2"], [])


def manifest_escaping_its_folder(root: Path) -> Path:
    manifest = good_manifest(root)
    text = manifest.read_text().replace("img/s0_m1.jpg", "../../outside.jpg")
    return write(manifest, text)


def manifest_with_a_corrupt_image(root: Path) -> Path:
    manifest = good_manifest(root)
    corrupt(root / "img" / "s0_m1.jpg")
    return manifest


def manifest_with_a_missing_image(root: Path) -> Path:
    manifest = good_manifest(root)
    (root / "img" / "s3_m2.png").unlink()
    return manifest


def data_case(what: str, dataset: str, make: Callable[[Path], Path]) -> Case:
    def build(folder: Path) -> list[str]:
        root = make(folder / "copy")
        return run(folder, "--datasets", dataset, "--data-root", f"{dataset}={root}", tiny=False)

    return Case("data folder", what, build)


def empty_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return root


def derm_without_valid_index(root: Path) -> Path:
    release, _ = build_derm7pt(root)
    (release / "meta" / "valid_indexes.csv").unlink()
    return release


def derm_with_garbage_meta(root: Path) -> Path:
    release, _ = build_derm7pt(root)
    write(release / "meta" / "meta.csv", b"\xff\xfe\x00garbage\x00\x81")
    return release


def flag(what: str, *extra: str, tiny: bool = True) -> Case:
    return Case("CLI flag", what, lambda f: run(f, *extra, tiny=tiny))


def command(what: str, argv: Callable[[Path], list[str]]) -> Case:
    return Case("CLI flag", what, argv)


def cases() -> list[Case]:
    """Every malformed input of the table, in the order it is printed."""
    return [
        flag("unknown method", "--methods", "kedr-typo"),
        flag("unknown dataset", "--datasets", "derm"),
        flag("missing rate of 1", "--rates", "0.2,1.0"),
        flag("missing rate that is not a number", "--rates", "0.2,x"),
        flag("seed that is not an integer", "--seeds", "0,one"),
        flag("negative seed", "--seeds", "-1"),
        flag("zero epochs", "--epochs", "0"),
        flag("epochs that are not an integer", "--epochs", "abc"),
        flag("zero batch size", "--batch-size", "0"),
        flag("device that does not exist", "--device", "tpu"),
        flag("unknown missingness mechanism", "--mechanism", "mar"),
        flag("unknown missing modality", "--modality", "m4"),
        flag("unknown apply-to", "--apply-to", "val"),
        flag("unknown executor", "--executor", "threads"),
        flag("zero workers", "--executor", "process", "--workers", "0"),
        flag("workers without a parallel executor", "--workers", "2"),
        flag("zero threads", "--threads", "0"),
        flag("ray address without ray", "--ray-address", "auto"),
        flag("data root without NAME=", "--data-root", "derm7pt"),
        flag("unknown config key", "--set", "train.epoch=3"),
        flag("--set value that is not YAML", "--set", "train.lr=["),
        flag("negative learning rate", "--set", "train.lr=-1"),
        flag("amp that is not a boolean", "--set", "train.amp=maybe"),
        flag("hparams that are not a mapping", "--set", "hparams=3"),
        flag("dropout outside [0, 1]", "--set", "hparams.late-fusion.dropout=2"),
        flag("feature_dim that is a word", "--set", "hparams.late-fusion.feature_dim=abc"),
        flag("unknown hyper-parameter", "--methods", "kedr", "--set", "hparams.kedr.no_such=1"),
        flag(
            "image_size that is a word", "--set", "dataset_options.synthetic-retina.image_size=big"
        ),
        flag("unknown dataset option", "--set", "dataset_options.synthetic-retina.colour=1"),
        flag("empty experiment name", "--set", "experiment="),
        flag("frozen backbone that does not exist", "--set", "frozen_backbone.name=no-such-net"),
        flag(
            "pretrained weights that are not there",
            "--set",
            "hparams.*.backbone=resnet18",
            "--set",
            "hparams.*.pretrained=/nonexistent/weights.pth",
        ),
        flag("--hparams file that does not exist", "--hparams", "missing.yaml"),
        command(
            "results dir under a file",
            lambda f: run(f, "--results-dir", str(write(f / "file", "") / "sub")),
        ),
        command(
            "results of an unknown experiment",
            lambda f: ["results", "--experiment", "nope", "--results-dir", str(results(f))],
        ),
        command(
            "report of an unknown experiment",
            lambda f: ["report", "--experiment", "nope", "--results-dir", str(results(f))],
        ),
        command(
            "report format that does not exist",
            lambda f: ["report", "--experiment", "t", "--formats", "docx", "--out", str(f)],
        ),
        command(
            "report into a folder under a file",
            lambda f: ["report", "--experiment", "t", "--out", str(write(f / "file", "") / "o")],
        ),
        command(
            "tune with zero trials",
            lambda f: ["tune", "--method", "late-fusion", "--rate", "0.4", "--trials", "0"],
        ),
        command(
            "tune with two methods",
            lambda f: ["tune", "--method", "late-fusion,moddrop", "--rate", "0.4", "--trials", "1"],
        ),
        command(
            "tune study name with spaces",
            lambda f: [
                "tune",
                "--method",
                "late-fusion",
                "--rate",
                "0.4",
                "--trials",
                "1",
                "--study",
                "my study",
                "--results-dir",
                str(results(f)),
            ],
        ),
        config_case("unclosed bracket", "methods: [late-fusion\nrates: [0.2]\n"),
        config_case("tab indentation", "train:\n\tepochs: 3\n"),
        config_case("a list, not a mapping", "- late-fusion\n- moddrop\n"),
        config_case("unknown key", "methds: [late-fusion]\n"),
        config_case("train that is a number", "train: 5\n"),
        config_case("rate that is a word", "rates: [0.2, x]\n"),
        config_case("not UTF-8", b"methods: [late-fusion]\n\xff\xfe\n"),
        config_case("a Python object tag", "methods: !!python/object:os.system [ls]\n"),
        Case("config YAML", "a folder", lambda f: run(f, "--config", str(empty_folder(f / "d")))),
        hparams_case("other keys than hparams and train", "methods: [kedr]\n"),
        hparams_case("malformed", "hparams: {late-fusion: {dropout: 0.1}\n"),
        hparams_case("method entry that is a list", "hparams: {late-fusion: [1, 2]}\n"),
        Case(
            "priors YAML",
            "file that does not exist",
            lambda f: run(f, "--methods", "kedr", "--set", "hparams.kedr.priors_file=/no/p.yaml"),
        ),
        priors_case("malformed", "classes:\n  normal: {cot: [unclosed\n"),
        priors_case("classes that are a list", "classes: [normal, pcv]\n"),
        card_case("malformed", "name: [unclosed"),
        card_case("a list, not a mapping", "- a list\n"),
        card_case("no options", toy_card(options=None).replace("options: null\n", "")),
        card_case("adapter that is not registered", toy_card(adapter="nope"), toy_run),
        card_case(
            "modality channels that are a word",
            toy_card(modalities=[{"name": "fundus", "channels": "three"}]),
        ),
        card_case("malformed priors file", toy_card(), toy_priors),
        Case(
            "dataset card",
            "BENCH_DATASETS_DIR that is not a folder",
            lambda f: ["list"],
            lambda f: {"BENCH_DATASETS_DIR": str(f / "nowhere")},
        ),
        csv_case("manifest that is not there", lambda root: root / "manifest.csv"),
        csv_case("no label column", manifest_without_label),
        csv_case("header only, no labelled row", manifest_with_header_only),
        csv_case("empty file", lambda root: write(root / "manifest.csv", "")),
        csv_case("binary garbage", lambda root: write(root / "manifest.csv", b"\x00\xff\x81")),
        csv_case(
            "modality column it does not have",
            good_manifest,
            "--set",
            "dataset_options.csv.modality_columns=fundus,oct",
        ),
        csv_case("a path that leaves its folder", manifest_escaping_its_folder),
        csv_case("a corrupt image", manifest_with_a_corrupt_image),
        csv_case("an image that is not there", manifest_with_a_missing_image),
        data_case("derm7pt root that does not exist", "derm7pt", lambda r: r / "nowhere"),
        data_case("derm7pt folder without meta.csv", "derm7pt", empty_folder),
        data_case("derm7pt without its valid index", "derm7pt", derm_without_valid_index),
        data_case("derm7pt meta.csv of binary garbage", "derm7pt", derm_with_garbage_meta),
        data_case("mmc-amd empty folder", "mmc-amd", empty_folder),
        data_case("harvard-glaucoma empty folder", "harvard-glaucoma", empty_folder),
        command(
            "data verify of a root that does not exist",
            lambda f: ["data", "verify", "derm7pt", "--root", str(f / "nowhere")],
        ),
    ]


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set, and every ``BENCH_DATA_*`` of the caller's environment unset."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("BENCH_DATA")]:
        del os.environ[key]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def recorded(folder: Path) -> tuple[int, int]:
    """(FINISHED runs, sticky FAILED runs) in the case's store, read straight from SQLite so
    that looking creates nothing."""
    db = results(folder) / "mlflow.db"
    if not db.is_file():
        return 0, 0
    query = (
        "SELECT r.status, t.value FROM runs r LEFT JOIN tags t "
        "ON t.run_uuid = r.run_uuid AND t.key = ?"
    )
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as connection:
        rows = connection.execute(query, (FAILURE_TAG,)).fetchall()
    finished = sum(status == "FINISHED" for status, _ in rows)
    return finished, sum(status == "FAILED" and failure in STICKY for status, failure in rows)


def run_case(case: Case, folder: Path) -> Outcome:
    """Run ``case`` in ``folder`` (its working directory too) and record what it left."""
    folder.mkdir(parents=True, exist_ok=True)
    out, err = io.StringIO(), io.StringIO()
    escaped = None
    cwd = Path.cwd()
    with environment(case.env(folder)):
        argv = case.build(folder)
        os.chdir(folder)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
        except Exception:  # what the table exists to catch
            code, escaped = None, traceback.format_exc()
        finally:
            os.chdir(cwd)
    stderr = err.getvalue()
    lines = (escaped or stderr).strip().splitlines() or [out.getvalue().strip()[-200:]]
    finished, sticky = recorded(folder)
    shown = "Traceback" in stderr or escaped is not None
    return Outcome(case, code, lines[-1], shown, finished, sticky)


def run_all(root: Path) -> list[Outcome]:
    logging.disable(logging.CRITICAL)  # a method's warnings are not the user's error line
    try:
        return [run_case(case, root / f"case{i:02d}") for i, case in enumerate(cases(), 1)]
    finally:
        logging.disable(logging.NOTSET)


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a Markdown table."""
    lines = ["| # | input | malformed | exit | recorded | message |", "|---|---|---|---|---|---|"]
    for i, o in enumerate(outcomes, 1):
        left = f"{o.finished} FINISHED, {o.sticky} sticky" if (o.finished or o.sticky) else "-"
        message = o.message.replace("|", "\\|")
        lines.append(
            f"| {i} | {o.case.kind} | {o.case.what} | {o.exit_code} | {left} | {message} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        outcomes = run_all(Path(tmp))
    print(table(outcomes))
    bad = [
        o for o in outcomes if o.traceback or o.finished or o.sticky or o.exit_code not in (1, 2)
    ]
    print(f"\n{len(outcomes)} inputs; {len(bad)} ended in a traceback or left a run behind")
    sys.exit(1 if bad else 0)
