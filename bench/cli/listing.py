"""``bench list``: every method (with its variants), dataset card, metric and encoder."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    lister = sub.add_parser("list", help="list methods, datasets, metrics and encoders")
    lister.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import all_cards
    from bench.encoders import IMAGE_ENCODERS, TEXT_ENCODERS
    from bench.interface import METHODS
    from bench.metrics import metric_specs

    print("methods:")
    for name in METHODS.names(with_variants=True):
        base, _, variant = name.partition(":")
        entry = METHODS.entry(base)
        settings = ", ".join(f"{k}={v}" for k, v in entry.variants.get(variant, {}).items())
        if variant and not entry.variants_only:  # an ablation: say only what it changes
            print(f"  {name:<24} {base} with {settings}")
        else:
            detail = f" ({settings})" if settings else ""
            print(f"  {name:<24} {entry.obj.summary}{detail}  [{entry.obj.citation}]")
    print("datasets:")
    for name, card in sorted(all_cards().items()):
        print(f"  {name:<24} {card.summary}")
    print("metrics:")
    for spec in metric_specs():
        better = "higher" if spec.higher_is_better else "lower"
        print(f"  {spec.key:<24} {spec.describe()} ({better} is better)")
    images = [name for name in IMAGE_ENCODERS.names() if name != "timm"]
    print(f"image encoders: {', '.join(images)}, or any timm model name (e.g. resnet50)")
    texts = [f"{name}:<id or folder>" if name == "hf" else name for name in TEXT_ENCODERS.names()]
    print(f"text encoders: auto, {', '.join(texts)}")
    return 0
