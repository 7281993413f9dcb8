"""Cells per GPU on CPU: placement, the memory check before a worker starts, the per-worker
cap, and an out-of-memory cell FAILED with its reason, never moved to the CPU. CUDA is
faked where the parent needs it (visible GPUs, their free memory)."""

from __future__ import annotations

import re

import pytest
import torch

from bench import executors, gpus
from bench.cell import DatasetCache, run_cell
from bench.cli import main
from bench.errors import ConfigError
from bench.gpus import GIB, GpuMemory, check_memory, plan_workers
from bench.spec import CellSpec, MissingSpec, TrainSpec
from bench.tracking import Tracker
from tests.conftest import run_args


def test_cells_per_gpu_places_k_workers_on_each_gpu_round_robin():
    plan = plan_workers(["0", "1"], None, 2, default_workers=1)
    assert plan.slots == ("0", "1", "0", "1") and plan.share == 0.5
    assert plan.share_label == "1/2"
    assert plan_workers(["0", "1"], 3, 2, 1).slots == ("0", "1", "0")
    assert plan_workers(["0"], 3, None, 1) == gpus.GpuPlan(("0", "0", "0"), 1.0)
    assert plan_workers([], None, None, 2).slots == (None, None)


@pytest.mark.parametrize(
    ("visible", "workers", "message"),
    [
        ([], None, "--cells-per-gpu 2 needs a CUDA GPU, and none is visible here"),
        (["0"], 3, "--workers 3 do not fit 1 GPU(s) at --cells-per-gpu 2: give at most"),
    ],
)
def test_impossible_placements_say_what_to_change(visible, workers, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_workers(visible, workers, 2, 1)


def fake_memory(free_gib: float, total_gib: float = 80.0):
    return lambda gpu: GpuMemory(int(free_gib * GIB), int(total_gib * GIB))


def test_a_gpu_must_have_the_share_of_every_worker_starting_on_it(monkeypatch):
    monkeypatch.setattr(gpus, "gpu_memory", fake_memory(79.0))
    check_memory(["0"] * 4, 0.25)  # 4 x 20 GiB x 0.9 = 72 GiB <= 79
    monkeypatch.setattr(gpus, "gpu_memory", fake_memory(30.0))
    with pytest.raises(ConfigError, match=r"GPU 0 has 30.0 GiB free of 80.0, less than the 72.0"):
        check_memory(["0"] * 4, 0.25)
    check_memory(["0"], 0.25)  # one replacement worker: 18 GiB


def test_a_busy_gpu_stops_the_grid_before_any_worker_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0"])
    monkeypatch.setattr(gpus, "gpu_memory", fake_memory(10.0))
    args = run_args(tmp_path, "--methods", "unimodal:m1", "--rates", "0.2,0.6", "--seeds", "0")
    assert main([*args, "--executor", "process", "--cells-per-gpu", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("bench: error: GPU 0 has 10.0 GiB free of 80.0, less than the 72.0")
    tracker = Tracker(tmp_path)
    assert tracker.runs(tracker.experiment_id("t")) == []


def test_two_workers_share_one_gpu_and_record_their_share(tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0"])
    monkeypatch.setattr(gpus, "gpu_memory", fake_memory(79.0))
    args = run_args(tmp_path, "--methods", "unimodal:m1", "--rates", "0.2,0.6", "--seeds", "0")
    assert main([*args, "--executor", "process", "--cells-per-gpu", "2", "--device", "cpu"]) == 0
    tracker = Tracker(tmp_path)
    runs = tracker.runs(tracker.experiment_id("t"))
    assert len(runs) == 2 and len({r.tags["pid"] for r in runs}) == 2
    assert {(r.tags["gpu"], r.tags["gpu_share"]) for r in runs} == {("0", "1/2")}


def test_a_worker_caps_its_allocator_at_its_share(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda *a: calls.append(a))
    gpus.cap_memory(1.0)
    gpus.cap_memory(0.25)
    assert calls == [(0.25, 0)]


def test_an_out_of_memory_cell_is_failed_with_its_reason_not_moved(tmp_path, tiny_ref, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr("bench.cell.fit", out_of_memory)
    tracker = Tracker(tmp_path)
    experiment_id = tracker.experiment_id("oom")
    spec = CellSpec("unimodal:m1", tiny_ref, MissingSpec(0.2), TrainSpec(epochs=1), 0)
    result = run_cell(spec, tracker, experiment_id, DatasetCache(tmp_path / "cache"))
    assert result.status == "FAILED"
    assert result.error == "OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    (run,) = tracker.runs(experiment_id)  # one attempt, on the device it asked for
    assert run.status == "FAILED" and run.tags["error"] == result.error
    assert run.tags["device"] == "cpu"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--executor", "process", "--cells-per-gpu", "0"], "--cells-per-gpu must be at least 1"),
        (["--cells-per-gpu", "2"], "--cells-per-gpu needs a parallel executor"),
    ],
)
def test_bad_cells_per_gpu_is_one_line_exit_2(tmp_path, capsys, extra, message):
    assert main(run_args(tmp_path, "--methods", "unimodal:m1", *extra)) == 2
    assert capsys.readouterr().err.strip().startswith(f"bench: error: {message}")
