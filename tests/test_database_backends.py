"""A real PostgreSQL server as the tracking store (MLflow's SQL store, no tracking server) and
as an Optuna storage that two tuning processes join. The server is started here on a free
port of 127.0.0.1 with a data folder of its own, and stopped by its pid; the tests skip
where PostgreSQL or its Python driver is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import results
from bench.benchmarks.servers import free_port
from bench.cli import main
from tests.conftest import TINY_SETS, run_args

psycopg = pytest.importorskip("psycopg", reason="needs psycopg (extra [server])")
pytestmark = pytest.mark.skipif(shutil.which("initdb") is None, reason="needs PostgreSQL")
USER = "bench"


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user there."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def postgres():
    """The URL prefix ``postgresql://bench@127.0.0.1:PORT`` of a throwaway server."""
    folder = Path(tempfile.mkdtemp(prefix="kedr-bench-postgres-"))  # pytest's is root-only
    try:
        yield from _serve(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _serve(folder: Path):
    data, sockets = folder / "data", folder / "sockets"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(sockets, "postgres")
    initdb = ["initdb", "-D", str(data), "-A", "trust", "-U", USER, "--no-sync"]
    subprocess.run(_as_postgres(initdb), check=True, capture_output=True, timeout=120)
    port = free_port()
    server = ["postgres", "-D", str(data), "-p", str(port), "-h", "127.0.0.1"]
    server += ["-k", str(sockets), "-c", "fsync=off"]
    with (folder / "server.log").open("w") as log:
        process = subprocess.Popen(
            _as_postgres(server), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"postgresql://{USER}@127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg.connect(f"{url}/postgres")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.25)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CREATE DATABASE mlflow")
        cursor.execute("CREATE DATABASE optuna")
    connection.close()
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # its own group: start_new_session
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_a_database_store_resumes_and_reads_as_sqlite_does(tmp_path, postgres, capsys):
    grid = ["--methods", "late-fusion,unimodal:m1", "--rates", "0.4", "--seeds", "0"]
    store = f"{postgres}/mlflow"
    args = [*run_args(tmp_path / "pg", *grid), "--tracking-uri", store]
    assert main(args) == 0
    assert main(args) == 0  # resumed from the database: nothing to run
    assert "2 cells: 0 to run, 2 already recorded" in capsys.readouterr().err
    assert not (tmp_path / "pg" / "mlflow.db").exists()
    assert list((tmp_path / "pg" / "artifacts").rglob("predictions.csv"))  # beside the runs

    assert main(run_args(tmp_path / "sqlite", *grid)) == 0
    key = ["method", "dataset", "rate", "seed"]
    ours = results.load("t", tmp_path / "pg", store).set_index(key).sort_index()
    reference = results.load("t", tmp_path / "sqlite").set_index(key).sort_index()
    pd.testing.assert_frame_equal(ours, reference)
    report = ["report", "--experiment", "t", "--tracking-uri", store, "--formats", "csv"]
    assert main([*report, "--results-dir", str(tmp_path / "pg"), "--out", str(tmp_path / "r")]) == 0


def test_two_tuning_processes_on_postgres_finish_the_study_exactly(tmp_path, postgres):
    import optuna

    storage = f"{postgres}/optuna"

    def command(node: str) -> list[str]:
        args = ["tune", "--method", "late-fusion", "--rate", "0.4", "--trials", "6"]
        args += ["--epochs", "1", "--results-dir", str(tmp_path / node), "--storage", storage]
        for item in TINY_SETS:
            args += ["--set", item]
        return [sys.executable, "-m", "bench.cli", *args]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        subprocess.Popen(command(n), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for n in ("node-a", "node-b")
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    study = optuna.load_study(study_name="late-fusion_synthetic-retina_r0.4_s0", storage=storage)
    counted = [t for t in study.trials if "void" not in t.user_attrs]
    assert len(counted) == 6 and len({t.user_attrs["pid"] for t in counted}) == 2
    assert "mlflow_parent_run_id" in study.user_attrs


def test_an_unreachable_database_is_one_line_exit_2_at_once(tmp_path, capsys):
    started = time.monotonic()
    port = free_port()
    args = run_args(tmp_path, "--methods", "unimodal:m1", "--rates", "0.2", "--seeds", "0")
    uri = f"postgresql://ana:s3cr3t@127.0.0.1:{port}/mlflow"
    assert main([*args, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bench: error: the database postgresql://ana:***@127.0.0.1:{port}")
    assert "s3cr3t" not in err and "\n" not in err
    assert time.monotonic() - started < 30  # not MLflow's minutes of retries
