"""Pre-flight, sticky failures and exit codes of ``bench run`` / ``tune``, and ``--dry-run``."""

from __future__ import annotations

import pytest
import torch

from bench import failures
from bench.cli import main
from bench.cli.tune import _exit_status
from bench.config import expand, resolve
from bench.errors import BenchError, ConfigError, DataError, TrainingDivergedError
from bench.tracking import Tracker
from tests.conftest import TINY_SETS, run_args
from tests.data_fixtures import build_csv


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: ") and "\n" not in err, err
    return err


def recorded_runs(results_dir) -> list:
    if not (results_dir / "mlflow.db").exists():
        return []
    tracker = Tracker(results_dir)
    experiment_id = tracker.experiment_id("t", create=False)
    return tracker.runs(experiment_id) if experiment_id else []


def csv_args(results_dir, manifest) -> list[str]:
    return [
        "run",
        "--results-dir",
        str(results_dir),
        "--experiment",
        "t",
        "--epochs",
        "1",
        "--methods",
        "late-fusion",
        "--rates",
        "0.2",
        "--seeds",
        "0",
        "--datasets",
        "csv",
        "--data-root",
        f"csv={manifest}",
        "--set",
        "dataset_options.csv.image_size=16",
    ]


def test_a_manifest_not_there_yet_stops_the_grid_and_the_same_command_then_runs(tmp_path, capsys):
    manifest = tmp_path / "cohort" / "manifest.csv"
    args = csv_args(tmp_path / "results", manifest)
    assert main(args) == 2
    err = one_error_line(capsys)
    assert f"csv root {manifest} does not exist: pass --data-root csv=PATH" in err
    assert recorded_runs(tmp_path / "results") == []

    build_csv(manifest.parent)
    assert main(args) == 0  # the fixed path fixes the grid: nothing FAILED was recorded
    assert "1 cells: 1 to run, 0 already recorded" in capsys.readouterr().err
    assert [r.status for r in recorded_runs(tmp_path / "results")] == ["FINISHED"]


def test_one_wrong_data_root_records_no_run_for_any_cell(tmp_path, capsys):
    args = ["run", "--results-dir", str(tmp_path), "--experiment", "t", "--datasets", "derm7pt"]
    assert main([*args, "--data-root", "derm7pt=/nonexistent"]) == 2
    err = one_error_line(capsys)
    assert "derm7pt root /nonexistent does not exist: pass --data-root derm7pt=PATH" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_cell_that_failed_for_its_data_is_retried_by_a_plain_rerun(tmp_path, capsys, monkeypatch):
    def unreadable(self, ref):
        raise DataError("an image file vanished: restore it")

    monkeypatch.setattr("bench.cell.DatasetCache.get", unreadable)
    args = run_args(tmp_path, "--methods", "late-fusion", "--rates", "0.2", "--seeds", "0")
    assert main(args) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == (
        "1 of 1 cells not finished (1 FAILED (data: fix it, then rerun the same command))"
    )
    (run,) = recorded_runs(tmp_path)
    assert run.status == "FAILED" and run.tags["failure_class"] == "data"

    monkeypatch.undo()
    assert main(args) == 0  # no --retry-failed needed
    assert "1 cells: 1 to run, 0 already recorded" in capsys.readouterr().err
    assert sorted(r.status for r in recorded_runs(tmp_path)) == ["FAILED", "FINISHED"]


def test_a_diverging_method_is_tagged_method_and_sticks(tmp_path, capsys):
    args = run_args(tmp_path, "--methods", "late-fusion", "--rates", "0.2", "--seeds", "0")
    failing = ["--set", "hparams.late-fusion.dropout=nan"]  # built fine, fails in training
    assert main([*args, *failing]) == 1
    assert "1 FAILED (method: fix the method, then rerun with --retry-failed)" in (
        capsys.readouterr().err
    )
    (run,) = recorded_runs(tmp_path)
    assert run.tags["failure_class"] == "method"
    assert main([*args, *failing]) == 1
    assert "0 to run, 1 already recorded" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("error", "phase", "expected"),
    [
        (TrainingDivergedError("loss became nan"), "method", "method"),
        (ValueError("a bug inside the method"), "method", "method"),
        (ValueError("a reader broke"), "data", "data"),
        (DataError("corrupt image"), "data", "data"),
        (ConfigError("weights file is gone"), "method", "setup"),
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate"), "method", "resources"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory"), "method", "resources"),
        (MemoryError(), "data", "resources"),
        (OSError(28, "No space left on device"), "store", "resources"),
        (RuntimeError("the store went away"), "store", "store"),
    ],
)
def test_failures_are_classified_by_kind_and_by_where_they_happened(error, phase, expected):
    assert failures.classify(error, phase) == expected
    assert failures.is_sticky("FAILED", {"failure_class": expected}) == (expected == "method")


