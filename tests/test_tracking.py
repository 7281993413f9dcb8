"""The one reader of runs (``Tracker.frame``, ``Tracker.find_runs``) and the platform every
run records."""

from __future__ import annotations

import math
import platform
import socket
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.cli import main
from bench.errors import UnknownNameError
from bench.report.build import build_report
from bench.report.collect import collect
from bench.report.tables import provenance_table
from bench.tracking import (
    PLATFORM_TAGS,
    TAG_HASH,
    Tracker,
    cpu_model,
    cpu_model_from,
    process_alive,
)
from tests.conftest import run_args

X86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6338\n"
ARM = "processor\t: 0\nBogoMIPS\t: 48.00\nCPU part\t: 0xd0c\n\nHardware\t: BCM2835\n"


def make_run(tracker, experiment_id, cell_hash, status, **tags) -> str:
    base = {TAG_HASH: cell_hash, "method": "m", "dataset": "d", "rate": "0.4", "seed": "0"}
    run = tracker.client.create_run(experiment_id, tags={**base, **tags})
    if status != "RUNNING":
        tracker.client.set_terminated(run.info.run_id, status)
    return run.info.run_id


def test_cpu_model_is_the_cpuinfo_name_on_x86_and_arm():
    assert cpu_model_from(X86) == "Intel(R) Xeon(R) Gold 6338"
    assert cpu_model_from(ARM) == "BCM2835"
    assert cpu_model_from("processor\t: 0\nmodel name\t:\n") == ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file() and cpu_model_from(cpuinfo.read_text()):
        assert cpu_model() == cpu_model_from(cpuinfo.read_text())


def ids(runs) -> list[str]:
    return [run.run_id for run in runs]


def test_find_runs_selects_by_hash_status_and_tags(tmp_path):
    tracker = Tracker(tmp_path)
    experiment_id = tracker.experiment_id("e")
    first = make_run(tracker, experiment_id, "a" * 16, "FINISHED", pid="11")
    second = make_run(tracker, experiment_id, "a" * 16, "RUNNING", pid="12")
    third = make_run(tracker, experiment_id, "b" * 16, "RUNNING", pid="12")
    parent = tracker.client.create_run(experiment_id, tags={"optuna_role": "study"}).info.run_id

    assert ids(tracker.find_runs(experiment_id)) == [first, second, third, parent]
    assert ids(tracker.runs(experiment_id)) == [first, second, third]  # cells only
    assert ids(tracker.find_runs(experiment_id, cell_hash="a" * 16)) == [first, second]
    assert ids(tracker.find_runs(experiment_id, status="RUNNING", tags={"pid": "12"})) == [
        second,
        third,
    ]
    found = tracker.find_runs(experiment_id, "a" * 16, "RUNNING", {"pid": "12"})
    assert ids(found) == [second]
    (study,) = tracker.find_runs(experiment_id, tags={"optuna_role": "study"})
    assert study.run_id == parent and study.cell_hash == ""
    with pytest.raises(ValueError, match="may not hold a quote"):
        tracker.find_runs(experiment_id, tags={"optuna_study": "it's"})


def test_frame_has_one_row_per_cell_from_the_run_that_speaks_for_it(tmp_path):
    tracker = Tracker(tmp_path)
    experiment_id = tracker.experiment_id("e")
    done = make_run(tracker, experiment_id, "a" * 16, "FINISHED", git_commit="abc")
    tracker.log_metrics(done, {"test/accuracy": 0.5, "val/accuracy": 0.9})
    failed = make_run(tracker, experiment_id, "a" * 16, "FAILED")  # newer, but not FINISHED
    tracker.client.set_tag(failed, "error", "ValueError: bad")
    dead = {"host": socket.gethostname(), "pid": "999999999"}
    assert not process_alive(dead) and process_alive({"host": "elsewhere", "pid": "1"})
    lost = make_run(tracker, experiment_id, "b" * 16, "RUNNING", seed="1", **dead)
    broken = make_run(tracker, experiment_id, "c" * 16, "FAILED", seed="2")
    tracker.client.set_tag(broken, "error", "ValueError: bad")

    frame = tracker.frame(experiment_id)
    assert list(frame["run_id"]) == [done, lost, broken]
    assert list(frame["status"]) == ["FINISHED", "KILLED", "FAILED"]
    assert list(frame["error"]) == ["", "", "ValueError: bad"]
    assert frame["git_commit"].tolist() == ["abc", "unknown", "unknown"]
    assert frame["accuracy"].iloc[0] == 0.5 and math.isnan(frame["accuracy"].iloc[1])
    assert not any(c.startswith(("test/", "val")) for c in frame.columns)
    assert frame["rate"].tolist() == [0.4] * 3 and frame["seed"].tolist() == [0, 1, 2]
    assert (frame["end_time"] > 0).all()
    with pytest.raises(UnknownNameError, match=r"no experiment 'nope' .*: choose one of e$"):
        tracker.require_experiment("nope")


def test_every_run_records_its_platform_and_the_report_shows_it(tmp_path, capsys):
    args = run_args(tmp_path, "--methods", "late-fusion", "--rates", "0,0.4", "--seeds", "0")
    assert main([*args, "--epochs", "1"]) == 0
    tracker = Tracker(tmp_path)
    frame = tracker.frame(tracker.require_experiment("t"))
    expected = {
        "python_version": platform.python_version(),
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "none",
        "device": "cpu",
        "device_name": cpu_model(),
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
    }
    for key, value in expected.items():
        assert set(frame[key]) == {value}, key
    cudnn = set(frame["cudnn_version"])
    assert cudnn == {"none"} or all(v.isdigit() for v in cudnn)

    runs = collect("t", tmp_path)
    assert set(PLATFORM_TAGS) <= set(runs.frame.columns)
    table = provenance_table(runs.frame)
    assert table.header[-1] == "platform" and {row[-1] for row in table.rows} == {"P1"}
    assert f"P1 = {cpu_model()} (cpu)" in table.note and platform.python_version() in table.note

    build_report("t", tmp_path, tmp_path / "report", formats=("csv",))
    written = pd.read_csv(tmp_path / "report" / "csv" / "runs.csv", dtype=str)
    assert set(written["cpu_model"]) == {cpu_model()}
    assert set(written["torch_version"]) == {torch.__version__}


def test_runs_without_platform_tags_are_reported_as_not_recorded():
    frame = pd.DataFrame(
        [
            {
                "method": "m",
                "dataset": "d",
                "rate": 0.4,
                "seed": 0,
                "run_id": "r" * 32,
                "cell_hash": "a" * 16,
                "git_commit": "unknown",
                "end_time": 0,
                **dict.fromkeys(PLATFORM_TAGS, "unknown"),
            }
        ]
    )
    table = provenance_table(frame)
    assert table.rows[0][-1] == "P1"
    assert table.note == "Platforms: P1 = not recorded (the run predates platform tags)."
