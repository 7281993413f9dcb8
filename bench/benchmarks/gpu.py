"""The one GPU check: everything a short session on one GPU should measure, in one run.

    python -m bench.benchmarks.gpu [--out gpu.json] [--budget-s 420] [--sections 1,2,3,4,5,6]
    python -m bench.benchmarks.gpu --tiny        # a CPU smoke run (the test suite's)

It prints one JSON object on stdout (and to ``--out``) and a readable table on stderr:

1. ``correctness``: late fusion and KEDR (small-cnn, 64 px) trained with the same seed in
   fp32 and with AMP (bf16 autocast on a GPU that has bf16, where ``bench.train`` uses no
   GradScaler; fp16 and a GradScaler otherwise); test metrics must agree within
   :data:`TOLERANCE`.
2. ``throughput``: the paper configuration, two ResNet-50s at 224 px, bf16 autocast and
   channels_last: training pairs/s and peak GiB at batch 32 and at the largest batch that
   fits (doubling up to :data:`MAX_BATCH`), for KEDR, late fusion and the two backbones alone,
   so that KEDR's head costs a ratio.
3. ``compile``: the same at batch 32 with ``torch.compile``; a model that fails to compile is
   reported with its error, not hidden.
4. ``input_pipeline``: one epoch of the decoded-cache images (pinned memory) to the GPU, in
   pairs/s, against what KEDR consumes at batch 32 (above 1: the loader is not the bottleneck).
5. ``frozen_features``: ResNet-50 feature extraction in pairs/s, then the grid ``--methods all
   --rates 0.2,0.4,0.6,0.8 --seeds 0`` on the cached features, its wall time.
6. ``concurrency``: one grid of small cells through ``--executor process --cells-per-gpu K``
   for K in 1, 2, 4, 8, in cells/min.

The sections run in that order, but ``compile`` last (its compile times are the longest and
the least needed), within ``--budget-s`` seconds: a step that would start after the budget
is spent (a compilation: with less than :data:`COMPILE_NEEDS_S` left) is skipped with that
reason, so that the run fits a 15-minute GPU session and leaves time to rerun. On CUDA the
frozen-feature grid runs with ``--executor process --cells-per-gpu 4``. CUDA-only steps are
skipped with their reason on a machine without CUDA. ``--tiny`` shrinks every section
(32 px, small-cnn, a few steps) to run in well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from bench.cell import DatasetCache, run_cell
from bench.config import expand, resolve
from bench.data import dataset_info, get_card, load_dataset
from bench.data.features import frozen_features
from bench.encoders import create_encoder
from bench.executors import ExecutorOptions, run_cells
from bench.interface import Batch, build_method
from bench.profile import synthetic_batch
from bench.runtime import resolve_device
from bench.spec import CellSpec, DatasetRef, MissingSpec, TrainSpec
from bench.tracking import Tracker, device_name
from bench.train import MaskedSplit, make_batch

DATASET = "synthetic-retina"
TOLERANCE = {"accuracy": 0.05, "f1_macro": 0.05}  # absolute, fp32 vs AMP after equal training
MAX_BATCH = 1024
GIB = 2**30
GRID_CELLS_PER_GPU = 4


@dataclass(frozen=True)
class Setting:
    """How big each section is."""

    correctness_size: int = 64
    correctness_epochs: int = 5
    backbone: str = "resnet50"
    image_size: int = 224
    batch: int = 32
    steps: int = 15
    warmup: int = 3
    dataset_options: tuple[tuple[str, Any], ...] = ()
    grid_methods: str = "all"
    grid_rates: str = "0.2,0.4,0.6,0.8"
    grid_epochs: int = 20
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    concurrency_seeds: int = 2
    concurrency_epochs: int = 5


FULL = Setting()
TINY = Setting(
    correctness_size=32,
    correctness_epochs=1,
    backbone="small-cnn",
    image_size=32,
    batch=8,
    steps=2,
    warmup=1,
    dataset_options=(("n_test", 40), ("n_train", 80), ("val_fraction", 0.25)),
    grid_methods="late-fusion,unimodal:m1",
    grid_rates="0.4",
    grid_epochs=1,
    concurrency=(1, 2),
    concurrency_seeds=1,
    concurrency_epochs=1,
)


class Budget:
    """Seconds left of the run's budget."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def spent(self, need: float = 0.0) -> bool:
        """Whether less than ``need`` seconds are left."""
        return time.monotonic() + need >= self.deadline


