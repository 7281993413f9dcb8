"""``bench data verify``: check a dataset copy on disk against its card."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    data = sub.add_parser("data", help="check a dataset copy on disk")
    commands = data.add_subparsers(dest="data_command", required=True)
    check = commands.add_parser(
        "verify",
        help="check a copy against its card: files present and readable, pairs, labels, splits",
    )
    check.add_argument("name", help="dataset card name, e.g. derm7pt")
    check.add_argument(
        "--root",
        help="the copy on disk (for csv: the manifest file); default: $BENCH_DATA_<NAME>",
    )
    check.add_argument(
        "--option",
        action="append",
        metavar="KEY=VALUE",
        help="a dataset option, as in dataset_options (e.g. pairs=all; repeatable)",
    )
    check.add_argument(
        "--quick", action="store_true", help="skip decoding every file (faster, weaker)"
    )
    check.set_defaults(func=cmd_data_verify)
    return data


def cmd_data_verify(args: argparse.Namespace) -> int:
    """0 when the copy is usable, 1 when it is not (2, via BenchError, for a usage error)."""
    from bench.config import parse_assignments
    from bench.data.verify import render, verify

    report = verify(
        args.name,
        args.root,
        parse_assignments(args.option or [], "--option", "pairs=all"),
        decode=not args.quick,
    )
    print(render(report))
    return 0 if report.usable else 1