def test_runs_recorded_before_the_failure_tag_are_classified_from_their_error():
    assert failures.recorded_class("FAILED", {"error": "DataError: csv: root x"}) == "data"
    assert not failures.is_sticky("FAILED", {"error": "DataError: csv: root x"})
    assert failures.is_sticky("FAILED", {"error": "TrainingDivergedError: loss became nan"})
    assert failures.is_sticky("FAILED", {"error": "ZeroDivisionError: division by zero"})
    assert failures.recorded_class("KILLED", {}) == "interrupted"
    assert failures.recorded_class("FINISHED", {"error": "DataError: x"}) == ""


@pytest.mark.parametrize("device", ["cuda", "mps"])
@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]], ids=["run", "dry-run"])
def test_a_device_that_is_not_here_stops_before_any_cell(
    tmp_path, capsys, monkeypatch, device, dry_run
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert main(run_args(tmp_path, "--device", device, *dry_run)) == 2
    assert f"device {device!r} is not available here" in one_error_line(capsys)
    assert not (tmp_path / "mlflow.db").exists()


def test_tune_runs_the_preflight_too(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["tune", "--method", "late-fusion", "--rate", "0.4", "--trials", "1"]
    assert main([*args, "--device", "cuda", "--results-dir", str(tmp_path)]) == 2
    assert "device 'cuda' is not available here" in one_error_line(capsys)
    assert not (tmp_path / "optuna.db").exists()


def test_a_bad_hyper_parameter_value_fails_once_in_preflight_not_in_every_cell(tmp_path, capsys):
    bad = ["--set", "hparams.late-fusion.dropout=2"]
    assert main(run_args(tmp_path, "--methods", "late-fusion", *bad)) == 2
    err = one_error_line(capsys)
    assert "late-fusion cannot be built on synthetic-retina with dropout=2" in err
    assert "fix the hyper-parameter values" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_malformed_config_yaml_is_one_line_with_the_file_and_line(tmp_path, capsys):
    config = tmp_path / "grid.yaml"
    config.write_text("methods: [late-fusion\nrates: [0.2]\n")
    assert main(["run", "--config", str(config), "--results-dir", str(tmp_path)]) == 2
    err = one_error_line(capsys)
    assert f"config file {config} is not valid YAML (line 2, column 6:" in err
    assert not (tmp_path / "mlflow.db").exists()


def test_dry_run_lists_every_cell_with_its_hash_and_touches_no_store(tmp_path, capsys):
    grid = ["--methods", "late-fusion,moddrop", "--rates", "0.2,0.4", "--seeds", "0"]
    sets = ["--set", "hparams.moddrop.drop_prob=0.3"]
    results_dir = tmp_path / "never"
    args = ["run", "--dry-run", "--results-dir", str(results_dir), *grid, *sets]
    assert main(args) == 0
    out = capsys.readouterr().out
    config = resolve(
        None,
        {"methods": ["late-fusion", "moddrop"], "rates": [0.2, 0.4], "seeds": [0]},
        ["hparams.moddrop.drop_prob=0.3"],
    )
    cells = expand(config)
    assert out.startswith("4 cells (methods 2 x datasets 1 x rates 2 x seeds 1)")
    rows = {tuple(cell.strip() for cell in line.split("|")[1:-1]) for line in out.splitlines()}
    for cell in cells:
        row = (cell.method, "synthetic-retina", f"{cell.missing.rate:g}", "0", cell.hash)
        assert row in rows
    assert "train: epochs=20, batch_size=32, lr=0.001" in out and "device='auto'" in out
    assert "missingness: mechanism='mcar', modality='either', apply_to='both'" in out
    assert "  moddrop: drop_prob=0.3" in out and "  late-fusion: (defaults)" in out
    assert "  synthetic-retina: data_seed=0" in out
    assert not results_dir.exists()


def test_dry_run_needs_no_data_on_disk(tmp_path, capsys):
    args = ["run", "--dry-run", "--results-dir", str(tmp_path / "r"), "--datasets", "derm7pt"]
    assert main([*args, "--data-root", "derm7pt=/nonexistent", "--methods", "kedr"]) == 0
    assert "root=" in capsys.readouterr().out


def test_dry_run_still_refuses_bad_input(tmp_path, capsys):
    args = ["run", "--dry-run", "--results-dir", str(tmp_path)]
    for item in [*TINY_SETS, "dataset_options.synthetic-retina.image_size=big"]:
        args += ["--set", item]
    assert main(args) == 2
    assert "image_size" in one_error_line(capsys)


def test_tune_exit_status_counts_failed_trials_and_tolerates_others_running(capsys):
    assert _exit_status(["COMPLETE", "PRUNED", "RUNNING"]) == 0
    assert "1 trials still RUNNING in other processes" in capsys.readouterr().err
    assert _exit_status(["COMPLETE", "FAIL", "FAIL"]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("2 of 3 trials not finished (2 FAIL): see the errors above")


def test_every_error_message_reaches_the_user_on_one_line(capsys, monkeypatch):
    def two_lines(args):
        raise BenchError("first line\nsecond line")

    monkeypatch.setattr("bench.cli.listing.cmd_list", two_lines)
    assert main(["list"]) == 2
    assert capsys.readouterr().err == "bench: error: first line second line\n"
