"""Table layout: mean ± std strings, best/second marks, the all-metrics table, Markdown and
LaTeX (booktabs)."""

from __future__ import annotations

import itertools
import math
import re

import pandas as pd
import pytest

from bench.metrics import metric_keys, metric_spec
from bench.report import reference, render, stats, tables
from bench.report.tables import BEST, SECOND

METRICS = ("f1_macro", "kappa", "accuracy", "ece")


def _frame() -> pd.DataFrame:
    """Three methods x two rates x three seeds with hand-chosen values: at rate 0.2 'a' has the
    best F1 and 'c' the second; 'b' has the lowest (best) ECE everywhere."""
    f1 = {"a": (0.80, 0.82, 0.84), "b_fusion": (0.70, 0.70, 0.70), "c": (0.75, 0.76, 0.77)}
    rows = []
    for method, values in f1.items():
        for rate in (0.2, 0.4):
            for seed, value in enumerate(values):
                drop = 0.1 if rate == 0.4 else 0.0
                rows.append(
                    {
                        "method": method,
                        "dataset": "toy",
                        "rate": rate,
                        "seed": seed,
                        "f1_macro": value - drop,
                        "kappa": value - 0.1,
                        "accuracy": value + 0.05,
                        "ece": 0.05 if method == "b_fusion" else 0.1 + 0.01 * seed,
                    }
                )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return stats.summarise(_frame(), METRICS)


def test_mean_std_strings():
    assert tables.mean_std(0.8512, 0.0123) == "85.1 ± 1.2"
    assert tables.mean_std(0.8512, 0.0123, n=2, n_max=3) == "85.1 ± 1.2†"
    assert tables.mean_std(0.8512, math.nan) == "85.1"
    assert tables.mean_std(-0.024, 0.041) == "−2.4 ± 4.1"
    assert tables.mean_std(math.nan, math.nan) == tables.DASH


def test_rank_marks_follow_the_shown_values_and_direction():
    assert tables.rank_marks([0.9, 0.8, 0.85, math.nan], True) == [BEST, 0, SECOND, 0]
    assert tables.rank_marks([0.9, 0.8, 0.85], False) == [0, BEST, SECOND]
    assert tables.rank_marks([0.8501, 0.8504, 0.7], True) == [BEST, BEST, SECOND]
    assert tables.rank_marks([0.8, math.nan], True) == [0, 0]


def test_main_table_bolds_best_and_underlines_second(summary):
    table = tables.main_table(summary, "toy")
    assert table.header[:4] == ("method", "F1", "κ", "Acc")
    assert table.groups == (("20 %", 3), ("40 %", 3))
    rows = {row[0]: (i, row) for i, row in enumerate(table.rows)}
    i_a, row_a = rows["a"]
    i_c, row_c = rows["c"]
    assert row_c[1] == "76.0 ± 1.0"
    i_b, row_b = rows["b_fusion"]
    assert row_a[1] == "82.0 ± 2.0"  # F1 at 20 %: mean 0.82, sample std 0.02
    assert row_b[1] == "70.0 ± 0.0"
    assert (table.mark(i_a, 1), table.mark(i_c, 1), table.mark(i_b, 1)) == (BEST, SECOND, 0)
    markdown = render.to_markdown(table)
    assert "| a | **82.0 ± 2.0** |" in markdown
    assert "| c | <u>76.0 ± 1.0</u> |" in markdown
    assert markdown.splitlines()[0].startswith("| method | 20 % F1 | 20 % κ | 20 % Acc |")


def test_ece_table_marks_the_lowest_as_best(summary):
    table = tables.ece_table(summary, "toy")
    rows = {row[0]: i for i, row in enumerate(table.rows)}
    assert table.mark(rows["b_fusion"], 1) == BEST
    assert "lower is better" in table.note
    assert "15 equal-width bins" in table.note


def test_fewer_seeds_are_flagged(summary):
    frame = _frame()
    frame = frame[~((frame["method"] == "c") & (frame["seed"] == 2))]
    table = tables.main_table(stats.summarise(frame, METRICS), "toy")
    row_c = next(row for row in table.rows if row[0] == "c")
    assert row_c[1].endswith("†")
    assert "fewer" in table.note


