"""Ray across nodes without a shared disk, on one machine: ``ray.cluster_utils.Cluster`` with
a head (no CPUs) and two worker nodes of 1 CPU, each with a cache of its own, writing to a
real MLflow server. Cells run on both nodes, never under the driver's results dir; a node
that dies mid-cell leaves that cell KILLED, and a rerun completes it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
from ray.cluster_utils import Cluster

from bench import results
from bench.benchmarks.servers import mlflow_server
from bench.cli import main
from bench.tracking import Tracker
from tests.conftest import run_args

GRID = ["--methods", "late-fusion,unimodal:m1", "--rates", "0.2,0.6", "--seeds", "0"]
SLOW = ["--epochs", "4", "--threads", "1"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as url:
        yield url


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head without CPUs and two 1-CPU worker nodes, each with its own cache folder."""
    folders = tmp_path_factory.mktemp("nodes")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    cluster.node_caches = {}

    def add_node(name: str):
        cache = folders / name
        env = {"BENCH_CACHE_DIR": str(cache)}
        node = cluster.add_node(num_cpus=1, env_vars=env)
        cluster.node_caches[node.node_id] = cache
        return node

    cluster.add_bench_node = add_node
    for name in ("node-1", "node-2"):
        add_node(name)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def cluster_args(results_dir, server: str, cluster: Cluster, experiment: str) -> list[str]:
    args = run_args(results_dir, *GRID, *SLOW, "--executor", "ray", "--workers", "2")
    args += ["--ray-address", cluster.address, "--tracking-uri", server]
    return [*args, "--experiment", experiment]


def driver(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "bench.cli", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # signals to the test's process group do not reach it
    )


def experiment_runs(server: str, experiment: str) -> list:
    tracker = Tracker("unused", server)
    return tracker.runs(tracker.require_experiment(experiment))


def test_cells_run_on_both_nodes_from_their_own_caches(tmp_path, server, cluster):
    reference = tmp_path / "sqlite"
    assert main([*run_args(reference, *GRID), *SLOW]) == 0
    args = cluster_args(tmp_path / "driver", server, cluster, "cluster")
    process = driver(args)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err

    runs = experiment_runs(server, "cluster")
    assert len(runs) == 4 and {r.status for r in runs} == {"FINISHED"}
    assert {r.tags["ray_node_id"] for r in runs} == set(cluster.node_caches)
    assert not (tmp_path / "driver").exists()  # no worker (nor the driver) wrote there
    for cache in cluster.node_caches.values():
        assert list((cache / "datasets").glob("*")), f"{cache} holds no dataset of its node"
    key = ["method", "dataset", "rate", "seed"]
    ours = results.load("cluster", tmp_path, server).set_index(key).sort_index()
    pd.testing.assert_frame_equal(ours, results.load("t", reference).set_index(key).sort_index())


def test_a_node_that_dies_mid_cell_leaves_it_killed_and_a_rerun_completes(
    tmp_path, server, cluster, capsys
):
    args = cluster_args(tmp_path / "driver", server, cluster, "node-death")
    process = driver(args)
    victim, deadline = None, time.monotonic() + 240
    while victim is None and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
        tracker = Tracker("unused", server)
        experiment_id = tracker.experiment_id("node-death", create=False)
        if experiment_id is not None:
            running = tracker.find_runs(experiment_id, status="RUNNING")
            victim = running[0].tags["ray_node_id"] if running else None
    assert victim is not None
    (node,) = [n for n in cluster.worker_nodes if n.node_id == victim]
    cluster.remove_node(node, allow_graceful=False)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1, err
    assert "Ray lost this cell" in err
    killed = [r for r in experiment_runs(server, "node-death") if r.status == "KILLED"]
    assert [r.tags["ray_node_id"] for r in killed] == [victim]

    cluster.add_bench_node("node-3")
    cluster.wait_for_nodes()
    process = driver(args)
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert "4 cells: 1 to run, 3 already recorded" in err
    runs = experiment_runs(server, "node-death")
    assert Counter(r.status for r in runs) == {"FINISHED": 4, "KILLED": 1}
    assert len({r.cell_hash for r in runs if r.status == "FINISHED"}) == 4


def test_a_cluster_refuses_a_sqlite_store_of_one_node(tmp_path, cluster, capsys):
    args = run_args(tmp_path, *GRID, "--executor", "ray", "--ray-address", cluster.address)
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.fullmatch(
        r"bench: error: the Ray cluster has \d nodes but runs would go to the SQLite file "
        r".*/mlflow\.db, which only this node sees: pass --tracking-uri http://HOST:PORT "
        r"of an MLflow server \(or a database URL\)",
        last,
    )
