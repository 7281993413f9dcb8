"""``bench report``: tables, statistics, figures and a PDF from an experiment's finished runs."""

from __future__ import annotations

import argparse
import os

from bench.cli.arguments import add_tracking_uri

DEFAULT_FORMATS = "md,tex,csv,pdf"  # bench.report.build.FORMATS, kept here for a fast --help


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    report = sub.add_parser(
        "report",
        help="tables, statistics, figures and a PDF from an experiment's finished runs",
        description=(
            "Regenerate the report of an experiment from the tracking store (metrics and "
            "saved predictions of its FINISHED cells); nothing is retrained."
        ),
    )
    report.add_argument("--experiment", required=True)
    report.add_argument("--results-dir", dest="results_dir", default="results")
    add_tracking_uri(report)
    report.add_argument("--out", help="output folder (default reports/<experiment>)")
    report.add_argument(
        "--formats",
        default=DEFAULT_FORMATS,
        help=f"any of {DEFAULT_FORMATS} (default all); PNG/SVG figures are always written",
    )
    report.add_argument(
        "--reference",
        help="method the statistics compare against (default kedr if it ran, else the "
        "method with the best mean macro-F1)",
    )
    report.set_defaults(func=cmd_report)
    return report


def cmd_report(args: argparse.Namespace) -> int:
    from bench.report.build import build_report

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    written = build_report(
        args.experiment,
        args.results_dir,
        args.out,
        formats,
        reference_method=args.reference,
        tracking_uri=args.tracking_uri,
    )
    for path in written:
        if path.suffix in (".md", ".pdf"):
            print(path)
    print(f"{len(written)} files under {os.path.commonpath(written)}")
    return 0
