"""``bench priors``: show a dataset's semantic prior texts, or generate new ones with an LLM."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    pri = sub.add_parser("priors", help="show or generate a dataset's semantic priors")
    pri_sub = pri.add_subparsers(dest="action", required=True)
    show = pri_sub.add_parser("show", help="print the prior texts of a dataset")
    show.add_argument("dataset")
    gen = pri_sub.add_parser("generate", help="write new priors with an OpenAI-compatible API")
    gen.add_argument("dataset")
    gen.add_argument("--model", required=True)
    gen.add_argument("--out", help="output file (default: ./<dataset>.priors.<model hash>.yaml)")
    pri.set_defaults(func=cmd_priors)


def cmd_priors(args: argparse.Namespace) -> int:
    from bench import priors

    if args.action == "show":
        print(priors.show(args.dataset))
    else:
        out = priors.generate(args.dataset, args.model, Path(args.out) if args.out else None)
        print(f"wrote {out}")
    return 0
