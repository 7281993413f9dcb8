"""What makes two runs comparable is recorded in every run; ``bench results`` and ``bench
report`` say when one table mixes runs that are not; ``bench report`` exit codes."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.results import comparability_warning
from bench.tracking import Tracker, comparability_key
from tests.conftest import run_args

CELL = ["--methods", "late-fusion", "--rates", "0.2"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """One method, seed 0 at one torch thread and seed 1 at two."""
    results_dir = tmp_path_factory.mktemp("mixed")
    assert main(run_args(results_dir, *CELL, "--seeds", "0", "--threads", "1")) == 0
    assert main(run_args(results_dir, *CELL, "--seeds", "1", "--threads", "2")) == 0
    torch.set_num_threads(1)
    return results_dir


def test_every_run_records_its_comparability_key(mixed):
    tracker = Tracker(mixed)
    runs = tracker.runs(tracker.experiment_id("t"))
    commit = runs[0].tags["git_commit"][:12]
    expected = {f"commit={commit} torch={torch.__version__} device=cpu threads={n}" for n in (1, 2)}
    assert {run.tags["comparability"] for run in runs} == expected


def test_the_key_holds_threads_only_for_cpu_runs():
    tags = {"git_commit": "a" * 40, "torch_version": "2.5.1", "torch_threads": "8"}
    assert comparability_key({**tags, "device": "cuda:1"}) == (
        f"commit={'a' * 12} torch=2.5.1 device=cuda"
    )
    assert comparability_key({**tags, "device": "cpu"}).endswith("device=cpu threads=8")
    assert comparability_key({}) == "commit=unknown torch=unknown device=unknown"


def test_results_warn_when_one_table_mixes_thread_counts(mixed, capsys, caplog):
    with caplog.at_level(logging.WARNING, logger="bench.results"):
        assert main(["results", "--experiment", "t", "--results-dir", str(mixed)]) == 0
    (record,) = [r for r in caplog.records if r.name == "bench.results"]
    assert "these 2 finished cells ran under 2 settings" in record.message
    assert "threads=1 (1 cells)" in record.message and "threads=2 (1 cells)" in record.message


def test_no_warning_when_every_cell_shares_one_setting():
    cells = pd.DataFrame(
        {"status": ["FINISHED", "FINISHED", "FAILED"], "comparability": ["k", "k", "other"]}
    )
    assert comparability_warning(cells) is None


def test_report_of_one_method_builds_its_pdf_and_says_what_it_mixes(mixed, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["report", "--experiment", "t", "--results-dir", str(mixed), "--out", str(out)]
    assert main(args) == 0  # one method: no statistics table, and no crash in the PDF step
    assert (out / "report.pdf").stat().st_size > 0
    text = (out / "report.md").read_text()
    assert "Only late-fusion finished cells: no other method to compare." in text
    assert "Comparability WARNING: the tables mix 2 settings" in text
    runs = pd.read_csv(out / "csv" / "runs.csv")
    assert runs["comparability"].str.endswith(("threads=1", "threads=2")).all()


def test_report_exits_1_when_some_cells_did_not_finish(tmp_path, capsys):
    args = run_args(tmp_path, *CELL, "--seeds", "0")
    assert main(args) == 0
    failing = ["--methods", "moddrop", "--set", "hparams.moddrop.dropout=nan"]
    assert main(run_args(tmp_path, *failing, "--rates", "0.2", "--seeds", "0")) == 1
    capsys.readouterr()
    out = tmp_path / "report"
    report = ["report", "--experiment", "t", "--results-dir", str(tmp_path), "--out", str(out)]
    assert main([*report, "--formats", "md"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("1 cells of 't' not finished (1 FAILED): the report leaves them out")
    assert "Comparability: every reported run shares commit=" in (out / "report.md").read_text()


def test_report_of_no_finished_cell_is_exit_2_and_writes_nothing(tmp_path, capsys):
    failing = ["--methods", "moddrop", "--set", "hparams.moddrop.dropout=nan"]
    assert main(run_args(tmp_path, *failing, "--rates", "0.2", "--seeds", "0")) == 1
    out = tmp_path / "report"
    report = ["report", "--experiment", "t", "--results-dir", str(tmp_path), "--out", str(out)]
    assert main(report) == 2
    assert "has no FINISHED cells (1 FAILED)" in capsys.readouterr().err
    assert not out.exists()
