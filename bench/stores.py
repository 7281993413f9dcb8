"""Where runs and studies are stored: the tracking URI (MLflow) and the Optuna storage, with
their kinds and their redacted forms for logs and messages.

Tracking URIs (``--tracking-uri``, else ``$BENCH_TRACKING_URI``, else the default):

- ``sqlite:///<results-dir>/mlflow.db`` (the default): one machine, or one shared disk
  that a single machine writes;
- ``http(s)://host:port``: an MLflow tracking server (``mlflow server``, with
  ``--serve-artifacts`` so that artifacts go through it): what a cluster of nodes that share
  no disk needs;
- a database URL (``postgresql://``, ``mysql://``, ``mssql://``, optionally with a
  SQLAlchemy driver, ``postgresql+psycopg2://``): MLflow's SQL store without a server;
  artifacts then go under ``<results-dir>/artifacts``, which every writer must see.

Credentials come from the environment only, by MLflow's own variables
(``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN`` for a
server; the database client's, e.g. ``PGPASSWORD``, for a database). A password written
into a URL still works, but every message and tag shows the URL through :func:`redacted`.

Optuna storages (``bench tune --storage``): a database URL for Optuna's ``RDBStorage``
through SQLAlchemy (``sqlite:///...`` by default, ``postgresql://``, ``mysql+pymysql://``),
or ``journal:PATH`` for Optuna's ``JournalStorage`` on a file that every process sees (a
shared filesystem, no database server).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import SplitResult, urlsplit, urlunsplit

from bench.errors import ConfigError

TRACKING_ENV = "BENCH_TRACKING_URI"
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql")
JOURNAL_PREFIX = "journal:"
URI_FORMS = (
    "sqlite:///PATH/mlflow.db, http(s)://HOST:PORT (an MLflow server) or a database URL "
    "such as postgresql://USER@HOST/DB"
)


def redacted(url: str) -> str:
    """``url`` without the password of its user part, and with the values of its query
    parameters hidden (a token may travel there); anything else is kept."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(not a URL)"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, has_password, _ = user.partition(":")
        netloc = f"{name}:***@{host}" if has_password else f"{name}@{host}"
    query = "&".join(f"{item.partition('=')[0]}=***" for item in parts.query.split("&") if item)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def _scheme(uri: str) -> str:
    return uri.partition(":")[0].partition("+")[0].lower()


def tracking_kind(uri: str) -> str:
    """``sqlite``, ``server`` (http/https) or ``database``; a one-line error for any other."""
    scheme = _scheme(uri)
    if scheme == "sqlite" and uri.startswith("sqlite:///"):
        return "sqlite"
    if scheme in ("http", "https") and urlsplit(uri).hostname:
        return "server"
    if scheme in DATABASE_SCHEMES and "://" in uri:
        return "database"
    raise ConfigError(f"tracking URI {redacted(uri)!r} is not one of {URI_FORMS}")


def resolve_tracking_uri(results_dir: Path, tracking_uri: str | None) -> str:
    """The tracking URI in force: the one given, else ``$BENCH_TRACKING_URI``, else the
    SQLite file ``<results_dir>/mlflow.db``."""
    uri = tracking_uri or os.environ.get(TRACKING_ENV) or ""
    if not uri.strip():
        return f"sqlite:///{Path(results_dir) / 'mlflow.db'}"
    uri = uri.strip()
    tracking_kind(uri)
    return uri.rstrip("/") if tracking_kind(uri) == "server" else uri


def sqlite_path(uri: str) -> Path:
    """The database file of a ``sqlite:///`` URI."""
    return Path(uri[len("sqlite:///") :])


def is_journal(storage: str) -> bool:
    return storage.startswith(JOURNAL_PREFIX)


def journal_path(storage: str) -> Path:
    """The log file of a ``journal:PATH`` storage, as an absolute path."""
    text = storage[len(JOURNAL_PREFIX) :].strip()
    if not text:
        raise ConfigError("--storage journal: needs a file, like journal:/shared/optuna.log")
    return Path(text).expanduser().absolute()