def test_robustness_table_states_the_normalisation():
    table = tables.robustness_table(stats.robustness(_frame(), METRICS), "toy")
    assert table.header == ("method", "F1", "κ", "Acc", "ECE")
    row_a = next(row for row in table.rows if row[0] == "a")
    assert row_a[1] == "77.0 ± 2.0"  # mean of 0.82 (20 %) and 0.72 (40 %)
    assert "divided by their span" in table.note
    assert "20 %, 40 %" in table.note


def test_ci_table_shows_interval_or_says_unavailable(summary):
    table = tables.ci_table(summary, "toy", "f1_macro")
    assert re.fullmatch(r"82\.0 \[\d+\.\d, \d+\.\d\]", table.rows[0][1])
    short = stats.summarise(_frame()[lambda f: f["seed"] < 2], METRICS)
    assert tables.ci_table(short, "toy", "f1_macro").rows[0][1].endswith("(CI n/a)")


def _strip_escaped(text: str) -> str:
    return text.replace(r"\{", "").replace(r"\}", "")


def test_latex_table_is_structurally_sound(summary):
    table = tables.main_table(summary, "toy")
    latex = render.to_latex(table)
    lines = latex.splitlines()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert lines.count(rule) == 1
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    body = _strip_escaped(latex)
    assert body.count("{") == body.count("}")
    depth = 0
    for char in body:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert latex.count(r"\begin{") == latex.count(r"\end{") == 2
    columns = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", latex).group(1))
    rows = [line for line in lines if line.endswith(r"\\")]
    for row in rows:
        spans = sum(int(w) - 1 for w in re.findall(r"\\multicolumn\{(\d+)\}", row))
        assert row.count(" & ") + 1 + spans == columns
    assert r"\cmidrule(lr){2-4}" in latex
    assert r"a & \textbf{82.0 $\pm$ 2.0}" in latex
    assert r"c & \underline{76.0 $\pm$ 1.0}" in latex
    assert r"b\_fusion" in latex
    assert r"(\%)" in latex and r"$\kappa$" in latex


def test_latex_escape_handles_specials():
    assert render.latex_escape("a_b & 5% #1 ~x^2 {y}") == (
        r"a\_b \& 5\% \#1 \textasciitilde{}x\textasciicircum{}2 \{y\}"
    )


def test_markdown_escapes_pipes_and_aligns_numbers():
    table = tables.Table(
        name="t", title="t", header=("name", "value"), rows=(("a|b", "1.0"), ("c", "2.0"))
    )
    lines = render.to_markdown(table).splitlines()
    assert lines[1] == "|:---|---:|"
    assert lines[2] == r"| a\|b | 1.0 |"


def test_published_numbers_are_compared_with_our_ci():
    paper = reference.published()
    main = paper[(paper["table"] == "main") & (paper["method"] == "kedr")]
    main = main[main["dataset"] == "mmc-amd"]
    assert len(main) == 12  # 4 rates x F1 / kappa / accuracy
    f1 = main[(main["rate"] == 0.2) & (main["metric"] == "f1_macro")]["value"].item()
    assert f1 == pytest.approx(0.8502)
    ece = paper[(paper["table"] == "ece") & (paper["method"] == "kedr") & (paper["rate"] == 0.8)]
    assert ece["value"].item() == pytest.approx(0.173)

    rows = [
        {"method": "kedr", "dataset": "mmc-amd", "rate": 0.2, "seed": s, "f1_macro": v}
        for s, v in enumerate((0.84, 0.85, 0.86))
    ]
    summary = stats.summarise(pd.DataFrame(rows), ("f1_macro",))
    comparison = reference.compare(paper, summary, "mmc-amd")
    assert len(comparison) == 1  # the ablation table repeats the same number: shown once
    row = comparison.iloc[0]
    assert row["paper"] == pytest.approx(0.8502)
    assert row["difference"] == pytest.approx(0.85 - 0.8502)
    assert row["inside_ci"]
    assert "imdr at 20 %" in reference.unmatched(paper, summary, "mmc-amd")
    table = tables.published_table(comparison, "mmc-amd")
    assert table.rows[0][4:] == ("85.02", "85.00", table.rows[0][6], "−0.02", "yes")

    two_seeds = stats.summarise(pd.DataFrame(rows[:2]), ("f1_macro",))
    assert reference.compare(paper, two_seeds, "mmc-amd").iloc[0]["inside_ci"] is None
    assert reference.compare(paper, summary.assign(dataset="synthetic-retina"), "x").empty


