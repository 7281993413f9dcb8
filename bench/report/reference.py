"""Published numbers (``results/reference/*.csv``, see the README there) set beside ours.

Absolute numbers (``kedr_paper_mmc_amd.csv``, ``kedr_paper_other_datasets.csv``) hold F1,
kappa and accuracy in % and ECE as a fraction, as the paper prints them; relative claims
(``kedr_paper_relative.csv``) hold differences in percentage points. Methods are matched by
our registry name (``kedr``, ``shaspec``, ``kedr:no-ot``) and datasets by card name; a
column is matched to the metric whose :class:`~bench.metrics.MetricSpec` names it as its
``reference`` (``f1`` -> ``f1_macro``), scaled by its ``reference_scale``. The CSVs ship
with the package (:mod:`bench.resources`); each reader also takes another folder.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.metrics import MetricSpec, metric_specs
from bench.report.tables import in_table_order, rate_label, signed
from bench.resources import shipped_dir

REFERENCE_DIR = shipped_dir("reference")
ABSOLUTE_FILES = ("kedr_paper_mmc_amd.csv", "kedr_paper_other_datasets.csv")
RELATIVE_FILE = "kedr_paper_relative.csv"
COST_FILE = "kedr_paper_cost.csv"
BEST_BASELINE = "best-baseline"
TABLE_ORDER = {"main": 0, "ece": 1}


def reference_columns() -> dict[str, MetricSpec]:
    """Published-CSV column -> the registered metric it holds, in the report's table order."""
    specs = in_table_order([s for s in metric_specs() if s.reference])
    return {s.reference: s for s in specs}


def published(reference_dir: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Absolute published numbers, long: table, method, dataset, rate, metric (our key),
    value (a fraction, like our storage), note, source."""
    frames = [
        pd.read_csv(p) for p in sorted(reference_dir.glob("*.csv")) if p.name in ABSOLUTE_FILES
    ]
    if not frames:
        return pd.DataFrame(columns=["table", "method", "dataset", "rate", "metric", "value"])
    wide = pd.concat(frames, ignore_index=True)
    columns = reference_columns()
    long = wide.melt(
        id_vars=["table", "method", "dataset", "rate", "note", "source"],
        value_vars=[c for c in columns if c in wide.columns],
        var_name="column",
        value_name="value",
    ).dropna(subset=["value"])
    long["value"] = long["value"] * long["column"].map(lambda c: columns[c].reference_scale)
    long["metric"] = long["column"].map(lambda c: columns[c].key)
    return long.drop(columns="column").sort_values(["dataset", "table", "method", "rate", "metric"])


def relative(reference_dir: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Published relative claims: method vs baseline, delta in points, and its relation."""
    path = reference_dir / RELATIVE_FILE
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def cost(reference_dir: Path = REFERENCE_DIR) -> pd.DataFrame:
    """Published parameters, GFLOPs and GPU memory of the training and inference graphs."""
    path = reference_dir / COST_FILE
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def compare(paper: pd.DataFrame, summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Each published number of ``dataset`` that we have a cell for, beside our mean over
    seeds and its bootstrap CI: difference (ours - paper) and whether the paper's number lies
    inside our CI (None when the CI is unavailable)."""
    ours = summary[summary["dataset"] == dataset].set_index(["method", "rate", "metric"])
    published = paper[paper["dataset"] == dataset].assign(
        order=lambda f: f["table"].map(lambda t: TABLE_ORDER.get(t, len(TABLE_ORDER))),
        metric_order=lambda f: f["metric"].map(
            {s.key: i for i, s in enumerate(reference_columns().values())}
        ),
    )
    published = published.sort_values(["order", "method", "metric_order", "rate", "table"])
    # the same number printed in two tables (the full model in an ablation) is shown once
    published = published.drop_duplicates(["method", "rate", "metric", "value"])
    rows = []
    for item in published.itertuples():
        key = (item.method, item.rate, item.metric)
        if key not in ours.index:
            continue
        mine = ours.loc[key]
        has_ci = not math.isnan(mine["ci_low"])
        rows.append(
            {
                "table": item.table,
                "method": item.method,
                "rate": item.rate,
                "metric": item.metric,
                "paper": item.value,
                "ours": mine["mean"],
                "n": int(mine["n"]),
                "ci_low": mine["ci_low"],
                "ci_high": mine["ci_high"],
                "difference": mine["mean"] - item.value,
                "inside_ci": bool(mine["ci_low"] <= item.value <= mine["ci_high"])
                if has_ci
                else None,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "table",
            "method",
            "rate",
            "metric",
            "paper",
            "ours",
            "n",
            "ci_low",
            "ci_high",
            "difference",
            "inside_ci",
        ],
    )


def unmatched(paper: pd.DataFrame, summary: pd.DataFrame, dataset: str) -> list[str]:
    """Published (method, rate) pairs of ``dataset`` that no run here matches, as text."""
    ours = set(zip(summary["method"], summary["rate"], strict=True))
    rows = paper[paper["dataset"] == dataset][["method", "rate"]].drop_duplicates()
    return [
        f"{m} at {rate_label(r)}"
        for m, r in sorted(zip(rows["method"], rows["rate"], strict=True))
        if (m, r) not in ours
    ]


def compare_relative(claims: pd.DataFrame, summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Published relative claims of ``dataset`` beside our difference of means (points), where
    we ran both sides; ``best-baseline`` is our best mean among methods not named kedr*."""
    if claims.empty:
        return pd.DataFrame()
    ours = summary[summary["dataset"] == dataset]
    rows = []
    for claim in claims[claims["dataset"] == dataset].itertuples():
        metric = reference_columns()[claim.metric].key
        cell = ours[(ours["rate"] == claim.rate) & (ours["metric"] == metric)]
        means = dict(zip(cell["method"], cell["mean"], strict=True))
        baselines = {m: v for m, v in means.items() if not m.startswith("kedr")}
        base = max(baselines.values(), default=math.nan)
        if claim.baseline != BEST_BASELINE:
            base = means.get(claim.baseline, math.nan)
        rows.append(
            {
                "table": claim.table,
                "method": claim.method,
                "baseline": claim.baseline,
                "rate": claim.rate,
                "metric": metric,
                "paper": f"{claim.relation} {signed(f'{claim.delta:+g}')}",
                "ours": 100 * (means.get(claim.method, math.nan) - base),
                "note": claim.note,
            }
        )
    return pd.DataFrame(rows)
