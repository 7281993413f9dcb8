"""The metric registry: a metric registered in one place reaches model selection, `bench
results` and the report; a malformed spec is refused when it is made."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench import results
from bench.cli import main
from bench.errors import ConfigError, UnknownNameError
from bench.metrics import (
    METRICS,
    MetricSpec,
    compute_metrics,
    metric_keys,
    metric_spec,
    register_metric,
)
from bench.report.build import build_report, metric_definitions
from bench.spec import TrainSpec
from tests.conftest import run_args


def top_k_accuracy(probs: np.ndarray, y: np.ndarray, k: int) -> float:
    """Fraction of samples whose label is among the k most probable classes."""
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == y[:, None]).any(axis=1).mean())


TOY = MetricSpec(
    key="top2_accuracy",
    compute=top_k_accuracy,
    higher_is_better=True,
    label="Top2",
    definition="fraction of samples whose label is among the {k} most probable classes.",
    params={"k": 2},
)


@pytest.fixture
def toy_metric():
    register_metric(TOY)
    yield TOY
    METRICS.unregister(TOY.key)


def test_a_registered_metric_is_computed_and_selectable_until_unregistered(toy_metric):
    probs = np.array([[0.5, 0.3, 0.2], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    y = np.array([1, 0, 2])
    got = compute_metrics(probs, y)
    assert list(got)[-1] == "top2_accuracy" and got["top2_accuracy"] == pytest.approx(1 / 3)
    assert metric_keys()[-1] == "top2_accuracy" and results.columns()[-1] == "top2_accuracy"
    assert TrainSpec(monitor="top2_accuracy").monitor == "top2_accuracy"
    assert (
        "- Top2 (top2_accuracy; higher is better; in %): fraction of samples whose label is "
        "among the 2 most probable classes." in metric_definitions()
    )
    METRICS.unregister("top2_accuracy")
    try:
        assert "top2_accuracy" not in compute_metrics(probs, y)
        with pytest.raises(ConfigError, match=r"train\.monitor 'top2_accuracy' is not valid"):
            TrainSpec(monitor="top2_accuracy")
        with pytest.raises(UnknownNameError, match="unknown metric 'top2_accuracy'"):
            metric_spec("top2_accuracy")
    finally:
        register_metric(TOY)  # the fixture unregisters it


def test_a_registered_metric_reaches_bench_results_and_the_report(toy_metric, tmp_path, capsys):
    grid = ["--methods", "late-fusion,unimodal:m1", "--rates", "0", "--seeds", "0", "--epochs", "1"]
    assert main(run_args(tmp_path, *grid)) == 0
    capsys.readouterr()
    listing = ["results", "--experiment", "t", "--results-dir", str(tmp_path), "--format"]
    assert main([*listing, "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2
    for row in rows:
        assert list(row)[-1] == "top2_accuracy"
        assert row["accuracy"] <= row["top2_accuracy"] <= 1
    assert main([*listing, "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(",aece,top2_accuracy")

    out = tmp_path / "report"
    build_report("t", tmp_path, out, formats=("md", "csv"))
    markdown = (out / "report.md").read_text()
    assert "**synthetic-retina: every metric by missing rate and method**" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| rate | method |"))
    assert header.endswith("| ECE | ECE10 | AECE | Top2 |")
    assert "among the 2 most probable classes." in markdown
    every = pd.read_csv(out / "csv" / "summary_all_metrics.csv")
    toy = every[every["metric"] == "top2_accuracy"].set_index("method")["mean"]
    assert toy.to_dict() == pytest.approx({r["method"]: r["top2_accuracy"] for r in rows})


def _spec(**change) -> MetricSpec:
    fields = {
        "key": "toy",
        "compute": top_k_accuracy,
        "higher_is_better": True,
        "label": "Toy",
        "definition": "top-{k} accuracy.",
        "params": {"k": 2},
    }
    return MetricSpec(**{**fields, **change})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "Top-2"}, "metric key 'Top-2' is not valid"),
        ({"params": {}}, "accepting params"),
        ({"params": {"k": 2, "n": 1}}, "accepting params"),
        ({"compute": lambda probs: 0.0}, "accepting params"),
        ({"higher_is_better": "yes"}, "higher_is_better must be True or False"),
        ({"label": ""}, "label must be one non-empty line"),
        ({"definition": "two\nlines"}, "definition must be one non-empty line"),
        ({"definition": "top-{n} accuracy."}, "definition has a field that params do not fill"),
        ({"display": "percentage"}, "display 'percentage' is not valid: choose one of"),
        ({"tables": ("appendix",)}, "tables must be a tuple of report tables"),
        ({"order": -1}, "order must be None or a non-negative integer"),
        ({"reference_scale": 0.0}, "reference_scale must be a finite number > 0"),
    ],
)
def test_a_malformed_spec_is_refused_with_what_to_fix(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        _spec(**change)
    assert "\n" not in str(info.value)


def test_bin_counts_are_checked_when_the_spec_is_made():
    def binned(probs, y, n_bins):
        return 0.0

    with pytest.raises(ConfigError, match="n_bins must be a positive integer"):
        _spec(compute=binned, params={"n_bins": 0}, definition="binned.")
    assert _spec(compute=binned, params={"n_bins": 7}, definition="{n_bins} bins.").describe() == (
        "7 bins."
    )


def test_keys_are_registered_once_and_only_specs_are_registered():
    with pytest.raises(ValueError, match="metric 'ece' is registered twice"):
        register_metric(_spec(key="ece"))
    with pytest.raises(TypeError, match="must be a MetricSpec"):
        register_metric(top_k_accuracy)
    with pytest.raises(UnknownNameError, match="unknown metric 'nope'"):
        METRICS.unregister("nope")
