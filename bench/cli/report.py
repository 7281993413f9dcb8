"""``bench report``: tables, statistics, figures and a PDF from an experiment's finished runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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
    """Exit 2 when there is nothing to report (no store, experiment or FINISHED cell); else
    write the report, and exit 1 when some cells of the experiment are not FINISHED."""
    from bench.preflight import check_output_folder
    from bench.report.build import build_report
    from bench.report.collect import collect

    formats = tuple(f.strip() for f in args.formats.split(",") if f.strip())
    out = check_output_folder(args.out or Path("reports") / args.experiment, "--out")
    written = build_report(
        args.experiment,
        args.results_dir,
        out,
        formats,
        reference_method=args.reference,
        tracking_uri=args.tracking_uri,
    )
    not_finished = collect(args.experiment, args.results_dir, args.tracking_uri).not_finished
    for path in written:
        if path.suffix in (".md", ".pdf"):
            print(path)
    print(f"{len(written)} files under {os.path.commonpath(written)}")
    if not not_finished:
        return 0
    counts = ", ".join(f"{n} {status}" for status, n in not_finished.items())
    print(
        f"{sum(not_finished.values())} cells of {args.experiment!r} not finished ({counts}): "
        f"the report leaves them out; finish them with bench run --experiment {args.experiment}",
        file=sys.stderr,
    )
    return 1
