"""``bench claims``: the published claims tested against an experiment's finished runs."""

from __future__ import annotations

import argparse

from bench.cli.arguments import add_tracking_uri

FORMATS = ("md", "csv", "json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    claims = sub.add_parser(
        "claims",
        help="test the paper's claims on an experiment: paired difference, CI, power, verdict",
        description=(
            "For every published claim (results/reference/claims.csv) whose cells ran: the "
            "paired difference over seeds with its 95 % CI, the paired t-test and Wilcoxon "
            "p, the minimum detectable effect at 80 % power and a verdict (supported, "
            "contradicted, inconclusive with the seeds needed); claims not run get the "
            "bench run command that runs them."
        ),
    )
    claims.add_argument("--experiment", required=True)
    claims.add_argument("--results-dir", dest="results_dir", default="results")
    add_tracking_uri(claims)
    claims.add_argument(
        "--dataset",
        help="test every claim on this dataset instead of the paper's (e.g. synthetic-retina): "
        "the claims' shapes, labelled re-targeted; default: each claim on its own dataset, and "
        "re-targeted to every dataset of the experiment that no claim is about",
    )
    claims.add_argument("--claims", metavar="FILE", help="a claims CSV (default: the shipped one)")
    claims.add_argument("--format", choices=FORMATS, default="md")
    claims.add_argument(
        "--variance",
        action="store_true",
        help="also show where the variance comes from: the SD over seeds, the test-set "
        "bootstrap SD and, for a grid with seed axes, each axis's share",
    )
    claims.add_argument(
        "--metric", default="f1_macro", help="the metric of --variance (default f1_macro)"
    )
    claims.set_defaults(func=cmd_claims)


def cmd_claims(args: argparse.Namespace) -> int:
    from bench.report.claims import (
        claim_sections,
        claims_frame,
        evaluate_claims,
        load_claims,
        planner_for,
    )
    from bench.report.collect import collect
    from bench.report.variance import seed_variance, variance_table
    from bench.results import render

    runs = collect(args.experiment, args.results_dir, args.tracking_uri)
    claims = load_claims(args.claims)
    planner = planner_for(runs, args.results_dir)
    results = evaluate_claims(runs.frame, claims, planner, args.dataset)
    variance = None
    if args.variance:
        variance = seed_variance(runs.frame, args.metric, runs.predictions)
    if args.format != "md":
        print(render(claims_frame(results), args.format))
        if variance is not None:
            print(render(variance, args.format))
        return 0
    blocks = [
        section if isinstance(section, str) else markdown_table(section)
        for section in claim_sections(results, runs.frame["dataset"])
    ]
    if variance is not None:
        for dataset in sorted(variance["dataset"].unique()):
            blocks.append(markdown_table(variance_table(variance, dataset)))
    print("\n\n".join(blocks))
    return 0


def markdown_table(table) -> str:
    """A report table as ``bench claims`` prints it: bold title, Markdown table, its note."""
    from bench.report.render import to_markdown

    parts = [f"**{table.title}**", to_markdown(table)]
    return "\n\n".join(parts + ([table.note] if table.note else []))