SKIP_BUDGET = "skipped: the time budget (--budget-s) was spent"
SKIP_CUDA = "skipped: CUDA only"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _release(device: torch.device) -> None:
    """Hand this process's cached GPU memory back before workers check what is free."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _autocast(device: torch.device):
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=_amp_dtype())


def _amp_dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _quiet(fn: Callable[[], Any]) -> Any:
    """``fn()`` with the harness's own progress lines and tables kept off our output."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn()


# 1. correctness ------------------------------------------------------------------------------
def correctness(setting: Setting, device: torch.device, root: Path) -> dict[str, Any]:
    """fp32 against AMP, same seed, for late fusion and KEDR: metrics and their differences."""
    options = {**dict(setting.dataset_options), "image_size": setting.correctness_size}
    ref = DatasetRef.of(DATASET, options)
    tracker = Tracker(root / "correctness")
    experiment_id = tracker.experiment_id("correctness")
    datasets = DatasetCache(root / "cache")
    out: dict[str, Any] = {
        "amp_dtype": str(_amp_dtype()).removeprefix("torch.") if device.type == "cuda" else "none",
        "grad_scaler": device.type == "cuda" and _amp_dtype() == torch.float16,
        "tolerance": TOLERANCE,
        "methods": {},
    }
    for method in ("late-fusion", "kedr"):
        metrics = {}
        for amp in (False, True):
            train = TrainSpec(epochs=setting.correctness_epochs, amp=amp, device=str(device))
            spec = CellSpec(method, ref, MissingSpec(0.4), train, 0)
            result = _quiet(lambda spec=spec: run_cell(spec, tracker, experiment_id, datasets))
            if result.status != "FINISHED":
                raise RuntimeError(f"{spec.label} amp={amp}: {result.status} {result.error}")
            metrics["amp" if amp else "fp32"] = {k: result.metrics[k] for k in TOLERANCE}
        diff = {k: abs(metrics["amp"][k] - metrics["fp32"][k]) for k in TOLERANCE}
        within = all(diff[k] <= TOLERANCE[k] for k in TOLERANCE)
        out["methods"][method] = {**metrics, "abs_diff": diff, "within_tolerance": within}
    return out


