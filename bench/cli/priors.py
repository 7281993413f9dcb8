"""``bench priors``: show a dataset's semantic prior texts, generate new ones with an LLM, or
import the released KEDR code's texts from a local clone."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    pri = sub.add_parser("priors", help="show, generate or import a dataset's semantic priors")
    pri_sub = pri.add_subparsers(dest="action", required=True)
    show = pri_sub.add_parser("show", help="print the prior texts of a dataset")
    show.add_argument("dataset")
    gen = pri_sub.add_parser("generate", help="write new priors with an OpenAI-compatible API")
    gen.add_argument("dataset")
    gen.add_argument("--model", required=True)
    gen.add_argument("--out", help="output file (default: ./<dataset>.priors.<model hash>.yaml)")
    imp = pri_sub.add_parser(
        "import-released",
        help="write priors files from the texts of a local clone of lijing-coder/KEDR",
    )
    imp.add_argument("path", help="the clone (or its model/KEDR.py); parsed, never executed")
    imp.add_argument("--out", help="folder for <dataset>.priors.released.yaml (default: .)")
    imp.add_argument("--commit", help="the clone's commit, recorded (default: read with git)")
    pri.set_defaults(func=cmd_priors)


def cmd_priors(args: argparse.Namespace) -> int:
    from bench import priors

    if args.action == "show":
        print(priors.show(args.dataset))
    elif args.action == "import-released":
        out = Path(args.out) if args.out else None
        for path in priors.import_released(Path(args.path), out, args.commit):
            print(f"wrote {path} (use --set hparams.kedr.priors_file={path})")
    else:
        out = priors.generate(args.dataset, args.model, Path(args.out) if args.out else None)
        print(f"wrote {out}")
    return 0
