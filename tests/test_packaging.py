"""The wheel carries the cards, priors and reference numbers; installed, it lists and runs.

Each test builds from a copy of the source (so that the build leaves nothing in the
checkout) and installs into a fresh virtual environment that reuses this interpreter's
installed dependencies through a ``.pth`` file (``pip install --no-deps``, no network), then
runs the installed ``bench`` from a folder outside the repository.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from bench.data import all_cards

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "bench", "methods", "datasets", "results/reference")
TINY = {"image_size": 32, "n_train": 40, "n_test": 20, "val_fraction": 0.25}


def copy_source(dest: Path) -> Path:
    for item in SOURCES:
        source, target = REPO / item, dest / item
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def fresh_venv(path: Path) -> Path:
    """A venv without pip whose site-packages sees this interpreter's packages (.pth)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "shared-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def clean_env() -> dict[str, str]:
    """No PYTHONPATH (it would put the checkout first) and no redirected cards folder."""
    drop = {"PYTHONPATH", "BENCH_DATASETS_DIR"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def pip_install(python: Path, target: str, tmp_path: Path, *flags: str) -> None:
    pip = [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"]
    run([*pip, "--ignore-installed", "--quiet", *flags, target], tmp_path)


def test_the_wheel_ships_cards_priors_and_references_and_runs_a_cell(tmp_path):
    source = copy_source(tmp_path / "source")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    run([*build, "--no-index", "--quiet", "-w", str(tmp_path / "dist"), str(source)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("kedr_bench-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())

    shipped = {p.name for p in (REPO / "datasets").iterdir()}
    assert shipped >= {f"{name}.yaml" for name in all_cards()}
    assert {f"bench/_resources/datasets/{name}" for name in shipped} <= names
    presets = {p.name for p in (REPO / "bench" / "presets").glob("*.yaml")}
    assert presets and {f"bench/presets/{name}" for name in presets} <= names
    references = {p.name for p in (REPO / "results" / "reference").glob("*.csv")}
    assert {f"bench/_resources/reference/{name}" for name in references} <= names
    modules = {
        p.relative_to(REPO).as_posix()
        for d in ("bench", "methods")
        for p in (REPO / d).rglob("*.py")
    }
    missing = sorted(modules - names)
    assert not missing, f"add their packages to [tool.setuptools] packages: {missing}"
    assert not any(n.startswith(("datasets/", "results/")) for n in names)  # no top-level datasets

    python = fresh_venv(tmp_path / "venv")
    pip_install(python, str(wheel), tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    where = run([str(python), "-c", "import bench; print(bench.__file__)"], outside)
    assert Path(where.strip()).is_relative_to(tmp_path / "venv")

    bench = str(tmp_path / "venv" / "bin" / "bench")
    listed = run([bench, "list"], outside).split("datasets:")[1].split("metrics:")[0]
    assert sorted(line.split()[0] for line in listed.strip().splitlines()) == sorted(all_cards())

    store = ["--experiment", "wheel", "--results-dir", str(outside / "results")]
    sets = [f"--set=dataset_options.synthetic-retina.{k}={v}" for k, v in TINY.items()]
    cell = ["--methods", "late-fusion", "--rates", "0.2", "--seeds", "0", "--epochs", "1"]
    run([bench, "run", *cell, *store, *sets], outside)
    table = run([bench, "results", *store, "--format", "csv"], outside)
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [(r["method"], r["status"]) for r in rows] == [("late-fusion", "FINISHED")]


def test_an_editable_install_reads_the_files_of_its_checkout(tmp_path):
    source = copy_source(tmp_path / "source")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, str(source), tmp_path, "-e")
    probe = (
        "from bench.data import all_cards, get_card, load_priors;"
        "from bench.report.reference import REFERENCE_DIR, published;"
        "card = get_card('synthetic-retina');"
        "print(card.path.parent, REFERENCE_DIR, len(all_cards()), len(load_priors(card)),"
        " len(published()))"
    )
    cards, reference, count, priors, rows = run([str(python), "-c", probe], tmp_path).split()
    assert Path(cards) == source / "datasets" and Path(reference) == source / "results/reference"
    assert int(count) == len(all_cards()) and int(priors) == 4 and int(rows) > 0
