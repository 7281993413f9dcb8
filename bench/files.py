"""Reading the YAML files a user hands us (config, hparams, priors, cards): a file that is
missing, unreadable or malformed is one :class:`~bench.errors.ConfigError` line that names
the file and, for malformed YAML, the line and column of the problem (PyYAML's marks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.errors import ConfigError


def yaml_problem(err: yaml.YAMLError) -> str:
    """``'line 3, column 7: mapping values are not allowed here'`` from a PyYAML error (the
    position is 1-based; a PyYAML error without a mark gives its first line alone)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None)
    reason = problem or (str(err).splitlines() or [type(err).__name__])[0]
    if mark is None:
        return reason
    return f"line {mark.line + 1}, column {mark.column + 1}: {reason}"


def parse_yaml(text: str, where: str) -> Any:
    """``text`` as YAML (``yaml.safe_load``); ``where`` names it in the error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where} is not valid YAML ({yaml_problem(err)}): fix it") from err
    except RecursionError as err:  # PyYAML recurses once per nesting level
        raise ConfigError(f"{where} nests too deeply to be read: flatten it") from err


def read_yaml(path: str | Path, what: str) -> Any:
    """The YAML document in ``path`` (None for an empty file); ``what`` says which kind of
    file it is (``'config file'``), for the one-line error."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder: give the path of a YAML file")
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} does not exist: check the path")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {err.start}): save it as UTF-8 YAML"
        ) from err
    except OSError as err:
        raise ConfigError(f"{what} {path} cannot be read ({err.strerror}): check it") from err
    return parse_yaml(text, f"{what} {path}")


def read_mapping(path: str | Path, what: str) -> dict[Any, Any]:
    """:func:`read_yaml` for a file that must hold a mapping (an empty file is ``{}``)."""
    raw = read_yaml(path, what)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{what} {Path(path).expanduser()} holds a {type(raw).__name__}, not a mapping of "
            "keys to values: write it as key: value lines"
        )
    return raw
