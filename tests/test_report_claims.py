"""Published claims as data, the verdict rule, and claims tested on runs: frames built by
hand for the rule, a tiny grid end to end through ``bench claims`` and the report."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.cli import main
from bench.errors import ConfigError
from bench.interface import METHODS
from bench.metrics import metric_keys
from bench.report.build import build_report
from bench.report.claims import (
    COLUMNS,
    Claim,
    PendingRun,
    RunPlanner,
    evaluate_claim,
    evaluate_claims,
    load_claims,
    merged,
    recipe_flags,
    verdict,
)
from bench.report.power import minimum_detectable_effect, seeds_needed
from tests.conftest import run_args

LEAD = Claim(
    "lead",
    "f1_macro",
    "kedr",
    "best-baseline",
    "synthetic-retina",
    0.4,
    "higher",
    "more than",
    0.0,
    0.0,
    2.0,
    "a paper",
)
ABOUT = dataclasses.replace(
    LEAD,
    id="about",
    method="kedr:no-ot",
    baseline="kedr",
    direction="lower",
    relation="about",
    size=3.0,
    margin=1.0,
)
NEARLY = dataclasses.replace(LEAD, id="nearly", relation="nearly", size=5.0, margin=1.0)
PLANNER = RunPlanner("e", "results", [0, 1, 2], {})


# the verdict rule -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claim", "low", "high", "expected"),
    [
        (LEAD, 0.5, 3.0, "supported"),  # the interval excludes 0 on the claimed side
        (LEAD, -0.5, 3.0, "inconclusive"),  # it holds 0
        (LEAD, -3.0, -0.5, "contradicted"),  # the other way
        (LEAD, -3.0, 0.0, "contradicted"),  # nothing in (0, inf)
        (ABOUT, 2.5, 3.5, "supported"),
        (ABOUT, 0.2, 1.9, "contradicted"),  # the direction holds, the size is below 3 - 1
        (ABOUT, 4.2, 6.0, "contradicted"),  # ... or above 3 + 1
        (ABOUT, -1.0, 2.5, "inconclusive"),
        (ABOUT, -1.0, 1.5, "contradicted"),  # what it allows in (0, inf) is below 2
        (NEARLY, 4.5, 5.5, "supported"),
        (NEARLY, 5.2, 6.0, "contradicted"),  # more than 5: not 'nearly 5'
        (dataclasses.replace(LEAD, size=1.0), 0.2, 0.9, "contradicted"),  # not more than 1
    ],
)
def test_the_verdict_compares_the_interval_with_the_claimed_region(claim, low, high, expected):
    assert verdict(claim, low, high) == expected


def simulated_verdicts(claim: Claim, delta: float, sigma: float, n: int) -> pd.Series:
    """Verdicts of 2,000 simulated paired designs whose true mean difference is ``delta``."""
    d = np.random.default_rng(7).normal(delta, sigma, size=(2000, n))
    half = stats.t.ppf(0.975, n - 1) * d.std(axis=1, ddof=1) / np.sqrt(n)
    mean = d.mean(axis=1)
    return pd.Series([verdict(claim, m - h, m + h) for m, h in zip(mean, half, strict=True)])


def test_a_true_difference_at_the_mde_is_supported_four_times_in_five():
    sigma, n = 2.0, 5
    found = simulated_verdicts(LEAD, minimum_detectable_effect(sigma, n), sigma, n)
    assert (found == "supported").mean() == pytest.approx(0.80, abs=0.03)
    assert (found == "contradicted").mean() < 0.01


def test_a_true_claim_is_contradicted_at_most_one_time_in_twenty():
    found = simulated_verdicts(ABOUT, ABOUT.size, 1.0, 8)
    assert (found == "contradicted").mean() <= 0.05 + 0.015
    assert (found == "supported").mean() > 0.9


def test_each_relation_states_its_region_and_wording():
    assert LEAD.region() == (0.0, np.inf) and LEAD.wording() == "higher"
    assert ABOUT.region() == (2.0, 4.0) and ABOUT.wording() == "lower by about 3 ± 1"
    assert NEARLY.region() == (4.0, 5.0) and NEARLY.wording() == "higher by nearly 5"
    small = dataclasses.replace(ABOUT, size=0.5)
    assert small.region() == (0.0, 1.5)  # a claim keeps its direction


# the claims file ---------------------------------------------------------------------
def test_every_shipped_claim_parses_and_names_registered_things():
    claims = load_claims()
    assert len(claims) >= 20 and len({c.id for c in claims}) == len(claims)
    for claim in claims:
        assert claim.metric in metric_keys()
        METHODS.resolve(claim.method)
        assert claim.baseline == "best-baseline" or METHODS.resolve(claim.baseline)
        assert claim.source.startswith("Li et al., Information Fusion 136 (2026) 104502")
        assert claim.published > 0
    variants = {c.method for c in claims if ":" in c.method}
    assert variants <= set(METHODS.names(with_variants=True))
    assert {"kedr:no-ked", "kedr:no-ot", "kedr:no-conf", "kedr:no-deq"} <= variants
    assert {c.dataset for c in claims} == {"mmc-amd", "harvard-glaucoma", "derm7pt"}


def test_the_shipped_claims_carry_the_papers_differences():
    claims = {c.id: c for c in load_claims()}
    assert claims["main-f1-40"].published == pytest.approx(83.34 - 81.73)
    assert claims["ablation-ot"].relation == "about" and claims["ablation-ot"].size == 2.5
    assert claims["glaucoma-f1-80"].relation == "more than" and claims["glaucoma-f1-80"].size == 1
    assert claims["ece-80"].direction == "lower"


def write_claims(path, rows: list[dict]) -> str:
    base = {c: "" for c in COLUMNS}
    pd.DataFrame([{**base, **row} for row in rows], columns=list(COLUMNS)).to_csv(path, index=False)
    return str(path)


GOOD = {
    "id": "x",
    "metric": "f1_macro",
    "method": "kedr",
    "baseline": "late-fusion",
    "dataset": "synthetic-retina",
    "rate": "0.4",
    "direction": "higher",
    "relation": "more than",
    "size": "0",
    "margin": "0",
    "published": "1.5",
    "source": "s",
}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "kedr:no-such"}, "claim 'x': method: .*no-such"),
        ({"baseline": "nope"}, "claim 'x': baseline: .*nope"),
        ({"metric": "f2"}, "metric 'f2' is not one of"),
        ({"dataset": "nowhere"}, "dataset: unknown dataset 'nowhere'"),
        ({"relation": "roughly"}, "relation 'roughly' is not one of more than, about, nearly"),
        ({"direction": "up"}, "direction 'up' is not one of higher, lower"),
        ({"rate": "1.2"}, r"rate 1.2 is outside \[0, 1\)"),
        ({"size": "big"}, "size 'big' is not a number"),
    ],
)
def test_a_bad_claim_is_a_one_line_error_naming_its_row(tmp_path, change, message):
    path = write_claims(tmp_path / "c.csv", [{**GOOD, **change}])
    with pytest.raises(ConfigError, match=message) as err:
        load_claims(path)
    assert "\n" not in str(err.value) and "fix the row" in str(err.value)


def test_a_claims_file_needs_its_columns_and_unique_ids(tmp_path):
    with pytest.raises(ConfigError, match="repeats the id"):
        load_claims(write_claims(tmp_path / "twice.csv", [GOOD, GOOD]))
    pd.DataFrame([{"id": "x"}]).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(ConfigError, match="lacks the column"):
        load_claims(tmp_path / "short.csv")
    with pytest.raises(ConfigError, match="does not exist"):
        load_claims(tmp_path / "none.csv")


# claims on hand-made runs ----------------------------------------------------------------
def frame_of(values: dict[str, list[float]], rate: float = 0.4, metric="f1_macro") -> pd.DataFrame:
    rows = [
        {"dataset": "synthetic-retina", "method": m, "rate": rate, "seed": s, metric: v}
        for m, seeds in values.items()
        for s, v in enumerate(seeds)
    ]
    return pd.DataFrame(rows)


def test_the_best_baseline_is_the_best_non_kedr_method_and_the_pairs_are_by_seed():
    frame = frame_of(
        {
            "kedr": [0.80, 0.82, 0.81, 0.83],
            "kedr:no-ot": [0.99, 0.99, 0.99, 0.99],  # a variant of KEDR is no baseline
            "late-fusion": [0.70, 0.71, 0.70, 0.72],
            "moddrop": [0.75, 0.76, 0.74, 0.77],
        }
    )
    result = evaluate_claim(frame, LEAD, "synthetic-retina", PLANNER)
    assert result.baseline == "moddrop" and result.selection == "late-fusion, moddrop"
    d = result.difference
    assert d.n == 4 and d.mean == pytest.approx(100 * (0.815 - 0.755))
    assert result.verdict == "supported" and result.pending is None
    assert not result.retargeted


def test_a_lower_is_better_metric_picks_the_lowest_baseline_and_orients_the_difference():
    frame = frame_of(
        {"kedr": [0.05, 0.06, 0.04], "a": [0.10, 0.12, 0.11], "b": [0.2] * 3}, 0.4, "ece"
    )
    claim = dataclasses.replace(LEAD, metric="ece", direction="lower")
    result = evaluate_claim(frame, claim, "synthetic-retina", PLANNER)
    assert result.baseline == "a" and result.difference.mean == pytest.approx(6.0)
    assert result.verdict == "supported"


def test_an_inconclusive_claim_says_how_many_seeds_would_tell():
    rng = np.random.default_rng(0)
    base = rng.normal(0.8, 0.02, 3)
    frame = frame_of({"kedr": base + np.array([0.03, -0.02, 0.01]), "late-fusion": base})
    claim = dataclasses.replace(LEAD, baseline="late-fusion", published=2.0)
    result = evaluate_claim(frame, claim, "synthetic-retina", PLANNER)
    assert result.verdict == "inconclusive"
    assert result.seeds_needed == seeds_needed(2.0, result.difference.sd) > 3
    assert result.pending.methods == ("kedr", "late-fusion")
    assert result.pending.seeds == tuple(range(result.seeds_needed))
    assert f"{result.seeds_needed} seeds would detect 2 points" in result.reason


def test_a_contradicted_claim_says_whether_its_direction_held():
    base = np.array([0.80, 0.82, 0.78, 0.81])
    claim = dataclasses.replace(LEAD, baseline="late-fusion", relation="more than", size=5.0)
    ahead = frame_of({"kedr": base + np.array([0.010, 0.012, 0.008, 0.011]), "late-fusion": base})
    small = evaluate_claim(ahead, claim, "synthetic-retina", PLANNER)
    assert small.verdict == "contradicted"
    assert small.reason == "direction holds, size outside the claim"
    mixed = frame_of({"kedr": base + np.array([-0.02, 0.01, -0.01, 0.005]), "late-fusion": base})
    unclear = evaluate_claim(mixed, claim, "synthetic-retina", PLANNER)
    assert unclear.verdict == "contradicted" and unclear.difference.ci_low < 0
    assert unclear.reason.startswith("the claimed size is excluded: at most +")


def test_claims_whose_cells_did_not_run_say_why_and_what_to_run():
    frame = frame_of({"kedr": [0.8, 0.8], "late-fusion": [0.7, 0.7]})
    ablation = evaluate_claim(frame, ABOUT, "synthetic-retina", PLANNER)
    assert ablation.verdict == "not run" and "kedr:no-ot did not run" in ablation.reason
    assert ablation.pending.methods == ("kedr:no-ot", "kedr")
    elsewhere = evaluate_claim(
        frame, dataclasses.replace(LEAD, rate=0.8), "synthetic-retina", PLANNER
    )
    assert "no cells of synthetic-retina at 80 %" in elsewhere.reason
    assert elsewhere.pending.methods == ("all",)
    one_seed = frame_of({"kedr": [0.8], "late-fusion": [0.7]})
    lonely = evaluate_claim(one_seed, LEAD, "synthetic-retina", PLANNER)
    assert "1 paired seed(s)" in lonely.reason and lonely.pending.seeds == (0, 1, 2)
    absent = evaluate_claim(frame, dataclasses.replace(LEAD, dataset="mmc-amd"), "mmc-amd", PLANNER)
    assert absent.reason == "mmc-amd did not run"
    assert "--data-root mmc-amd=/path/to/mmc-amd" in absent.pending.command()


def test_claims_about_other_datasets_are_retargeted_to_the_experiments():
    frame = frame_of({"kedr": [0.8, 0.81, 0.79], "late-fusion": [0.7, 0.72, 0.71]})
    paper = dataclasses.replace(LEAD, dataset="mmc-amd")
    default = evaluate_claims(frame, [paper], PLANNER)
    assert [(r.dataset, r.retargeted, r.verdict) for r in default] == [
        ("mmc-amd", False, "not run"),
        ("synthetic-retina", True, "supported"),
    ]
    chosen = evaluate_claims(frame, [paper], PLANNER, target="synthetic-retina")
    assert [(r.dataset, r.retargeted) for r in chosen] == [("synthetic-retina", True)]


def test_pending_runs_are_merged_over_rates_seeds_and_methods():
    runs = [
        PendingRun("d", ("all",), (0.4,), (0, 1, 2), ("--epochs 1",)),
        PendingRun("d", ("all",), (0.2,), (0, 1, 2), ("--epochs 1",)),
        PendingRun("d", ("kedr:no-ot", "kedr"), (0.2,), (0, 1, 2), ("--epochs 1",)),
        PendingRun("d", ("kedr:no-ked", "kedr"), (0.2,), (0, 1, 2), ("--epochs 1",)),
    ]
    assert [r.command() for r in merged(runs)] == [
        "bench run --datasets d --methods all --rates 0.2,0.4 --seeds 0,1,2 --epochs 1",
        "bench run --datasets d --methods kedr:no-ot,kedr,kedr:no-ked --rates 0.2 --seeds 0,1,2 "
        "--epochs 1",
    ]


def test_recipe_flags_repeat_only_what_differs_from_the_defaults():
    params = {
        "train.epochs": "8",
        "train.lr": "0.001",
        "train.device": "cpu",
        "train.batch_size": "16",
        "missing.mechanism": "mnar-class",
        "missing.modality": "either",
        "dataset.options.image_size": "32",
        "dataset.options.n_test": "153",
        "dataset.options.data_seed": "4",
    }
    assert recipe_flags(params, "synthetic-retina") == [
        "--epochs 8",
        "--set train.batch_size=16",
        "--mechanism mnar-class",
        "--set dataset_options.synthetic-retina.image_size=32",
        "--set dataset_options.synthetic-retina.data_seed=4",
    ]
    assert "data_seed" not in " ".join(recipe_flags(params, "synthetic-retina", data_seed=False))
    assert recipe_flags(params, None) == [
        "--epochs 8",
        "--set train.batch_size=16",
        "--mechanism mnar-class",
    ]


# end to end on a tiny grid ----------------------------------------------------------------
E2E_CLAIMS = [
    {
        **GOOD,
        "id": "lf-beats-moddrop",
        "method": "late-fusion",
        "baseline": "moddrop",
        "rate": "0.5",
    },
    {**GOOD, "id": "lf-best", "method": "late-fusion", "baseline": "best-baseline", "rate": "0.5"},
    {**GOOD, "id": "lf-at-20", "method": "late-fusion", "baseline": "moddrop", "rate": "0.2"},
    {**GOOD, "id": "on-mmc", "method": "late-fusion", "baseline": "moddrop", "dataset": "mmc-amd"},
]


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    folder = tmp_path_factory.mktemp("claims-grid")
    grid = ["--methods", "late-fusion,moddrop", "--rates", "0.5", "--seeds", "0,1"]
    assert main(run_args(folder, *grid, "--seed-axes", "init,masks", "--epochs", "1")) == 0
    return folder, write_claims(folder / "claims.csv", E2E_CLAIMS)


def claims_output(capsys, folder, claims_file, *extra: str) -> str:
    capsys.readouterr()
    args = ["claims", "--experiment", "t", "--results-dir", str(folder), "--claims", claims_file]
    assert main([*args, *extra]) == 0
    return capsys.readouterr().out


def test_bench_claims_prints_verdicts_not_run_claims_and_their_commands(tiny_grid, capsys):
    folder, claims_file = tiny_grid
    out = claims_output(capsys, folder, claims_file)
    assert "synthetic-retina: the paper's claims, tested on our runs" in out
    assert "| lf-beats-moddrop | late-fusion vs moddrop | 50 % |" in out
    assert "| lf-best | late-fusion vs moddrop (best) |" in out
    assert "mmc-amd: 1 claim not run (on-mmc)" in out
    assert "Verdicts: the 95 % t-interval" in out
    commands = [line for line in out.splitlines() if line.startswith("bench run")]
    assert any("--datasets synthetic-retina" in c and "--rates 0.2" in c for c in commands)
    records = json.loads(claims_output(capsys, folder, claims_file, "--format", "json"))
    by_id = {(r["claim"], r["dataset"]): r for r in records}
    tested = by_id[("lf-beats-moddrop", "synthetic-retina")]
    assert tested["n"] == 4 and tested["verdict"] in ("supported", "contradicted", "inconclusive")
    assert by_id[("lf-at-20", "synthetic-retina")]["verdict"] == "not run"


def test_the_printed_command_runs_the_missing_cells(tmp_path, capsys):
    grid = ["--methods", "late-fusion,moddrop", "--rates", "0.5", "--seeds", "0,1"]
    assert main(run_args(tmp_path, *grid, "--epochs", "1")) == 0
    claims_file = write_claims(tmp_path / "claims.csv", E2E_CLAIMS)
    out = claims_output(capsys, tmp_path, claims_file)
    (command,) = [
        line for line in out.splitlines() if line.startswith("bench run") and "--rates 0.2" in line
    ]
    args = shlex.split(command)[1:]
    assert "--epochs" in args and str(tmp_path) in args and "--seed-axes" not in args
    assert main(args) == 0
    records = json.loads(claims_output(capsys, tmp_path, claims_file, "--format", "json"))
    at_20 = next(
        r for r in records if r["claim"] == "lf-at-20" and r["dataset"] == "synthetic-retina"
    )
    assert at_20["verdict"] != "not run" and at_20["n"] == 2


def test_bench_claims_shows_where_the_variance_comes_from(tiny_grid, capsys):
    folder, claims_file = tiny_grid
    out = claims_output(capsys, folder, claims_file, "--variance")
    assert "where the variance of F1 comes from" in out
    assert (
        "| seed axes | SD over seeds | SD test bootstrap | init | masks | init x masks (residual) |"
        in out
    )
    assert "| late-fusion | 50 % | 4 | init x masks |" in out


def test_bench_claims_retargets_and_refuses_bad_input(tiny_grid, capsys):
    folder, claims_file = tiny_grid
    out = claims_output(capsys, folder, claims_file, "--dataset", "synthetic-retina")
    assert "re-targeted (not the paper's dataset)" in out and "on-mmc" in out
    capsys.readouterr()
    base = ["claims", "--experiment", "t", "--results-dir", str(folder)]
    assert main([*base, "--dataset", "nowhere"]) == 2
    assert "unknown dataset 'nowhere'" in capsys.readouterr().err
    assert main([*base, "--claims", str(folder / "none.csv")]) == 2
    assert main(["claims", "--experiment", "nope", "--results-dir", str(folder)]) == 2


def test_the_report_has_the_claims_and_variance_sections(tiny_grid, tmp_path):
    folder, claims_file = tiny_grid
    reference = tmp_path / "reference"
    reference.mkdir()
    shutil.copy(claims_file, reference / "claims.csv")
    written = build_report("t", folder, tmp_path / "out", ("md", "csv"), reference_dir=reference)
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert (
        "## Published claims, tested" in markdown and "## Where the variance comes from" in markdown
    )
    assert "lf-beats-moddrop" in markdown
    names = {p.name for p in written}
    assert {"claims.csv", "variance.csv"} <= names
    variance = pd.read_csv(tmp_path / "out" / "csv" / "variance.csv")
    assert set(variance["axes"]) == {"init x masks"}
    assert variance.filter(like="share[").sum(axis=1).round(6).eq(1).all()
