"""Report figures, built with matplotlib's object API (``Figure``, no pyplot state) and
rendered by the Agg (PNG) and vector (PDF, SVG) backends.

- Reliability diagrams (Guo et al. 2017, "On Calibration of Modern Neural Networks"; DeGroot
  & Fienberg 1983): top-label confidence in the ECE's equal-width bins (lo, hi], accuracy per bin
  as bars, the gap to the bin's mean confidence shaded, bin counts below; seeds pooled.
- Branch-confidence densities (KEDR, Li et al. 2026, confidence-aware fusion): the
  per-sample confidences ``conf_*`` split by which modality is missing.
- Metric-vs-missing-rate curves: mean over seeds with the bootstrap CI as a band.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from bench.metrics import expected_calibration_error, metric_spec, reliability_bins
from bench.report.tables import CI, headline_metrics, rate_label

DENSITY_BINS = 25


def method_colours(methods: list[str]) -> dict[str, tuple]:
    """A fixed colour per method (sorted by name), the same in every figure."""
    palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {m: palette(i % palette.N) for i, m in enumerate(sorted(methods))}


def probabilities(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (n, K) and integer labels (n,) of a predictions frame."""
    columns = [c for c in predictions.columns if c.startswith("prob_")]
    return predictions[columns].to_numpy(np.float64), predictions["label"].to_numpy(np.int64)


def ece_bins() -> int:
    """The bin count of the registered ``ece`` metric, which the reliability diagrams show."""
    return metric_spec("ece").params["n_bins"]


def _margins(fig: Figure, left: float, right: float, top: float, bottom: float) -> dict:
    """Gridspec margins from margins in inches (a fixed layout: cheaper than constrained
    layout and the same on every run)."""
    width, height = fig.get_size_inches()
    return {
        "left": left / width,
        "right": 1 - right / width,
        "top": 1 - top / height,
        "bottom": bottom / height,
    }


