"""The ``bench`` command. One module per subcommand, each with ``add_parser(subparsers)``
and its ``cmd_*`` function; heavy imports stay inside the commands so that ``--help`` is fast.

User errors (:class:`bench.errors.BenchError`) are printed on one line and exit with 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module

from bench.errors import BenchError

EXIT_USAGE = 2
SUBCOMMANDS = (
    "run",
    "results",
    "report",
    "claims",
    "tune",
    "profile",
    "listing",
    "data",
    "priors",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="kedr-bench: missing-modality medical imaging benchmark"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except BenchError as err:
        print(f"bench: error: {' '.join(str(err).split())}", file=sys.stderr)  # one line
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("bench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (bench list | head)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
