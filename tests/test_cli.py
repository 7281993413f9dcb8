"""`bench run` / `bench results` / `bench list` as a user drives them."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from bench import results
from bench.cli import main
from bench.metrics import metric_keys
from bench.tracking import Tracker
from methods.late_fusion import LateFusion
from tests.conftest import run_args


def results_json(results_dir, capsys) -> list[dict]:
    capsys.readouterr()
    assert (
        main(
            ["results", "--experiment", "t", "--results-dir", str(results_dir), "--format", "json"]
        )
        == 0
    )
    return json.loads(capsys.readouterr().out)


def test_run_then_results_shows_one_row_per_cell(tmp_path, capsys):
    args = run_args(
        tmp_path, "--methods", "late-fusion,unimodal:m2", "--rates", "0,0.6", "--seeds", "0"
    )
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "late-fusion" in out and "unimodal:m2" in out and "| 0.6" in out
    rows = results_json(tmp_path, capsys)
    assert len(rows) == 4
    assert set(rows[0]) == {"method", "dataset", "rate", "seed", "status", *metric_keys()}
    assert {r["status"] for r in rows} == {"FINISHED"}
    frame = results.load("t", tmp_path)
    assert list(frame.columns) == list(results.columns()) and len(frame) == 4

    assert main(args) == 0  # rerun: nothing left to do
    assert "4 cells: 0 to run, 4 already recorded" in capsys.readouterr().err
    assert len(results_json(tmp_path, capsys)) == 4


def test_a_diverging_cell_fails_with_its_reason_and_the_grid_goes_on(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(
        LateFusion, "loss", lambda self, out, batch, y: (out.logits.sum() * float("inf"), {})
    )
    args = run_args(
        tmp_path, "--methods", "late-fusion,unimodal:m1", "--rates", "0.2", "--seeds", "0"
    )
    assert main(args) == 1
    assert "FAILED late-fusion" in capsys.readouterr().err
    by_method = {r["method"]: r for r in results_json(tmp_path, capsys)}
    assert by_method["late-fusion"]["status"] == "FAILED"
    assert by_method["late-fusion"]["accuracy"] is None
    assert by_method["unimodal:m1"]["status"] == "FINISHED"

    assert main(args) == 1  # a method's failure sticks: skipped, and the exit status says so
    err = capsys.readouterr().err
    assert "0 to run" in err
    last = "1 of 2 cells not finished (1 FAILED skipped: rerun with --retry-failed)"
    assert err.strip().splitlines()[-1] == last
    monkeypatch.undo()
    assert main([*args, "--retry-failed"]) == 0
    statuses = {r["method"]: r["status"] for r in results_json(tmp_path, capsys)}
    assert statuses == {"late-fusion": "FINISHED", "unimodal:m1": "FINISHED"}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--methods", "kedr-typo"], "unknown method 'kedr-typo': choose one of"),
        (["--datasets", "derm"], "unknown dataset 'derm': choose one of"),
        (["--rates", "0.2,1.0"], r"missing rate 1.0 is outside \[0, 1\)"),
        (["--rates", "0.2,x"], "--rates must be floats"),
        (["--seeds", "0,one"], "--seeds must be ints"),
        (["--set", "train.epoch=3"], "unknown config key 'train.epoch'"),
        (["--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_records_nothing(tmp_path, capsys, extra, message):
    assert main(run_args(tmp_path, *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("bench: error: ") and "\n" not in err
    assert re.search(message, err)
    assert not (tmp_path / "mlflow.db").exists()


def test_unwritable_results_dir_is_reported(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(run_args(blocker / "sub", "--methods", "late-fusion")) == 2
    assert "is not writable" in capsys.readouterr().err


def test_results_for_an_unknown_experiment_names_the_known_ones(tmp_path, capsys):
    assert main(["results", "--experiment", "nope", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no tracking store at" in err
    assert "pass the --results-dir (or --tracking-uri) that bench run wrote" in err
    assert not (tmp_path / "mlflow.db").exists()  # a reader creates no store

    Tracker(tmp_path).experiment_id("t")
    assert main(["results", "--experiment", "nope", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no experiment 'nope'" in err and err.strip().endswith("choose one of t")
    assert "Default" not in err  # MLflow's own experiment is not one of ours


def test_list_shows_methods_with_summaries_and_datasets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "late-fusion" in out and "unimodal:m2" in out and "synthetic-retina" in out


def _finished_count(results_dir) -> int:
    """FINISHED runs in the store, read straight from SQLite: cheap enough to poll."""
    try:
        with sqlite3.connect(f"file:{results_dir / 'mlflow.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM runs WHERE status = 'FINISHED'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_kill_9_mid_grid_then_rerun_finishes_only_the_missing_cells(tmp_path):
    args = run_args(
        tmp_path / "killed",
        "--methods",
        "late-fusion,moddrop",
        "--rates",
        "0.2,0.4,0.6",
        "--seeds",
        "0",
    )
    command = [sys.executable, "-m", "bench.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # signals to the test's process group do not reach it
    )
    deadline = time.monotonic() + 240
    while _finished_count(tmp_path / "killed") < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = _finished_count(tmp_path / "killed")
    assert 1 <= before < 6, "the grid must be killed part-way"

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    assert f"6 cells: {6 - before} to run, {before} already recorded" in rerun.stderr
    resumed = results.load("t", tmp_path / "killed")
    assert len(resumed) == 6 and set(resumed["status"]) == {"FINISHED"}

    fresh_args = run_args(tmp_path / "fresh", *args[len(run_args(tmp_path / "killed")) :])
    subprocess.run(
        [sys.executable, "-m", "bench.cli", *fresh_args], env=env, check=True, capture_output=True
    )
    fresh = results.load("t", tmp_path / "fresh")
    pd.testing.assert_frame_equal(resumed, fresh)
