"""Variance components of a factorial grid of seed axes, and test-set sampling variance."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from bench.errors import ConfigError
from bench.metrics import metric_spec
from bench.report.variance import bootstrap_test_variance, decompose, seed_variance

AXES = ("init", "masks", "data")
# known standard deviations of every effect of a three-axis design (residual last)
TRUE_SD = {
    ("init",): 2.0,
    ("masks",): 1.0,
    ("data",): 1.5,
    ("init", "masks"): 0.0,
    ("init", "data"): 0.5,
    ("masks", "data"): 0.0,
    ("init", "masks", "data"): 1.0,
}


def simulate(rng: np.random.Generator, levels: tuple[int, ...], designs: int = 1) -> np.ndarray:
    """``designs`` factorials drawn from the random-effects model with TRUE_SD."""
    y = np.full((designs, *levels), 50.0)
    for effect, sd in TRUE_SD.items():
        shape = [designs] + [levels[i] if a in effect else 1 for i, a in enumerate(AXES)]
        y = y + rng.normal(0.0, sd, size=shape)
    return y


def test_large_design_recovers_known_components():
    values = simulate(np.random.default_rng(0), (60, 60, 60))[0]
    found = {c.effect: c for c in decompose(values, AXES)}
    assert [c.effect for c in decompose(values, AXES)] == list(TRUE_SD)
    for effect, sd in TRUE_SD.items():
        # a component is estimated from its effect's df draws: SE about sd^2 sqrt(2 / df)
        tolerance = 3 * sd**2 * np.sqrt(2 / found[effect].df) + 0.02
        assert found[effect].variance == pytest.approx(sd**2, abs=tolerance)
    assert found[AXES].residual and not found[("init",)].residual
    assert sum(c.share for c in found.values()) == pytest.approx(1.0)


def test_anova_estimates_are_unbiased_over_simulated_3x3x3_designs():
    designs = simulate(np.random.default_rng(1), (3, 3, 3), designs=2000)
    raw = {e: [] for e in TRUE_SD}
    for values in designs:
        for c in decompose(values, AXES):
            raw[c.effect].append(c.raw)
    for effect, sd in TRUE_SD.items():
        estimates = np.array(raw[effect])
        standard_error = estimates.std(ddof=1) / np.sqrt(len(estimates))
        assert abs(estimates.mean() - sd**2) < 4 * standard_error


def test_sums_of_squares_match_statsmodels_anova():
    smf = pytest.importorskip("statsmodels.formula.api")
    anova = pytest.importorskip("statsmodels.stats.anova")
    values = simulate(np.random.default_rng(2), (3, 4, 2))[0]
    rows = [
        {"init": i, "masks": m, "data": d, "y": values[i, m, d]}
        for i, m, d in itertools.product(*map(range, values.shape))
    ]
    model = smf.ols(
        "y ~ C(init) + C(masks) + C(data) + C(init):C(masks) + C(init):C(data) + C(masks):C(data)",
        data=pd.DataFrame(rows),
    ).fit()
    table = anova.anova_lm(model, typ=1)
    names = {
        ("init",): "C(init)",
        ("masks",): "C(masks)",
        ("data",): "C(data)",
        ("init", "masks"): "C(init):C(masks)",
        ("init", "data"): "C(init):C(data)",
        ("masks", "data"): "C(masks):C(data)",
        AXES: "Residual",
    }
    for c in decompose(values, AXES):
        assert c.df == table.loc[names[c.effect], "df"]
        assert c.mean_square == pytest.approx(table.loc[names[c.effect], "mean_sq"])


def test_one_axis_is_the_sample_variance():
    values = np.array([1.0, 4.0, 2.0, 7.0])
    (only,) = decompose(values, ("init",))
    assert only.variance == pytest.approx(values.var(ddof=1)) and only.residual


def test_negative_estimates_are_truncated_at_zero():
    values = np.array([[0.0, 1.0], [1.0, 0.0]])  # all interaction: both main effects below 0
    found = {c.effect: c for c in decompose(values, ("init", "masks"))}
    assert found[("init",)].raw < 0 and found[("init",)].variance == 0.0
    assert found[("init", "masks")].share == pytest.approx(1.0)


def test_a_design_it_cannot_split_is_a_clear_error():
    with pytest.raises(ConfigError, match="at least 2 levels"):
        decompose(np.ones((3, 1)), ("init", "masks"))
    with pytest.raises(ConfigError, match="one array dimension per axis"):
        decompose(np.ones((3, 3)), ("init",))


def _predictions(rng: np.random.Generator, n: int, accuracy: float) -> pd.DataFrame:
    labels = rng.integers(0, 4, n)
    right = rng.random(n) < accuracy
    predicted = np.where(right, labels, (labels + 1) % 4)
    probs = np.full((n, 4), 0.1)
    probs[np.arange(n), predicted] = 0.7
    frame = pd.DataFrame({"index": np.arange(n), "label": labels})
    for k in range(4):
        frame[f"prob_c{k}"] = probs[:, k]
    return frame


def test_test_sampling_variance_of_accuracy_is_binomial():
    predictions = _predictions(np.random.default_rng(3), 400, 0.8)
    p = metric_spec("accuracy").compute(
        predictions.filter(like="prob_").to_numpy(), predictions["label"].to_numpy()
    )
    variance = bootstrap_test_variance(predictions, "accuracy", resamples=4000)
    assert variance == pytest.approx(p * (1 - p) / 400, rel=0.1)


def _grid_frame(rng: np.random.Generator) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    rows, predictions = [], {}
    for method in ("a", "b"):
        for i, m, d in itertools.product(range(3), range(3), range(2)):
            run_id = f"{method}{i}{m}{d}"
            predictions[run_id] = _predictions(rng, 100, 0.7 + 0.02 * i + 0.01 * d)
            rows.append(
                {
                    "dataset": "toy",
                    "method": method,
                    "rate": 0.6,
                    "seed": i,
                    "seed_masks": str(m),
                    "seed_data": str(d),
                    "run_id": run_id,
                    "f1_macro": 0.7 + 0.02 * i + 0.01 * d + rng.normal(0, 0.005),
                }
            )
    return pd.DataFrame(rows), predictions


def test_seed_variance_splits_a_factorial_grid_by_axis():
    frame, predictions = _grid_frame(np.random.default_rng(4))
    out = seed_variance(frame, "f1_macro", predictions.__getitem__).set_index("method")
    assert list(out.index) == ["a", "b"] and (out["axes"] == "init x masks x data").all()
    assert (out["runs"] == 18).all() and (out["note"] == "").all()
    assert (out["share[init]"] > out["share[masks]"]).all()  # init moves F1 by 2 points a level
    shares = out.filter(like="share[").sum(axis=1)
    np.testing.assert_allclose(shares, 1.0)
    assert (out["sd_test_bootstrap"] > 0).all() and (out["sd_over_seeds"] > 1).all()


def test_seed_variance_without_axes_has_one_coupled_factor_and_no_split():
    frame, _ = _grid_frame(np.random.default_rng(5))
    plain = frame[(frame["seed_masks"] == "0") & (frame["seed_data"] == "0")].assign(
        seed_masks="", seed_data=""
    )
    out = seed_variance(plain, "f1_macro")
    assert (out["axes"] == "seed").all() and (out["runs"] == 3).all()
    assert out["note"].str.contains("nothing to split").all()
    assert not any(c.startswith("share[") for c in out.columns)
    assert out["sd_test_bootstrap"].isna().all()  # no predictions given


def test_an_incomplete_factorial_is_reported_not_split():
    frame, _ = _grid_frame(np.random.default_rng(6))
    out = seed_variance(frame.iloc[1:], "f1_macro").set_index("method")
    assert "do not fill the factorial" in out.loc["a", "note"]
    assert out.loc["b", "note"] == ""
