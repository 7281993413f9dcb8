"""Cost of a method: parameters and FLOPs of its training and inference graphs, latency,
seconds per optimiser step and peak memory.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions,
2 FLOPs per multiply-add; elementwise ops are not counted). The training graph is one
forward + loss + backward; the inference graph is one eval-mode forward, which by the
interface excludes label-only parts (KEDR's text projection and auxiliary heads).

Peak memory of one training step, above the level before it: on CUDA from
``max_memory_allocated``; on CPU from the allocation trace of ``torch.profiler``
(``profile_memory=True``), the running sum of tensor allocations and frees. The process's
resident set would hide it: freed memory stays in the allocator's arenas.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from bench.interface import Batch, DatasetInfo, Method, build_method


@dataclass(frozen=True)
class Profile:
    method: str
    device: str
    batch_size: int
    input: str  # "features:<d>" or "images:<size>"
    params_train: int
    params_infer: int
    flops_train: float
    flops_infer: float
    train_step_s: float  # median seconds per optimiser step
    infer_latency_s: float  # median seconds per eval forward of one batch
    peak_mem_mb: float

    def to_dict(self) -> dict:
        return asdict(self)


def count_parameters(modules: list[torch.nn.Module]) -> int:
    seen: dict[int, int] = {}
    for module in modules:
        for p in module.parameters():
            seen[id(p)] = p.numel()
    return sum(seen.values())


def synthetic_batch(
    info: DatasetInfo,
    batch_size: int,
    feature_dim: int | None,
    device: torch.device,
    seed: int = 0,
) -> tuple[Batch, torch.Tensor]:
    """A random complete batch (images, or features when ``feature_dim`` is set) + labels."""
    g = torch.Generator().manual_seed(seed)
    shapes = [
        (batch_size, feature_dim)
        if feature_dim
        else (batch_size, c, info.image_size, info.image_size)
        for c in info.channels
    ]
    images = tuple(torch.randn(shape, generator=g).to(device) for shape in shapes)
    present = torch.ones(batch_size, info.num_modalities, dtype=torch.bool, device=device)
    y = torch.randint(0, info.num_classes, (batch_size,), generator=g).to(device)
    return Batch(images, present), y


def _flops(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def peak_memory_mb(fn, device: torch.device) -> float:
    """Peak tensor memory (MiB) that ``fn()`` allocates above the level before it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - start) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    level = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        level += event.nbytes()
        peak = max(peak, level)
    return peak / 2**20


def profile_method(
    method: Method,
    name: str,
    batch: Batch,
    y: torch.Tensor,
    device: torch.device,
    steps: int = 10,
    warmup: int = 2,
) -> Profile:
    """Measure ``method`` on one fixed batch: timed steps first, then FLOP counts."""
    method.to(device)
    optimizer = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-4)

    def train_step() -> None:
        method.train()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = method.loss(method(batch), batch, y)
        loss.backward()
        optimizer.step()

    def infer() -> None:
        method.eval()
        with torch.no_grad():
            method(batch)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(warmup):
        train_step()
    step_times = [timed(train_step) for _ in range(steps)]
    infer_times = [timed(infer) for _ in range(steps)]

    def train_graph() -> None:
        method.train()
        loss, _ = method.loss(method(batch), batch, y)
        loss.backward()

    size = batch.images[0].shape
    return Profile(
        method=name,
        device=str(device),
        batch_size=int(size[0]),
        input=f"features:{size[1]}" if len(size) == 2 else f"images:{size[-1]}",
        params_train=count_parameters([method]),
        params_infer=count_parameters(method.inference_modules()),
        flops_train=_flops(train_graph),
        flops_infer=_flops(infer),
        train_step_s=statistics.median(step_times),
        infer_latency_s=statistics.median(infer_times),
        peak_mem_mb=peak_memory_mb(train_step, device),
    )


def profile(
    name: str,
    info: DatasetInfo,
    hparams: dict,
    batch_size: int,
    device: torch.device,
    feature_dim: int | None = None,
    steps: int = 10,
) -> Profile:
    """Build method ``name`` (on precomputed features if ``feature_dim``) and profile it."""
    if feature_dim:
        hparams = {**hparams, "backbone": "features", "feature_dim": feature_dim}
    torch.manual_seed(0)
    method = build_method(name, info, hparams)
    batch, y = synthetic_batch(info, batch_size, feature_dim, device)
    return profile_method(method, name, batch, y, device, steps=steps)