def test_table_membership_order_and_reference_columns_come_from_the_specs():
    assert tables.table_metrics("main") == ("f1_macro", "kappa", "accuracy")
    assert tables.table_metrics("ece") == ("ece",)
    assert tables.headline_metrics() == ("f1_macro", "kappa", "accuracy", "ece")
    columns = {column: spec.key for column, spec in reference.reference_columns().items()}
    assert list(columns.items()) == [
        ("f1", "f1_macro"),
        ("kappa", "kappa"),
        ("accuracy", "accuracy"),
        ("ece", "ece"),
    ]
    scales = {c: s.reference_scale for c, s in reference.reference_columns().items()}
    assert scales == {"f1": 0.01, "kappa": 0.01, "accuracy": 0.01, "ece": 1.0}


def test_ci_and_ece_notes_state_the_settings_the_code_uses(summary):
    note = tables.ci_table(summary, "toy", "f1_macro").note
    assert f"{stats.N_RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED}" in note
    assert f"fewer than {stats.MIN_SEEDS_FOR_CI} seeds" in note
    assert "only 10 distinct resamples" in note  # 3 seeds: C(5, 3) multisets
    for n in (2, 3, 4):
        multisets = {tuple(sorted(c)) for c in itertools.product(range(n), repeat=n)}
        assert tables.distinct_resamples(n) == len(multisets)
    bins = metric_spec("ece").params["n_bins"]
    assert f"{bins} equal-width bins" in tables.ece_table(summary, "toy").note


def _every_metric_frame() -> pd.DataFrame:
    """Two methods x two rates x three seeds, a value for every registered metric: 'a' is
    better than 'b' in every metric's direction at 20 %, worse at 40 %; NLL is about 1.2."""
    rows = []
    for rate in (0.2, 0.4):
        for method in ("a", "b"):
            for seed in range(3):
                good = (method == "a") == (rate == 0.2)
                row = {"method": method, "dataset": "toy", "rate": rate, "seed": seed}
                for key in metric_keys():
                    high = metric_spec(key).higher_is_better
                    value = 0.6 + 0.01 * seed + (0.1 if good == high else 0.0)
                    row[key] = 2 * value if key == "nll" else value
                rows.append(row)
    return pd.DataFrame(rows)


def test_all_metrics_table_shows_every_metric_ranked_within_each_rate():
    frame = _every_metric_frame()
    summary = stats.summarise(frame, metric_keys())
    table = tables.all_metrics_table(summary, "toy")
    labels = tuple(metric_spec(k).label for k in metric_keys())
    assert table.header == ("rate", "method", *labels)
    assert [row[:2] for row in table.rows] == [
        ("20 %", "a"),
        ("20 %", "b"),
        ("40 %", "a"),
        ("40 %", "b"),
    ]
    best_at_20, best_at_40 = table.marks[0], table.marks[3]
    assert best_at_20[:2] == (0, 0) and set(best_at_20[2:]) == {BEST}
    assert set(best_at_40[2:]) == {BEST}
    assert set(table.marks[1][2:]) == set(table.marks[2][2:]) == {SECOND}
    nll = table.header.index("NLL")
    assert table.rows[1][nll] == "1.420 ± 0.020"  # as stored, three decimals
    assert table.rows[0][table.header.index("F1")] == "71.0 ± 1.0"  # in %
    assert "in % except NLL (as stored)" in table.note
    assert "higher is better except NLL, Brier, ECE, ECE10, AECE (lower)" in table.note
    assert "not recorded" not in table.note


def test_all_metrics_table_leaves_out_metrics_no_run_recorded():
    frame = _every_metric_frame().assign(auroc=math.nan)
    table = tables.all_metrics_table(stats.summarise(frame, metric_keys()), "toy")
    assert "AUROC" not in table.header
    assert len(table.header) == 2 + len(metric_keys()) - 1
    assert table.note.endswith("not recorded by these runs: AUROC.")
    markdown = render.to_markdown(table)
    assert markdown.splitlines()[1] == "|:---|:---|" + "---:|" * (len(table.header) - 2)
