"""A method whose results changed carries a new ``version``, and with it new cell hashes."""

from __future__ import annotations

from dataclasses import replace

from bench.cli import main
from bench.config import expand, resolve
from bench.interface import METHODS
from bench.tracking import Tracker
from tests.conftest import run_args


def test_the_cell_records_its_methods_version_and_hashes_it_from_two_on():
    cells = expand(resolve(None, {"methods": ["late-fusion", "kedr"], "rates": [0.4]}, []))
    for cell in cells:
        assert cell.method_version == METHODS.resolve(cell.method)[0].version
    late, kedr = cells[0], next(c for c in cells if c.method == "kedr")
    assert late.method_version == 1 and "method_version" not in late.to_dict()
    assert kedr.method_version == 2 and kedr.to_dict()["method_version"] == 2
    assert replace(kedr, method_version=1).hash != kedr.hash
    assert replace(late, method_version=1).hash == late.hash


def test_a_new_version_of_a_method_reruns_its_cells(tmp_path, monkeypatch):
    args = run_args(tmp_path, "--methods", "late-fusion", "--rates", "0.4", "--seeds", "0")
    assert main(args) == 0
    cls, _ = METHODS.resolve("late-fusion")
    monkeypatch.setattr(cls, "version", 2)
    assert main(args) == 0
    tracker = Tracker(tmp_path)
    runs = tracker.find_runs(tracker.require_experiment("t"))
    assert len(runs) == 2 and len({run.cell_hash for run in runs}) == 2
