"""``bench profile``: parameters, FLOPs, step time and peak memory of one method."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.cli.arguments import add_tracking_uri


def add_parser(sub: argparse._SubParsersAction) -> None:
    prof = sub.add_parser("profile", help="parameters, FLOPs, step time and memory of a method")
    prof.add_argument("--method", required=True)
    prof.add_argument("--dataset", default="synthetic-retina", help="for classes and channels")
    prof.add_argument(
        "--backbone",
        help="a registered image encoder (bench list) or a timm model name, e.g. resnet50",
    )
    prof.add_argument("--image-size", dest="image_size", type=int)
    prof.add_argument(
        "--features-only",
        dest="features_only",
        action="store_true",
        help="time the method's head on precomputed features (no backbones)",
    )
    prof.add_argument("--feature-dim", dest="feature_dim", type=int, default=2048)
    prof.add_argument("--batch-size", dest="batch_size", type=int, default=32)
    prof.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    prof.add_argument("--device", default="auto")
    prof.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="a hyper-parameter of the method (repeatable)",
    )
    prof.add_argument("--json", action="store_true")
    prof.add_argument(
        "--save",
        action="store_true",
        help="also write <results-dir>/profile/<method>.json for reports, and record the "
        "profile as a run of experiment 'profile' in the tracking store",
    )
    add_tracking_uri(prof)
    prof.add_argument("--results-dir", dest="results_dir", default="results")
    prof.set_defaults(func=cmd_profile)


def cmd_profile(args: argparse.Namespace) -> int:
    from bench.config import parse_assignments
    from bench.data import dataset_info, get_card
    from bench.profile import profile
    from bench.runtime import resolve_device

    card = get_card(args.dataset)
    options = card.resolve_options({"image_size": args.image_size} if args.image_size else {})
    hparams = parse_assignments(args.set or [], "--set", "ot_eps=0.05")
    if args.backbone:
        hparams["backbone"] = args.backbone
    feature_dim = args.feature_dim if args.features_only else None
    result = profile(
        args.method,
        dataset_info(card, options),
        hparams,
        args.batch_size,
        resolve_device(args.device),
        feature_dim=feature_dim,
        steps=args.steps,
    )
    if args.save:
        folder = Path(args.results_dir) / "profile"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{args.method.replace(':', '_')}.json").write_text(
            json.dumps(result.to_dict(), indent=1)
        )
        record_profile(result.to_dict(), args.results_dir, args.tracking_uri)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    rows = [
        ("parameters (training graph)", f"{result.params_train / 1e6:.3f} M"),
        ("parameters (inference graph)", f"{result.params_infer / 1e6:.3f} M"),
        ("FLOPs (training step, fwd+bwd)", f"{result.flops_train / 1e9:.3f} G"),
        ("FLOPs (inference forward)", f"{result.flops_infer / 1e9:.3f} G"),
        ("train step (median)", f"{1000 * result.train_step_s:.2f} ms"),
        ("inference latency (median)", f"{1000 * result.infer_latency_s:.2f} ms"),
        ("peak memory (train steps)", f"{result.peak_mem_mb:.1f} MiB"),
    ]
    print(f"{result.method} on {result.device}, batch {result.batch_size}, {result.input}")
    for label, value in rows:
        print(f"  {label:<32} {value}")
    return 0


def record_profile(values: dict, results_dir: str, tracking_uri: str | None) -> str:
    """The profile as one FINISHED run of experiment ``profile`` (numbers as metrics, the
    rest as params); its run id."""
    from mlflow.entities import Metric, Param

    from bench.tracking import Tracker

    tracker = Tracker(Path(results_dir), tracking_uri)
    tags = {"mlflow.runName": f"profile {values['method']}", "profile_method": values["method"]}
    run_id = tracker.client.create_run(tracker.experiment_id("profile"), tags=tags).info.run_id
    numbers = {k: v for k, v in values.items() if isinstance(v, int | float)}
    tracker.client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), 0, 0) for k, v in numbers.items()],
        params=[Param(k, str(v)) for k, v in values.items() if k not in numbers],
    )
    tracker.client.set_terminated(run_id, "FINISHED")
    return run_id
