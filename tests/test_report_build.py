"""`bench report` end to end on a tiny finished grid: files, reproducibility, errors."""

from __future__ import annotations

import argparse
import fcntl
import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.cli.report import DEFAULT_FORMATS, cmd_report
from bench.cli.report import add_parser as add_report_parser
from bench.errors import BenchError, ConfigError, UnknownNameError
from bench.metrics import metric_keys, metric_spec
from bench.report import stats
from bench.report.build import FORMATS, build_report
from bench.report.figures import confidence_figure
from bench.report.tables import headline_metrics, utc
from bench.tracking import TAG_HASH, Tracker
from tests.conftest import run_args

GRID = ["--methods", "late-fusion,unimodal:m1", "--rates", "0,0.5", "--seeds", "0,1,2"]
PROFILE = {
    "method": "late-fusion",
    "device": "cpu",
    "batch_size": 32,
    "input": "images:32",
    "params_train": 120_000,
    "params_infer": 120_000,
    "flops_train": 3.1e8,
    "flops_infer": 1.0e8,
    "train_step_s": 0.012,
    "infer_latency_s": 0.004,
    "peak_mem_mb": 55.5,
}


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """A finished 2 methods x 2 rates x 3 seeds grid (1 epoch), shared by pytest-xdist
    workers: the first builds it under a lock, the others find every cell done (resume)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder = root / "report-grid"
    torch.set_num_threads(1)  # module fixtures run before conftest's per-test setting
    with open(root / "report-grid.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert main(run_args(folder, *GRID, "--epochs", "1")) == 0
        (folder / "profile").mkdir(exist_ok=True)
        (folder / "profile" / "late-fusion.json").write_text(json.dumps(PROFILE))
    return folder


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["report", *argv])


@pytest.fixture(scope="module")
def report(results_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert (
        cmd_report(
            _parse("--experiment", "t", "--results-dir", str(results_dir), "--out", str(out))
        )
        == 0
    )
    return out


def test_report_writes_tables_figures_statistics_and_pdf(report):
    names = {str(p.relative_to(report)) for p in report.rglob("*") if p.is_file()}
    for name in (
        "report.md",
        "report.pdf",
        "tables/synthetic-retina_main.tex",
        "tables/synthetic-retina_ece.tex",
        "tables/synthetic-retina_robustness.tex",
        "tables/synthetic-retina_all_metrics.tex",
        "tables/stats.tex",
        "tables/efficiency.tex",
        "csv/summary.csv",
        "csv/summary_all_metrics.csv",
        "csv/robustness.csv",
        "csv/runs.csv",
        "figures/synthetic-retina_reliability.png",
        "figures/synthetic-retina_reliability.svg",
        "figures/synthetic-retina_curves.png",
        "figures/synthetic-retina_curves.svg",
    ):
        assert name in names
    markdown = (report / "report.md").read_text()
    assert "the KEDR paper reports none for synthetic-retina" in markdown
    assert "no confidence-density figure" in markdown  # neither method saves conf_*
    assert "Efficiency (bench profile)" in markdown
    assert "| unimodal:m1 |" in markdown  # the reference is the other method
    runs = pd.read_csv(report / "csv" / "runs.csv")
    assert len(runs) == 12
    assert set(runs["method"]) == {"late-fusion", "unimodal:m1"}
    summary = pd.read_csv(report / "csv" / "summary.csv")
    assert set(summary["n"]) == {3}
    assert summary["ci_low"].notna().all()
    assert list(dict.fromkeys(summary["metric"])) == list(headline_metrics())
    every = pd.read_csv(report / "csv" / "summary_all_metrics.csv")
    assert list(dict.fromkeys(every["metric"])) == list(metric_keys())


def test_report_lists_every_metric_and_states_the_settings_it_used(report):
    markdown = (report / "report.md").read_text()
    labels = [metric_spec(k).label for k in metric_keys()]
    assert "| rate | method | " + " | ".join(labels) + " |" in markdown
    for key in metric_keys():
        assert f"- {metric_spec(key).label} ({key}" in markdown
    assert f"{metric_spec('ece').params['n_bins']} equal-width bins on [0, 1]" in markdown
    assert f"{stats.N_RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED}" in markdown
    assert f"up to {stats.EXACT_MAX_PAIRS} pairs" in markdown


def test_report_is_dated_by_the_newest_run_not_by_now(report):
    runs = pd.read_csv(report / "csv" / "runs.csv")
    assert (
        f"newest run ended {utc(int(runs['end_time'].max()))}" in (report / "report.md").read_text()
    )


def test_report_is_byte_identical_when_rebuilt(results_dir, report, tmp_path):
    build_report("t", results_dir, tmp_path)
    first = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    second = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert first == second
    for name in first:
        assert (report / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert b"CreationDate" not in (report / "report.pdf").read_bytes()


def test_unknown_experiment_is_a_one_line_error(results_dir, tmp_path):
    with pytest.raises(UnknownNameError) as info:
        cmd_report(_parse("--experiment", "nope", "--results-dir", str(results_dir)))
    assert "\n" not in str(info.value)
    assert "choose one of" in str(info.value) and "t" in str(info.value)
    with pytest.raises(ConfigError, match="no tracking store"):
        build_report("t", tmp_path / "missing", tmp_path / "out")


def test_experiment_without_finished_cells_is_a_clear_error(results_dir, tmp_path):
    tracker = Tracker(results_dir)
    experiment_id = tracker.experiment_id("only-failed")
    run = tracker.client.create_run(experiment_id, tags={TAG_HASH: "0" * 16, "method": "x"})
    tracker.client.set_terminated(run.info.run_id, "FAILED")
    with pytest.raises(BenchError, match="no FINISHED cells \\(1 FAILED\\)") as info:
        build_report("only-failed", results_dir, tmp_path)
    assert "\n" not in str(info.value)


def test_cli_defaults_to_every_format():
    assert ",".join(FORMATS) == DEFAULT_FORMATS
    assert _parse("--experiment", "t").formats == DEFAULT_FORMATS


def test_bad_reference_and_format_are_rejected(results_dir, tmp_path):
    with pytest.raises(UnknownNameError, match="did not run"):
        build_report("t", results_dir, tmp_path, reference_method="kedr")
    with pytest.raises(ConfigError, match="unknown report format"):
        build_report("t", results_dir, tmp_path, formats=("md", "docx"))


def test_confidence_figure_splits_branches_by_missing_modality():
    rng = np.random.default_rng(0)
    present = np.array([[1, 1]] * 6 + [[0, 1]] * 3 + [[1, 0]] * 3, dtype=bool)
    predictions = pd.DataFrame(
        {
            "present_m1": present[:, 0],
            "present_m2": present[:, 1],
            "conf_c_s": rng.uniform(size=12),
            "conf_c_1": np.where(present[:, 0], rng.uniform(size=12), 0.0),
            "conf_c_2": np.where(present[:, 1], rng.uniform(size=12), 0.0),
        }
    )
    fig = confidence_figure(predictions, "toy", "kedr")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["c_s (shared branch)", "c_1 (m1 branch)", "c_2 (m2 branch)"]
    # two histogram patches (fill, outline) per missing pattern drawn in the panel
    assert [len(ax.patches) for ax in fig.axes] == [6, 4, 4]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["complete (n = 6)", "m1 missing (n = 3)", "m2 missing (n = 3)"]
