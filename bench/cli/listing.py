"""``bench list``: every method (with its variants) and every dataset card."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    lister = sub.add_parser("list", help="list methods and datasets")
    lister.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from bench.data import all_cards
    from bench.interface import METHODS

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
    return 0
