"""Runs on a real MLflow tracking server (loopback only, its own stores, stopped by pid):
process and Ray grids survive a kill -9 and resume, the table equals a SQLite run's cell by
cell, two tuning "nodes" share one study, and no credential reaches a run or a message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from bench import results
from bench.benchmarks.servers import free_port, mlflow_server
from bench.cli import main
from bench.stores import redacted, resolve_tracking_uri, tracking_kind
from bench.tracking import Tracker
from tests.conftest import TINY_SETS, run_args

GRID = ["--methods", "late-fusion,unimodal:m1", "--rates", "0.2,0.6", "--seeds", "0"]
SLOW = ["--epochs", "4", "--threads", "1"]  # cells long enough to be killed mid-way
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def sqlite_table(tmp_path_factory) -> pd.DataFrame:
    """The grid's table from the default SQLite store, run in this process."""
    folder = tmp_path_factory.mktemp("sqlite")
    assert main([*run_args(folder, *GRID), *SLOW]) == 0
    return results.load("t", folder)


def server_args(results_dir: Path, url: str, experiment: str, *extra: str) -> list[str]:
    args = run_args(results_dir, *GRID, *SLOW, "--tracking-uri", url, *extra)
    return [*args, "--experiment", experiment]


def finished_once(url: str, experiment: str, cells: int) -> Counter:
    """Each cell's FINISHED runs; every cell must have exactly one."""
    tracker = Tracker("unused", url)
    runs = tracker.runs(tracker.require_experiment(experiment))
    finished = Counter(r.cell_hash for r in runs if r.status == "FINISHED")
    assert len(finished) == cells and set(finished.values()) == {1}
    return Counter(r.status for r in runs)