# 2. and 3. throughput ------------------------------------------------------------------------
class TwoBackbones(torch.nn.Module):
    """The two image encoders alone, trained on the mean square of their features: the cost
    every method pays before its head."""

    def __init__(self, backbone: str, channels: tuple[int, ...], feature_dim: int) -> None:
        super().__init__()
        self.encoders = torch.nn.ModuleList(
            create_encoder(backbone, c, feature_dim=feature_dim) for c in channels
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        return torch.cat([enc(x) for enc, x in zip(self.encoders, batch.images, strict=True)], 1)


def _model(name: str, setting: Setting, device: torch.device):
    """(module, loss of one batch) of ``name``: ``backbones`` or a registered method."""
    card = get_card(DATASET)
    info = dataset_info(card, card.resolve_options({"image_size": setting.image_size}))
    torch.manual_seed(0)
    if name == "backbones":
        model = TwoBackbones(setting.backbone, info.channels, 64)

        def loss(module, batch, y):
            return module(batch).float().pow(2).mean()

    else:
        model = build_method(name, info, {"backbone": setting.backbone})

        def loss(module, batch, y):
            return model.loss(module(batch), batch, y)[0]

    return model.to(device).to(memory_format=torch.channels_last), loss, info


def train_rate(
    name: str, setting: Setting, device: torch.device, batch_size: int, compiled: bool
) -> dict[str, Any]:
    """Training pairs/s and peak GiB of ``name`` at ``batch_size`` (steps after warm-up)."""
    model, loss_of, info = _model(name, setting, device)
    module = torch.compile(model) if compiled else model
    batch, y = synthetic_batch(info, batch_size, None, device)
    batch = Batch(
        tuple(x.contiguous(memory_format=torch.channels_last) for x in batch.images),
        batch.present,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = loss_of(module, batch, y)
        loss.backward()
        optimizer.step()

    started = time.perf_counter()
    for _ in range(setting.warmup):
        step()
    _sync(device)
    warmup_s = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(setting.steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / GIB if device.type == "cuda" else None
    return {
        "model": name,
        "batch": batch_size,
        "compiled": compiled,
        "pairs_per_s": round(batch_size * setting.steps / seconds, 2),
        "peak_gib": None if peak is None else round(peak, 2),
        "warmup_s": round(warmup_s, 2),
    }


def _fits(name: str, setting: Setting, device: torch.device, batch_size: int) -> bool:
    try:
        train_rate(name, replace(setting, steps=1, warmup=1), device, batch_size, False)
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def largest_batch(name: str, setting: Setting, device: torch.device, budget: Budget) -> int:
    """The largest power-of-two multiple of the base batch that trains without running out
    of memory, up to :data:`MAX_BATCH`."""
    size = setting.batch
    while size * 2 <= MAX_BATCH and not budget.spent() and _fits(name, setting, device, size * 2):
        size *= 2
    return size


MODELS = ("backbones", "late-fusion", "kedr")
COMPILE_NEEDS_S = 90.0  # above a ResNet-50 pair's compile time (results/README.md, "GPU check")


def throughput(setting: Setting, device: torch.device, budget: Budget) -> list[dict[str, Any]]:
    rows = []
    for name in MODELS:
        if budget.spent():
            rows.append({"model": name, "batch": setting.batch, "skipped": SKIP_BUDGET})
            continue
        rows.append(train_rate(name, setting, device, setting.batch, compiled=False))
        if device.type != "cuda":
            rows.append({"model": name, "batch": "largest", "skipped": SKIP_CUDA})
            continue
        size = largest_batch(name, setting, device, budget)
        if size > setting.batch and not budget.spent():
            rows.append({**train_rate(name, setting, device, size, False), "largest": True})
        torch.cuda.empty_cache()
    backbones = {
        r["batch"]: r["pairs_per_s"]
        for r in rows
        if r["model"] == "backbones" and "pairs_per_s" in r
    }
    for row in rows:
        if "pairs_per_s" in row and row["batch"] in backbones:  # seconds per pair, as a ratio
            row["time_vs_backbones"] = round(backbones[row["batch"]] / row["pairs_per_s"], 3)
    return rows


def compiled(setting: Setting, device: torch.device, budget: Budget) -> list[dict[str, Any]]:
    if device.type != "cuda":
        return [{"model": name, "skipped": SKIP_CUDA} for name in MODELS]
    rows = []
    for name in MODELS:
        if budget.spent(COMPILE_NEEDS_S):
            rows.append({"model": name, "skipped": SKIP_BUDGET})
            continue
        try:
            rows.append(train_rate(name, setting, device, setting.batch, compiled=True))
        except Exception as err:  # reported, not hidden: which models do not compile, and why
            rows.append(
                {"model": name, "compiled": True, "error": f"{type(err).__name__}: {err}"[:400]}
            )
        torch.cuda.empty_cache()
    return rows


# 4. input pipeline ---------------------------------------------------------------------------
def input_pipeline(
    setting: Setting, device: torch.device, root: Path, consumed: float | None
) -> dict[str, Any]:
    """Pairs/s of one epoch of cached images to the device, as ``bench.train`` feeds it."""
    ref = DatasetRef.of(
        DATASET, {**dict(setting.dataset_options), "image_size": setting.image_size}
    )
    started = time.perf_counter()
    data = load_dataset(ref, root / "cache")
    load_s = time.perf_counter() - started
    present = torch.ones(len(data.train.labels), data.info.num_modalities, dtype=torch.bool)
    split = MaskedSplit(data.train, present)
    if device.type == "cuda":
        split = split.pinned()
    epochs = []
    for _ in range(3):
        order = torch.randperm(len(split))
        _sync(device)
        started = time.perf_counter()
        for start in range(0, len(split), setting.batch):
            make_batch(split, order[start : start + setting.batch], device)
        _sync(device)
        epochs.append(time.perf_counter() - started)
    rate = len(split) / statistics.median(epochs)
    return {
        "image_size": setting.image_size,
        "pairs": len(split),
        "load_or_generate_s": round(load_s, 2),
        "pairs_per_s": round(rate, 1),
        "kedr_consumes_pairs_per_s": consumed,
        "loader_over_model": None if not consumed else round(rate / consumed, 2),
    }


# 5. frozen features --------------------------------------------------------------------------
def frozen_grid(setting: Setting, device: torch.device, root: Path) -> dict[str, Any]:
    from bench.cli import main

    options = {**dict(setting.dataset_options), "image_size": setting.image_size}
    ref = DatasetRef.of(DATASET, options)
    results = root  # bench run's cache is <results-dir>/cache: the features extracted here
    data = load_dataset(ref, root / "cache")
    pairs = sum(len(s.labels) for s in (data.train, data.val, data.test))
    _sync(device)
    started = time.perf_counter()
    frozen_features(data, ref, setting.backbone, None, device, root / "cache")
    _sync(device)
    extract_s = time.perf_counter() - started
    args = ["run", "--methods", setting.grid_methods, "--rates", setting.grid_rates]
    args += ["--seeds", "0", "--epochs", str(setting.grid_epochs), "--device", device.type]
    args += ["--results-dir", str(results), "--experiment", "frozen"]
    if device.type == "cuda":  # small cells on features: several share the GPU
        args += ["--executor", "process", "--cells-per-gpu", str(GRID_CELLS_PER_GPU)]
    args += ["--set", f"frozen_backbone.name={setting.backbone}"]
    args += [f"--set=dataset_options.{DATASET}.{k}={v}" for k, v in options.items()]
    _release(device)
    started = time.perf_counter()
    status = _quiet(lambda: main(args))
    grid_s = time.perf_counter() - started
    cells = Tracker(results).runs(Tracker(results).experiment_id("frozen"))
    return {
        "backbone": setting.backbone,
        "extract_pairs_per_s": round(pairs / extract_s, 1),
        "grid": " ".join(args[1:9]),
        "grid_cells": len(cells),
        "grid_finished": sum(r.status == "FINISHED" for r in cells),
        "grid_exit": status,
        "grid_wall_s": round(grid_s, 1),
    }


# 6. concurrency ------------------------------------------------------------------------------
def concurrency(
    setting: Setting, device: torch.device, root: Path, budget: Budget
) -> list[dict[str, Any]]:
    if device.type != "cuda":
        return [{"cells_per_gpu": k, "skipped": SKIP_CUDA} for k in setting.concurrency]
    options = {**dict(setting.dataset_options), "image_size": setting.correctness_size}
    flags = {
        "methods": ["late-fusion", "moddrop", "unimodal:m1", "unimodal:m2"],
        "rates": [0.2, 0.6],
        "seeds": list(range(setting.concurrency_seeds)),
        "train": {"epochs": setting.concurrency_epochs, "device": "cuda"},
        "dataset_options": {DATASET: options},
    }
    cells = expand(resolve(None, flags, []))
    DatasetCache(root / "cache").get(cells[0].dataset)
    _release(device)
    rows = []
    for k in setting.concurrency:
        if budget.spent():
            rows.append({"cells_per_gpu": k, "skipped": SKIP_BUDGET})
            continue
        tracker = Tracker(root / f"concurrency-{k}")
        experiment_id = tracker.experiment_id("concurrency")
        executor = ExecutorOptions("process", cells_per_gpu=k)
        started = time.perf_counter()
        ran = _quiet(
            lambda t=tracker, e=experiment_id, x=executor: list(
                run_cells(cells, t, e, root / "cache", x)
            )
        )
        seconds = time.perf_counter() - started
        rows.append(
            {
                "cells_per_gpu": k,
                "cells": len(cells),
                "finished": sum(r.status == "FINISHED" for r in ran),
                "wall_s": round(seconds, 1),
                "cells_per_min": round(60 * len(cells) / seconds, 2),
            }
        )
    return rows


# the run -------------------------------------------------------------------------------------
SECTIONS = (
    "correctness",
    "throughput",
    "compile",
    "input_pipeline",
    "frozen_features",
    "concurrency",
)


def run(setting: Setting, device: torch.device, budget: Budget, sections: set[int]) -> dict:
    out: dict[str, Any] = {
        "device": str(device),
        "device_name": device_name(str(device)),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "setting": {k: v for k, v in setting.__dict__.items() if k != "dataset_options"},
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("correctness", lambda: correctness(setting, device, root)),
            ("throughput", lambda: throughput(setting, device, budget)),
            ("compile", lambda: compiled(setting, device, budget)),
            ("input_pipeline", lambda: input_pipeline(setting, device, root, _kedr_rate(out))),
            ("frozen_features", lambda: frozen_grid(setting, device, root)),
            ("concurrency", lambda: concurrency(setting, device, root, budget)),
        ]
        numbered = list(enumerate(steps, start=1))
        for number, (name, step) in [*numbered[:2], *numbered[3:], numbered[2]]:
            if number not in sections:
                out[name] = "skipped: not in --sections"
            elif budget.spent():
                out[name] = SKIP_BUDGET
            else:
                section_started = time.perf_counter()
                try:
                    out[name] = step()
                except Exception as err:  # one GPU session: report it, go on with the rest
                    out[name] = {"error": f"{type(err).__name__}: {err}"[:800]}
                out.setdefault("section_s", {})[name] = round(
                    time.perf_counter() - section_started, 1
                )
    out["total_s"] = round(time.perf_counter() - started, 1)
    return out


def _kedr_rate(out: dict) -> float | None:
    rows = out.get("throughput")
    if not isinstance(rows, list):
        return None
    found = [
        r for r in rows if r.get("model") == "kedr" and not r.get("largest") and "pairs_per_s" in r
    ]
    return found[0]["pairs_per_s"] if found else None


def table(out: dict) -> str:
    """The JSON object as a readable table, one line per measurement."""
    lines = [f"{out['device_name']} ({out['device']}), torch {out['torch']}, CUDA {out['cuda']}"]
    for name in SECTIONS:
        value = out.get(name)
        lines.append(f"{name}:")
        if isinstance(value, str):
            lines.append(f"  {value}")
        elif isinstance(value, list):
            lines += [f"  {_row(row)}" for row in value]
        elif "error" in value:
            lines.append(f"  error: {value['error']}")
        elif name == "correctness":
            lines.append(f"  amp {value['amp_dtype']}, GradScaler {value['grad_scaler']}")
            for method, found in value["methods"].items():
                lines.append(f"  {method:<12} {_row(found)}")
        else:
            lines.append(f"  {_row(value)}")
    lines.append(f"total {out['total_s']} s")
    return "\n".join(lines)


def _row(row: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in row.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="a small CPU smoke run")
    parser.add_argument("--device", default="auto", help="auto | cuda | cpu")
    parser.add_argument("--budget-s", dest="budget_s", type=float, default=420.0)
    parser.add_argument("--sections", default="1,2,3,4,5,6", help="which of the six to run")
    parser.add_argument("--out", help="also write the JSON object to this file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    sections = {int(s) for s in args.sections.split(",") if s.strip()}
    out = run(TINY if args.tiny else FULL, device, Budget(args.budget_s), sections)
    text = json.dumps(out, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(table(out), file=sys.stderr)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
