"""``bench results``: one row per cell of an experiment, as CSV, JSON or Markdown."""

from __future__ import annotations

import argparse

from bench.cli.arguments import add_tracking_uri


def add_parser(sub: argparse._SubParsersAction) -> None:
    results = sub.add_parser("results", help="print one row per cell of an experiment")
    results.add_argument("--experiment", required=True)
    results.add_argument("--results-dir", dest="results_dir", default="results")
    add_tracking_uri(results)
    results.add_argument("--format", choices=("csv", "json", "md"), default="md")
    results.set_defaults(func=cmd_results)


def cmd_results(args: argparse.Namespace) -> int:
    from bench.results import load, render

    print(render(load(args.experiment, args.results_dir, args.tracking_uri), args.format))
    return 0
