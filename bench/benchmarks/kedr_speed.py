"""KEDR's head, our implementation vs a naive one of the same model, side by side.

Naive = the head as a straightforward listing writes it: 30 unrolled fixed-point steps
kept in the autograd graph, and unbalanced Sinkhorn in the primal scaling form, unrolled
in autograd, with the plan built as diag(u) K diag(v) from dense diagonal matrices. (The
released KEDR code, lijing-coder/KEDR@6368bb8, does neither: it solves its DEQ by Anderson
with an implicit backward hook and its OT with POT.) Ours = Anderson forward + implicit
backward (methods/_blocks/deq.py) and log-domain Sinkhorn with broadcasting
(methods/_blocks/ot.py). Same weights, same batch, same losses.

    python -m bench.benchmarks.kedr_speed [--feature-dim 2048] [--batch-size 32] [--steps 5]

Prints both profiles and the ratios (one run, same process, measured alternately). The
profiles' ``peak_mem_mb`` covers a whole optimiser step, whose peak on CPU is AdamW's update
with every gradient alive (the same for both); the activation peak, of forward + backward
into gradients already allocated, is where the two differ, and is printed too.
"""

from __future__ import annotations

import argparse
import json

import torch

from bench.data import dataset_info, get_card
from bench.interface import Batch, Method, build_method
from bench.profile import peak_memory_mb, profile_method, synthetic_batch
from methods._blocks.deq import unrolled_solve
from methods._blocks.ot import max_normalised, pairwise_sq_euclidean, unit_vectors
from methods.kedr import KEDR


def dense_diag_unbalanced_sinkhorn(
    a: torch.Tensor,
    b: torch.Tensor,
    cost: torch.Tensor,
    eps: float,
    reg_m: float,
    max_iter: int = 1000,
    tol: float = 1e-6,
) -> torch.Tensor:
    """Primal-scaling unbalanced Sinkhorn (Chizat et al. 2018): the plan diag(u) K diag(v)."""
    kernel = torch.exp(-cost / eps)
    fi = reg_m / (reg_m + eps)
    u, v = torch.ones_like(a), torch.ones_like(b)
    for _ in range(max_iter):
        previous = u
        u = (a / (kernel @ v)) ** fi
        v = (b / (kernel.T @ u)) ** fi
        if (u - previous).abs().max() < tol:
            break
    return torch.diag(u) @ kernel @ torch.diag(v)


class NaiveKEDR(KEDR):
    """The same model, solved the slow way."""

    def forward(self, batch):
        fusion = self.fusion
        original = fusion.forward

        def unrolled(h, present):
            z0 = h.new_zeros(h.shape[0], fusion.branches + 1, fusion.dim)
            return unrolled_solve(lambda z: fusion.layer(z, h, present), z0, steps=30)[:, -1]

        fusion.forward = unrolled
        try:
            return super().forward(batch)
        finally:
            fusion.forward = original

    def _alignment_loss(self, shared, y):
        anchors = self.anchors()[y]
        raw = pairwise_sq_euclidean(
            unit_vectors(shared, "features"), unit_vectors(anchors, "features")
        )
        n = len(y)
        a = torch.full((n,), 1.0 / n, device=y.device)
        plan = dense_diag_unbalanced_sinkhorn(
            a, a.clone(), max_normalised(raw), self.ot_eps, self.ot_reg_m
        )
        return (plan * raw).sum()


def activation_peak_mb(
    method: Method, batch: Batch, y: torch.Tensor, device: torch.device
) -> float:
    """Peak memory of forward + loss + backward above gradients already allocated."""
    method.train()
    method.zero_grad(set_to_none=False)

    def forward_backward() -> None:
        loss, _ = method.loss(method(batch), batch, y)
        loss.backward()

    return peak_memory_mb(forward_backward, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feature-dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    card = get_card("synthetic-retina")
    info = dataset_info(card, card.options)
    hparams = {"backbone": "features", "feature_dim": args.feature_dim}
    torch.manual_seed(0)
    ours = build_method("kedr", info, hparams)
    naive = NaiveKEDR(info, **hparams)
    naive.load_state_dict(ours.state_dict())
    batch, y = synthetic_batch(info, args.batch_size, args.feature_dim, device)

    results = {}
    for name, method in (("naive", naive), ("ours", ours)):
        results[name] = profile_method(
            method, f"kedr ({name})", batch, y, device, steps=args.steps
        ).to_dict()
        results[name]["activation_peak_mb"] = activation_peak_mb(method, batch, y, device)
        print(json.dumps(results[name], indent=1))
    speedup = results["naive"]["train_step_s"] / results["ours"]["train_step_s"]
    memory = results["ours"]["peak_mem_mb"] / max(results["naive"]["peak_mem_mb"], 1e-9)
    activations = results["ours"]["activation_peak_mb"] / results["naive"]["activation_peak_mb"]
    print(f"train step speed-up (naive / ours): {speedup:.2f}x")
    extra = (results["ours"]["peak_mem_mb"] - results["naive"]["peak_mem_mb"]) * 2**20
    print(f"peak memory ratio, whole step (ours / naive): {memory:.4f} ({extra:+.0f} bytes)")
    print(f"peak memory ratio, forward + backward (ours / naive): {activations:.2f}")


if __name__ == "__main__":
    main()
