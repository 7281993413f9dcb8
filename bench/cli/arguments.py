"""Parsers of the comma-separated and ``NAME=PATH`` flag values the subcommands share."""

from __future__ import annotations

from bench.errors import ConfigError


def split_list(text: str | None) -> list[str] | None:
    """``'a, b,'`` -> ``['a', 'b']``; None stays None (the flag was not given)."""
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def numbers(text: str | None, cast: type, what: str, example: str) -> list | None:
    """Comma-separated numbers of type ``cast``; a one-line error names the flag otherwise."""
    items = split_list(text)
    if items is None:
        return None
    try:
        return [cast(item) for item in items]
    except ValueError as err:
        raise ConfigError(
            f"{what} must be {cast.__name__}s separated by commas, like {example}: got {text!r}"
        ) from err


def data_root_sets(items: list[str] | None) -> list[str]:
    """``--data-root derm7pt=PATH`` -> ``dataset_options.derm7pt.root=PATH`` (--set wins)."""
    sets = []
    for item in items or []:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise ConfigError(
                f"--data-root needs NAME=PATH, like derm7pt=/data/release_v0: got {item!r}"
            )
        sets.append(f"dataset_options.{name.strip()}.root={path.strip()}")
    return sets


def add_tracking_uri(parser) -> None:
    """The ``--tracking-uri`` flag of every subcommand that reads or writes runs."""
    parser.add_argument(
        "--tracking-uri",
        dest="tracking_uri",
        metavar="URI",
        help="MLflow store: sqlite:///PATH, http(s)://HOST:PORT (a tracking server) or a "
        "database URL (default $BENCH_TRACKING_URI, else sqlite:///<results-dir>/mlflow.db)",
    )
