"""``python -m bench.benchmarks.gpu --tiny``: every section runs (or says why not) and the
JSON object holds measured numbers; CUDA-only steps skip with their reason on CPU."""

from __future__ import annotations

import json

import pytest
import torch

from bench.benchmarks import gpu

NEEDS_CUDA = "skipped: CUDA only"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    assert gpu.main(["--tiny", "--device", "cpu", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_tiny_run_measures_every_cpu_section(tiny_run):
    assert tiny_run["device"] == "cpu" and tiny_run["total_s"] > 0
    for method in ("late-fusion", "kedr"):
        found = tiny_run["correctness"]["methods"][method]
        assert found["within_tolerance"] is True and set(found["fp32"]) == set(gpu.TOLERANCE)
    measured = [r for r in tiny_run["throughput"] if "pairs_per_s" in r]
    assert {r["model"] for r in measured} == set(gpu.MODELS)
    assert all(r["pairs_per_s"] > 0 and r["batch"] == gpu.TINY.batch for r in measured)
    assert next(r for r in measured if r["model"] == "backbones")["time_vs_backbones"] == 1.0
    pipeline = tiny_run["input_pipeline"]
    assert pipeline["pairs_per_s"] > 0 and pipeline["loader_over_model"] > 0
    frozen = tiny_run["frozen_features"]
    assert frozen["grid_cells"] == frozen["grid_finished"] == 2 and frozen["grid_exit"] == 0


def test_cuda_only_steps_skip_with_their_reason_on_cpu(tiny_run):
    assert [r["skipped"] for r in tiny_run["compile"]] == [NEEDS_CUDA] * len(gpu.MODELS)
    largest = [r for r in tiny_run["throughput"] if r["batch"] == "largest"]
    assert [r["skipped"] for r in largest] == [NEEDS_CUDA] * len(gpu.MODELS)
    assert {r["skipped"] for r in tiny_run["concurrency"]} == {NEEDS_CUDA}


def test_a_spent_budget_skips_what_is_left_and_says_so(capsys):
    assert gpu.main(["--tiny", "--device", "cpu", "--budget-s", "0", "--sections", "1,2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["correctness"] == out["throughput"] == gpu.SKIP_BUDGET
    assert out["compile"] == "skipped: not in --sections"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_bf16_training_matches_fp32_within_tolerance_on_cuda(tmp_path):
    out = tmp_path / "gpu.json"
    assert gpu.main(["--tiny", "--device", "cuda", "--sections", "1", "--out", str(out)]) == 0
    found = json.loads(out.read_text())["correctness"]
    assert all(m["within_tolerance"] for m in found["methods"].values())
    assert found["grad_scaler"] is (found["amp_dtype"] == "float16")


def test_a_failing_section_is_reported_and_the_others_still_run(monkeypatch, capsys):
    def broken(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(gpu, "correctness", broken)
    assert gpu.main(["--tiny", "--device", "cpu", "--sections", "1,4"]) == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert out["correctness"] == {"error": "RuntimeError: boom"}
    assert out["input_pipeline"]["pairs_per_s"] > 0
    assert "error: RuntimeError: boom" in captured.err
