"""Two experiments of the same grid, compared cell by cell: each method's F1, ECE and ECE
after temperature scaling, ``after - before`` paired over (dataset, rate, seed).

For a change measured in one harness (e.g. a method's code switched back to its earlier
behaviour by hyper-parameters in the ``before`` run): per method and metric the mean of
each side, the mean paired difference with its t interval, the two-sided Wilcoxon
signed-rank p (Wilcoxon 1945) and its Holm (1979) adjustment over the methods of each
metric, as the report's statistics do within one experiment.

    python -m bench.benchmarks.before_after --results-dir results BEFORE AFTER
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from bench.report.calibration import calibration_frame
from bench.report.collect import collect
from bench.report.power import paired_difference
from bench.report.stats import holm

METRICS = {"f1_macro": "F1", "ece": "ECE", "ece_ts": "ECE (TS)"}
CELL = ["method", "dataset", "rate", "seed"]


def cell_values(experiment: str, results_dir: str) -> pd.DataFrame:
    """F1, ECE and ECE after scaling of every reported cell, indexed by (method, dataset,
    rate, seed)."""
    runs = collect(experiment, results_dir)
    frame = runs.frame.set_index(CELL)
    calibration = calibration_frame(runs).set_index(CELL)
    return pd.DataFrame(
        {"f1_macro": frame["f1_macro"], "ece": frame["ece"], "ece_ts": calibration["ece_ts"]}
    )


def compare(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, method) present in both: n pairs, the two means, the mean
    difference after - before with its 95 % t interval, Wilcoxon p and Holm p."""
    before, after = before.sort_index(), after.sort_index()
    rows = []
    for metric in METRICS:
        for method in sorted(set(before.index.unique(0)) & set(after.index.unique(0))):
            a = after.loc[method, metric]
            b = before.loc[method, metric].reindex(a.index)
            keep = np.isfinite(a.to_numpy()) & np.isfinite(b.to_numpy())
            if keep.sum() < 2:
                continue
            d = paired_difference(a.to_numpy()[keep], b.to_numpy()[keep])
            rows.append(
                {
                    "metric": metric,
                    "method": method,
                    "n": d.n,
                    "before": float(b[keep].mean()),
                    "after": float(a[keep].mean()),
                    "difference": d.mean,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "p_wilcoxon": d.wilcoxon_p,
                }
            )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = out.groupby("metric")["p_wilcoxon"].transform(lambda p: holm(p.to_numpy()))
    return out


def to_markdown(table: pd.DataFrame, before: str, after: str) -> str:
    lines = [
        f"after = {after}, before = {before}; values in % (means over the paired cells)",
        "",
        "| metric | method | pairs | before | after | after − before [95 % CI] | p | p Holm |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {METRICS[row.metric]} | {row.method} | {row.n} | {100 * row.before:.1f} | "
            f"{100 * row.after:.1f} | {100 * row.difference:+.2f} [{100 * row.ci_low:+.2f}, "
            f"{100 * row.ci_high:+.2f}] | {row.p_wilcoxon:.3g} | {row.p_holm:.3g} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--results-dir", default="results")
    args = parser.parse_args()
    before = cell_values(args.before, args.results_dir)
    after = cell_values(args.after, args.results_dir)
    print(to_markdown(compare(before, after), args.before, args.after))


if __name__ == "__main__":
    main()