def kill_a_running_cell(url: str, experiment: str, driver: subprocess.Popen) -> int:
    """kill -9 the process that runs the first RUNNING cell of ``experiment``; its pid."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        tracker = Tracker("unused", url)
        experiment_id = tracker.experiment_id(experiment, create=False)
        running = (
            [] if experiment_id is None else tracker.find_runs(experiment_id, status="RUNNING")
        )
        if running:
            victim = int(running[0].tags["pid"])
            os.kill(victim, signal.SIGKILL)
            return victim
        time.sleep(0.2)
    raise AssertionError(f"no cell of {experiment} was seen running")


def same_cells(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    key = ["method", "dataset", "rate", "seed"]
    left, right = frame.set_index(key).sort_index(), reference.set_index(key).sort_index()
    pd.testing.assert_frame_equal(left, right)


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_a_grid_on_the_server_survives_kill_9_and_equals_the_sqlite_table(
    tmp_path, server, sqlite_table, executor, capsys, monkeypatch
):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "node-cache"))  # Ray workers' cache
    experiment = f"server-{executor}"
    extra = ["--executor", executor, "--workers", "2"]
    if executor == "ray":
        extra += ["--ray-address", "local"]
    args = server_args(tmp_path / "results", server, experiment, *extra)
    env = {**ENV, "BENCH_CACHE_DIR": str(tmp_path / "node-cache")}
    driver = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # signals to the test's process group do not reach it
    )
    victim = kill_a_running_cell(server, experiment, driver)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 1, err  # the grid went on and reported the lost cell
    assert "KILLED" in err and str(victim) != str(driver.pid)
    tracker = Tracker("unused", server)
    killed = tracker.find_runs(tracker.require_experiment(experiment), status="KILLED")
    assert [run.tags["pid"] for run in killed] == [str(victim)]

    assert main(args) == 0  # the rerun finishes the lost cell only
    assert "4 cells: 1 to run, 3 already recorded" in capsys.readouterr().err
    assert finished_once(server, experiment, 4) == {"FINISHED": 4, "KILLED": 1}
    stored = {"mlflow.db", "artifacts"} & {p.name for p in (tmp_path / "results").glob("*")}
    assert not stored  # the runs and their artifacts are the server's
    if executor == "ray":  # a Ray worker uses its node's cache, not the driver's results dir
        assert not {"mlflow.db", "artifacts"} & {p.name for p in (tmp_path / "results").glob("*")}
        assert list((tmp_path / "node-cache" / "datasets").glob("*"))

    assert main(["results", "--experiment", experiment, "--tracking-uri", server]) == 0
    shown = capsys.readouterr().out
    same_cells(results.load(experiment, tmp_path, server), sqlite_table)
    assert shown.strip() == results.render(sqlite_table, "md").strip()


def test_report_reads_the_server_as_it_reads_sqlite(tmp_path, server, sqlite_table):
    args = server_args(tmp_path, server, "server-report")
    assert main(args) == 0
    out = tmp_path / "report"
    report = ["report", "--experiment", "server-report", "--tracking-uri", server]
    assert main([*report, "--out", str(out), "--formats", "csv"]) == 0
    cells = pd.read_csv(out / "csv" / "runs.csv")
    assert len(cells) == 4 and set(cells["method"]) == {"late-fusion", "unimodal:m1"}


def test_credentials_stay_in_the_environment_and_out_of_runs(tmp_path, server, monkeypatch, capsys):
    secret = "s3cr3t-pa55"
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ana")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", secret)
    with_password = server.replace("http://", f"http://ana:{secret}@")
    grid = ["--methods", "unimodal:m1", "--rates", "0.2", "--seeds", "0"]
    args = [*run_args(tmp_path, *grid), "--tracking-uri", with_password]
    assert main([*args, "--experiment", "secret"]) == 0
    assert secret not in "".join(capsys.readouterr())
    tracker = Tracker("unused", server)
    (run,) = tracker.runs(tracker.require_experiment("secret"))
    recorded = " ".join([*run.tags.values(), *run.params.values()])
    assert secret not in recorded and "ana" not in recorded
    assert main(["results", "--experiment", "nope", "--tracking-uri", with_password]) == 2
    err = capsys.readouterr().err
    assert secret not in err and "ana:***@127.0.0.1" in err


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
def test_two_tuning_nodes_on_one_storage_finish_ten_trials_exactly(tmp_path, server, storage):
    shared = tmp_path / "shared"
    shared.mkdir()
    url = f"sqlite:///{shared}/optuna.db" if storage == "sqlite" else f"journal:{shared}/o.log"
    study = f"two-nodes-{storage}"

    def command(node: str) -> list[str]:
        args = ["tune", "--method", "late-fusion", "--rate", "0.4", "--trials", "10"]
        args += ["--epochs", "1", "--results-dir", str(tmp_path / node), "--study", study]
        args += ["--storage", url, "--tracking-uri", server]
        for item in TINY_SETS:
            args += ["--set", item]
        return [sys.executable, "-m", "bench.cli", *args]

    nodes = [
        subprocess.Popen(command(node), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for node in ("node-a", "node-b")
    ]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs

    import optuna

    from bench.tune import open_storage

    trials = optuna.load_study(study_name=study, storage=open_storage(url)).trials
    counted = [t for t in trials if "void" not in t.user_attrs]
    assert len(counted) == 10 and {t.state.name for t in counted} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["pid"] for t in counted}) == 2  # both nodes worked
    tracker = Tracker("unused", server)
    runs = tracker.find_runs(tracker.require_experiment("tune"), tags={"optuna_study": study})
    (parent,) = [r for r in runs if r.tags.get("optuna_role") == "study"]
    children = [r for r in runs if r.tags.get("mlflow.parentRunId") == parent.run_id]
    ran = {t.user_attrs["mlflow_run_id"] for t in trials if "mlflow_run_id" in t.user_attrs}
    assert {r.run_id for r in children} == ran and parent.status == "FINISHED"  # a surplus
    assert {t.user_attrs["mlflow_run_id"] for t in counted} <= ran  # trial voided unrun has none
    assert not (tmp_path / "node-a" / "mlflow.db").exists()


def test_the_tracking_uri_comes_from_the_flag_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("BENCH_TRACKING_URI", raising=False)
    assert resolve_tracking_uri(tmp_path, None) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("BENCH_TRACKING_URI", "http://127.0.0.1:5000/")
    assert resolve_tracking_uri(tmp_path, None) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri(tmp_path, "postgresql://u@db/runs") == "postgresql://u@db/runs"
    assert tracking_kind("postgresql+psycopg2://u@db/runs") == "database"
    assert (
        redacted("postgresql://u:pw@db/runs?sslpassword=x")
        == "postgresql://u:***@db/runs?sslpassword=***"
    )


def test_tracking_uri_in_a_config_file_is_used(tmp_path, server):
    config = tmp_path / "grid.yaml"
    config.write_text(f"tracking_uri: {server}\n")
    grid = ["--methods", "unimodal:m1", "--rates", "0.2", "--seeds", "0"]
    args = [*run_args(tmp_path / "results", *grid), "--config", str(config)]
    assert main([*args, "--experiment", "from-config"]) == 0
    tracker = Tracker("unused", server)
    assert len(tracker.runs(tracker.require_experiment("from-config"))) == 1
    assert not {"mlflow.db", "artifacts"} & {p.name for p in (tmp_path / "results").glob("*")}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("ftp://host/x", "tracking URI 'ftp://host/x' is not one of sqlite:///PATH/mlflow.db"),
        ("http://127.0.0.1:{port}", "the MLflow tracking server http://127.0.0.1:{port} does not"),
    ],
)
def test_a_bad_or_silent_tracking_uri_is_one_line_exit_2(tmp_path, capsys, uri, message):
    port = free_port()  # nothing listens there
    grid = ["--methods", "unimodal:m1", "--rates", "0.2", "--seeds", "0"]
    args = [*run_args(tmp_path, *grid), "--tracking-uri", uri.format(port=port)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bench: error: {message.format(port=port)}") and "\n" not in err


def test_a_saved_profile_is_recorded_on_the_server(tmp_path, server, capsys):
    args = ["profile", "--method", "late-fusion", "--image-size", "32", "--batch-size", "4"]
    args += ["--steps", "1", "--device", "cpu", "--save", "--results-dir", str(tmp_path)]
    assert main([*args, "--tracking-uri", server]) == 0
    tracker = Tracker("unused", server)
    experiment_id = tracker.require_experiment("profile")
    (run,) = tracker.find_runs(experiment_id, tags={"profile_method": "late-fusion"})
    assert run.status == "FINISHED" and run.metrics["batch_size"] == 4
    assert run.metrics["params_train"] > 0 and run.params["input"] == "images:32"
    assert (tmp_path / "profile" / "late-fusion.json").is_file()

    from bench.report.build import load_profiles

    on_server = load_profiles(tmp_path / "elsewhere", tracker)  # a machine without the file
    from_file = load_profiles(tmp_path)
    pd.testing.assert_frame_equal(on_server, from_file, check_exact=False, rtol=1e-12)


def test_an_idempotent_call_that_loses_an_insert_race_is_retried():
    from bench.tracking import RetryingClient

    class Racing:
        calls = 0

        def set_tag(self, run_id, key, value):
            Racing.calls += 1
            if Racing.calls == 1:
                raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: tags.key")
            return "set"

        def log_batch(self, run_id, metrics):
            raise RuntimeError("(sqlite3.IntegrityError) UNIQUE constraint failed: metrics.key")

    client = RetryingClient(Racing())
    assert client.set_tag("r", "trials", "3") == "set" and Racing.calls == 2
    with pytest.raises(RuntimeError, match="UNIQUE constraint failed"):
        client.log_batch("r", [])  # not idempotent: raised at once
