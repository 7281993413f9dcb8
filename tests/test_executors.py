"""Executors: process workers and Ray write one store, survive a killed worker, resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import ray

from bench import results
from bench.cli import main
from bench.executors import usable_cores
from bench.tracking import Tracker
from tests.conftest import run_args

GRID = ["--methods", "late-fusion,unimodal:m1,unimodal:m2", "--rates", "0.2,0.6", "--seeds", "0"]


def runs_by_status(results_dir) -> dict[str, Counter]:
    """status -> how many runs each cell hash has in that status."""
    tracker = Tracker(results_dir)
    out: dict[str, Counter] = {}
    for run in tracker.runs(tracker.experiment_id("t")):
        out.setdefault(run.status, Counter())[run.cell_hash] += 1
    return out


def test_two_workers_record_every_cell_exactly_once(tmp_path, capsys):
    args = run_args(tmp_path, *GRID, "--executor", "process", "--workers", "2")
    # nn.Dropout accepts p=nan when built (so the pre-flight passes) and fails in training
    failing = ["--set", "hparams.late-fusion.dropout=nan"]
    assert main([*args, *failing]) == 1
    err = capsys.readouterr().err
    assert "6 cells: 6 to run" in err and err.count("FAILED late-fusion") == 2
    frame = results.load("t", tmp_path)
    assert len(frame) == 6 and not frame.duplicated(["method", "rate", "seed"]).any()
    assert Counter(frame["status"]) == {"FINISHED": 4, "FAILED": 2}
    runs = runs_by_status(tmp_path)
    assert set(runs) == {"FINISHED", "FAILED"}
    assert sum(runs["FINISHED"].values()) == 4 and max(runs["FINISHED"].values()) == 1

    assert main([*args, *failing]) == 1  # the method's failures stick: not retried
    err = capsys.readouterr().err
    assert "6 cells: 0 to run, 6 already recorded" in err
    assert "2 of 6 cells not finished (2 FAILED skipped: rerun with --retry-failed)" in err


def test_threads_per_worker_reach_every_cell(tmp_path):
    threads = usable_cores() // 2 + 1  # never the default for 2 workers, cores // 2
    args = run_args(tmp_path, "--methods", "unimodal:m1", "--rates", "0.2,0.6", "--seeds", "0")
    assert main([*args, "--executor", "process", "--workers", "2", "--threads", str(threads)]) == 0
    tracker = Tracker(tmp_path)
    runs = tracker.runs(tracker.experiment_id("t"))
    assert len(runs) == 2 and {r.tags["torch_threads"] for r in runs} == {str(threads)}
    assert len({r.tags["pid"] for r in runs}) == 2  # two workers, not this process


def test_kill_9_of_a_worker_loses_only_its_cell_and_a_rerun_completes(tmp_path):
    grid = ["--methods", "late-fusion,unimodal:m1", "--rates", "0.2,0.6", "--seeds", "0"]
    args = run_args(tmp_path, *grid, "--executor", "process", "--workers", "2", "--epochs", "4")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    parent = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # signals to the test's process group do not reach it
    )
    victim, deadline = None, time.monotonic() + 240
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.2)
        experiment_id = Tracker(tmp_path).experiment_id("t", create=False)
        if experiment_id is not None:
            running = [r for r in Tracker(tmp_path).runs(experiment_id) if r.status == "RUNNING"]
            victim = int(running[0].tags["pid"]) if running else None
    assert victim is not None and victim != parent.pid
    os.kill(victim, signal.SIGKILL)
    _, err = parent.communicate(timeout=240)
    assert parent.returncode == 1  # the grid went on and reported the lost cell
    assert f"worker process {victim} died (exit code -9)" in err
    frame = results.load("t", tmp_path)
    finished_before = int((frame["status"] == "FINISHED").sum())
    assert finished_before < 4 and set(frame["status"]) <= {"FINISHED", "KILLED"}

    assert main(args) == 0
    frame = results.load("t", tmp_path)
    assert len(frame) == 4 and set(frame["status"]) == {"FINISHED"}
    runs = runs_by_status(tmp_path)
    assert sum(runs["FINISHED"].values()) == 4 and max(runs["FINISHED"].values()) == 1
    assert sum(runs["KILLED"].values()) <= 1  # none if it died between two cells


@pytest.fixture
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_runs_a_grid_on_a_local_instance(tmp_path, capsys, local_ray):
    args = run_args(tmp_path, "--methods", "late-fusion,unimodal:m1", "--rates", "0.4")
    assert main([*args, "--seeds", "0", "--executor", "ray", "--workers", "2"]) == 0
    frame = results.load("t", tmp_path)
    assert len(frame) == 2 and set(frame["status"]) == {"FINISHED"}
    assert "2 cells: 2 to run" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--workers", "2"], "--workers needs a parallel executor: add --executor process"),
        (["--executor", "process", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["--executor", "process", "--threads", "0"], "--threads must be at least 1, got 0"),
        (["--executor", "dask"], "unknown executor 'dask': choose one of local, process, ray"),
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
    ],
)
def test_bad_executor_options_are_one_line_exit_2(tmp_path, capsys, extra, message):
    assert main(run_args(tmp_path, "--methods", "late-fusion", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"bench: error: {message}"