def _reliability_panel(ax, ax_count, predictions: pd.DataFrame, title: str) -> None:
    probs, labels = probabilities(predictions)
    n_bins = ece_bins()
    bins = reliability_bins(probs, labels, n_bins)
    ece = expected_calibration_error(probs, labels, n_bins)
    filled = bins["count"] > 0
    left, width = bins["lower"][filled], 1.0 / n_bins
    accuracy, confidence = bins["accuracy"][filled], bins["confidence"][filled]
    ax.bar(
        left,
        accuracy,
        width,
        align="edge",
        color="tab:blue",
        edgecolor="white",
        linewidth=0.5,
        label="accuracy",
    )
    ax.bar(
        left,
        confidence - accuracy,
        width,
        bottom=accuracy,
        align="edge",
        color="tab:red",
        alpha=0.3,
        hatch="//",
        edgecolor="tab:red",
        linewidth=0.0,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], ls="--", color="black", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xticklabels=[])
    ax.set_title(f"{title}\nECE {100 * ece:.1f} %, n = {len(labels)}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax_count.bar(bins["lower"], bins["count"], width, align="edge", color="0.55")
    ax_count.set(xlim=(0, 1), ylim=(0, 1.15 * bins["count"].max()))
    ax_count.set_yticks([0, int(bins["count"].max())])
    ax_count.tick_params(labelsize=6)


def reliability_figure(
    pooled: dict[tuple[str, float], pd.DataFrame],
    dataset: str,
    methods: list[str],
    rates: list[float],
) -> Figure:
    """A grid of reliability diagrams: one row per method, one column per rate."""
    fig = Figure(figsize=(2.4 * len(rates) + 0.8, 3.0 * len(methods) + 1.1))
    fig.suptitle(
        f"{dataset}: reliability diagrams ({ece_bins()} equal-width bins, top-label; seeds pooled)",
        fontsize=10,
        y=1 - 0.15 / fig.get_size_inches()[1],
        va="top",
    )
    outer = fig.add_gridspec(
        len(methods), len(rates), wspace=0.25, hspace=0.45, **_margins(fig, 0.7, 0.2, 0.85, 0.8)
    )
    handles = None
    for i, method in enumerate(methods):
        for j, rate in enumerate(rates):
            cell = outer[i, j].subgridspec(2, 1, height_ratios=(3.2, 1), hspace=0.12)
            ax, ax_count = fig.add_subplot(cell[0]), fig.add_subplot(cell[1])
            if (method, rate) not in pooled:
                ax.set_axis_off()
                ax_count.set_axis_off()
                ax.set_title(f"{method}, {rate_label(rate)}: no runs", fontsize=8)
                continue
            _reliability_panel(
                ax, ax_count, pooled[(method, rate)], f"{method}, {rate_label(rate)}"
            )
            handles = handles or ax.get_legend_handles_labels()
            if j == 0:
                ax.set_ylabel("accuracy", fontsize=8)
                ax_count.set_ylabel("count", fontsize=7)
            if i == len(methods) - 1:
                ax_count.set_xlabel("confidence", fontsize=8)
    if handles:
        fig.legend(*handles, loc="lower center", ncols=2, fontsize=8, frameon=False)
    return fig


def _branch_modality(column: str) -> int | None:
    """The modality a branch confidence belongs to (``conf_c_2`` -> 2), None if shared."""
    found = re.search(r"(\d+)$", column)
    return int(found.group(1)) if found else None


def missing_pattern(predictions: pd.DataFrame) -> pd.Series:
    """'complete', or which modalities are missing ('m1 missing'), per sample."""
    columns = sorted(c for c in predictions.columns if c.startswith("present_m"))
    present = predictions[columns].astype(bool)
    labels = present.apply(
        lambda row: " + ".join(c.removeprefix("present_") for c, p in row.items() if not p), axis=1
    )
    return labels.map(lambda text: f"{text} missing" if text else "complete")


def confidence_columns(predictions: pd.DataFrame) -> list[str]:
    """The branch-confidence columns, shared branch first."""
    columns = [c for c in predictions.columns if c.startswith("conf_")]
    return sorted(columns, key=lambda c: (_branch_modality(c) is not None, c))


def confidence_figure(predictions: pd.DataFrame, dataset: str, method: str) -> Figure:
    """Densities (histograms) of each branch confidence, one per missing pattern, one legend
    for all panels. A modality's own branch is left out where that modality is missing (its
    confidence is 0 by design)."""
    columns = confidence_columns(predictions)
    pattern = missing_pattern(predictions)
    groups = sorted(pattern.unique(), key=lambda g: (g != "complete", g))
    colours = {g: colormaps["Dark2"](i) for i, g in enumerate(groups)}
    fig = Figure(figsize=(3.6 * len(columns) + 0.6, 3.9))
    fig.suptitle(
        f"{dataset}, {method}: branch confidences by missing modality (all rates and seeds)",
        fontsize=10,
    )
    fig.subplots_adjust(wspace=0.25, **_margins(fig, 0.7, 0.2, 0.75, 0.95))
    edges = np.linspace(0.0, 1.0, DENSITY_BINS + 1)
    for k, column in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), k + 1)
        own = _branch_modality(column)
        for group in groups:
            if own is not None and f"m{own}" in group.removesuffix(" missing").split(" + "):
                continue
            values = predictions.loc[pattern == group, column].to_numpy(np.float64)
            ax.hist(
                values,
                bins=edges,
                density=True,
                histtype="stepfilled",
                alpha=0.2,
                color=colours[group],
            )
            ax.hist(values, bins=edges, density=True, histtype="step", lw=1.4, color=colours[group])
        branch = "shared branch" if own is None else f"m{own} branch"
        ax.set(xlim=(0, 1), xlabel="confidence", title=f"{column.removeprefix('conf_')} ({branch})")
        if k == 0:
            ax.set_ylabel("density")
    handles = [Patch(facecolor=colours[g], edgecolor=colours[g], alpha=0.6) for g in groups]
    labels = [f"{g} (n = {int((pattern == g).sum())})" for g in groups]
    fig.legend(handles, labels, loc="lower center", ncols=len(groups), fontsize=8, frameon=False)
    return fig


def curves_figure(summary: pd.DataFrame, dataset: str, colours: dict[str, tuple]) -> Figure:
    """Metric vs missing rate per method: mean over seeds, bootstrap CI band."""
    part = summary[summary["dataset"] == dataset]
    specs = [metric_spec(m) for m in headline_metrics()]
    fig = Figure(figsize=(3.1 * len(specs) + 0.4, 4.0))
    fig.suptitle(
        f"{dataset}: metrics vs missing rate (mean over seeds, band: {CI} bootstrap CI)",
        fontsize=10,
    )
    fig.subplots_adjust(wspace=0.3, **_margins(fig, 0.6, 0.2, 0.7, 1.0))
    rates = sorted(part["rate"].unique())
    for k, spec in enumerate(specs):
        ax = fig.add_subplot(1, len(specs), k + 1)
        scale = 100 if spec.display == "percent" else 1
        for method, curve in part[part["metric"] == spec.key].groupby("method", sort=True):
            curve = curve.sort_values("rate")
            x = 100 * curve["rate"].to_numpy()
            ax.plot(
                x,
                scale * curve["mean"],
                marker="o",
                ms=3,
                lw=1.4,
                color=colours[method],
                label=method,
            )
            band = curve["ci_low"].notna().to_numpy()
            ax.fill_between(
                x[band],
                scale * curve["ci_low"][band],
                scale * curve["ci_high"][band],
                color=colours[method],
                alpha=0.18,
                lw=0,
            )
        ax.set_xticks([100 * r for r in rates])
        unit = " (%)" if spec.display == "percent" else ""
        ax.set(xlabel="missing rate (%)", title=f"{spec.label}{unit}")
        ax.grid(alpha=0.3)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncols=min(len(labels), 6),
        fontsize=8,
        frameon=False,
    )
    return fig
