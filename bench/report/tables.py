"""Paper-style tables (:class:`Table`) built from the summaries of :mod:`bench.report.stats`;
:mod:`bench.report.render` writes them as Markdown and LaTeX, :mod:`bench.report.pdf` draws
them. Values are mean ± sample std over seeds, in % or as stored as each metric's
:class:`~bench.metrics.MetricSpec` says; in each column the best value is bold and the
second underlined, ranked on the values as shown (so equal shown values share a mark), in
the metric's direction (ECE: lower is better). Which metrics a table shows, their labels
and directions are read from the metric registry when the table is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pandas as pd

from bench.metrics import MetricSpec, metric_spec, metric_specs
from bench.report.stats import BOOTSTRAP_SEED, CONFIDENCE, MIN_SEEDS_FOR_CI, N_RESAMPLES

DECIMALS = 1  # in %
RAW_EXTRA_DECIMALS = 2  # a value shown as stored gets two more decimals than one in %
BEST, SECOND = 1, 2
DASH = "–"
MINUS = "−"
CI = f"{100 * CONFIDENCE:g} %"


@dataclass(frozen=True)
class Table:
    """A table: ``header`` labels the columns (the first labels the row names), ``groups``
    are (label, width) spans over ``header[1:]``, ``marks`` holds BEST / SECOND / 0 per
    cell of ``rows``."""

    name: str
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    marks: tuple[tuple[int, ...], ...] = ()
    groups: tuple[tuple[str, int], ...] = ()
    note: str = ""

    def mark(self, i: int, j: int) -> int:
        return self.marks[i][j] if self.marks else 0


def in_table_order(specs: list[MetricSpec]) -> list[MetricSpec]:
    """Sorted as report tables show them: by ``order`` (unordered last), then registration."""
    index = {spec.key: i for i, spec in enumerate(metric_specs())}
    return sorted(specs, key=lambda s: (s.order is None, s.order or 0, index[s.key]))


def table_metrics(table: str) -> tuple[str, ...]:
    """The metrics whose spec puts them in report table ``table`` (``main``, ``ece``)."""
    return tuple(s.key for s in in_table_order([s for s in metric_specs() if table in s.tables]))


def headline_metrics() -> tuple[str, ...]:
    """The metrics of the main and ECE tables: those of the robustness table, the paired
    statistics and the curves."""
    return tuple(s.key for s in in_table_order([s for s in metric_specs() if s.tables]))


def rate_label(rate: float) -> str:
    return f"{100 * rate:g} %"


def signed(text: str) -> str:
    """A formatted number with a true minus sign (U+2212), as typeset tables have."""
    return text.replace("-", MINUS)


def percent(value: float, decimals: int = DECIMALS) -> str:
    return DASH if math.isnan(value) else signed(f"{100 * value:.{decimals}f}")


def shown(value: float, display: str = "percent", decimals: int = DECIMALS) -> str:
    """A value in % (``decimals`` decimals) or as stored (two more), per the metric's display."""
    if display == "percent":
        return percent(value, decimals)
    return DASH if math.isnan(value) else signed(f"{value:.{decimals + RAW_EXTRA_DECIMALS}f}")


def mean_std(mean: float, std: float, n: int = 0, n_max: int = 0, display: str = "percent") -> str:
    """'85.0 ± 1.2' (in % unless ``display`` is raw); the mean alone without a std; '†' when
    fewer seeds than n_max."""
    if math.isnan(mean):
        return DASH
    text = shown(mean, display) + ("" if math.isnan(std) else f" ± {shown(std, display)}")
    return text + ("†" if n < n_max else "")


def rank_marks(values: list[float], higher_is_better: bool, display: str = "percent") -> list[int]:
    """BEST for every value equal (as shown) to the best, SECOND for the next distinct value;
    no marks when fewer than two values are finite."""
    scale, decimals = (
        (100, DECIMALS) if display == "percent" else (1, DECIMALS + RAW_EXTRA_DECIMALS)
    )
    shown_values = [round(scale * v, decimals) if not math.isnan(v) else math.nan for v in values]
    distinct = sorted({v for v in shown_values if not math.isnan(v)}, reverse=higher_is_better)
    if sum(not math.isnan(v) for v in shown_values) < 2:
        return [0] * len(values)
    order = {v: rank for rank, v in enumerate(distinct[:2], start=BEST)}
    return [order.get(v, 0) for v in shown_values]


def _columns_marked(columns: list[list[float]], specs: list[MetricSpec]) -> list[tuple[int, ...]]:
    """Per-row marks from per-column values (columns[j][i] is row i of column j)."""
    ranked = [
        rank_marks(values, s.higher_is_better, s.display)
        for values, s in zip(columns, specs, strict=True)
    ]
    return [(0, *row) for row in zip(*ranked, strict=True)]


def _labels(specs: list[MetricSpec]) -> str:
    return ", ".join(s.label for s in specs)


def unit_suffix(specs: list[MetricSpec]) -> str:
    """' (%)' when every metric is shown in %, else which are shown as stored."""
    raw = [s for s in specs if s.display != "percent"]
    if not raw:
        return " (%)"
    return "" if len(raw) == len(specs) else f" (% except {_labels(raw)})"


def _direction(specs: list[MetricSpec]) -> str:
    lower = [s for s in specs if not s.higher_is_better]
    if not lower:
        return "higher is better"
    if len(lower) == len(specs):
        return "lower is better"
    return f"higher is better except {_labels(lower)} (lower)"


def _seed_note(part: pd.DataFrame) -> str:
    low, high = int(part["n"].min()), int(part["n"].max())
    seeds = f"{high} seeds" if low == high else f"{high} seeds († fewer: {low} to {high - 1})"
    return f"mean ± sample std over {seeds}"


def metric_table(summary: pd.DataFrame, dataset: str, metrics: tuple[str, ...], name: str) -> Table:
    """Methods x missing rates; each rate a group of one column per metric."""
    part = summary[(summary["dataset"] == dataset) & summary["metric"].isin(metrics)]
    cells = part.set_index(["method", "rate", "metric"])
    methods = sorted(part["method"].unique())
    rates = sorted(part["rate"].unique())
    specs = [metric_spec(m) for m in metrics]
    n_max = int(part["n"].max())
    columns = [(r, s) for r in rates for s in specs]
    rows, values = [], []
    for method in methods:
        texts, numbers = [method], []
        for rate, spec in columns:
            key = (method, rate, spec.key)
            cell = cells.loc[key] if key in cells.index else None
            mean = math.nan if cell is None else float(cell["mean"])
            std = math.nan if cell is None else float(cell["std"])
            n = 0 if cell is None else int(cell["n"])
            texts.append(mean_std(mean, std, n, n_max, spec.display))
            numbers.append(mean)
        rows.append(tuple(texts))
        values.append(numbers)
    by_column = [list(col) for col in zip(*values, strict=True)]
    return Table(
        name=f"{dataset}_{name}",
        title=f"{dataset}: {_labels(specs)}{unit_suffix(specs)} by missing rate",
        header=("method", *(s.label for _, s in columns)),
        rows=tuple(rows),
        marks=tuple(_columns_marked(by_column, [s for _, s in columns])),
        groups=tuple((rate_label(r), len(specs)) for r in rates),
        note=(
            f"{_seed_note(part)}; {_direction(specs)}; best per column in bold, second underlined."
        ),
    )


def main_table(summary: pd.DataFrame, dataset: str) -> Table:
    return metric_table(summary, dataset, table_metrics("main"), "main")


def ece_table(summary: pd.DataFrame, dataset: str) -> Table:
    table = metric_table(summary, dataset, table_metrics("ece"), "ece")
    bins = metric_spec("ece").params["n_bins"]
    note = f"top-label ECE, {bins} equal-width bins (lo, hi] (Guo et al. 2017); " + table.note
    return replace(table, note=note)


def robustness_table(robust: pd.DataFrame, dataset: str) -> Table:
    """Methods x metrics: normalised area under the metric-vs-rate curve."""
    part = robust[robust["dataset"] == dataset]
    cells = part.set_index(["method", "metric"])
    methods = sorted(part["method"].unique())
    specs = [metric_spec(m) for m in headline_metrics()]
    n_max = int(part["n"].max())
    rows, by_column = [], [[] for _ in specs]
    for method in methods:
        texts = [method]
        for j, spec in enumerate(specs):
            cell = cells.loc[(method, spec.key)]
            texts.append(mean_std(cell["mean"], cell["std"], int(cell["n"]), n_max, spec.display))
            by_column[j].append(float(cell["mean"]))
        rows.append(tuple(texts))
    rates = (
        ", ".join(rate_label(float(r)) for r in part["rates"].iloc[0].split()) if len(part) else ""
    )
    return Table(
        name=f"{dataset}_robustness",
        title=(
            f"{dataset}: robustness, area under the metric-vs-missing-rate curve"
            f"{unit_suffix(specs)}"
        ),
        header=("method", *(s.label for s in specs)),
        rows=tuple(rows),
        marks=tuple(_columns_marked(by_column, specs)),
        note=(
            f"trapezoid area over the rates every method has ({rates or 'none'}), divided by "
            "their span, so a value is the curve's mean level; per seed, then "
            f"{_seed_note(part)}; best per column in bold, second underlined."
        ),
    )


def distinct_resamples(n: int) -> int:
    """Distinct bootstrap resamples (multisets) of n values: C(2n - 1, n)."""
    return math.comb(2 * n - 1, n)


def ci_table(summary: pd.DataFrame, dataset: str, metric: str) -> Table:
    """Methods x rates: mean [bootstrap CI] of ``metric``."""
    spec = metric_spec(metric)
    part = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)]
    cells = part.set_index(["method", "rate"])
    rates = sorted(part["rate"].unique())
    rows = []
    for method in sorted(part["method"].unique()):
        texts = [method]
        for rate in rates:
            if (method, rate) not in cells.index:
                texts.append(DASH)
                continue
            cell = cells.loc[(method, rate)]
            low, high = (shown(cell[c], spec.display) for c in ("ci_low", "ci_high"))
            interval = f"[{low}, {high}]" if not math.isnan(cell["ci_low"]) else "(CI n/a)"
            texts.append(f"{shown(cell['mean'], spec.display)} {interval}")
        rows.append(tuple(texts))
    return Table(
        name=f"{dataset}_ci_{metric}",
        title=(
            f"{dataset}: {spec.label}{unit_suffix([spec])}, mean and {CI} bootstrap CI over seeds"
        ),
        header=("method", *(rate_label(r) for r in rates)),
        rows=tuple(rows),
        note=(
            f"percentile bootstrap of the mean over seeds (Efron 1979), {N_RESAMPLES} "
            f"resamples, seed {BOOTSTRAP_SEED}; n/a with fewer than {MIN_SEEDS_FOR_CI} seeds. "
            f"With {MIN_SEEDS_FOR_CI} seeds there are only "
            f"{distinct_resamples(MIN_SEEDS_FOR_CI)} distinct resamples: read the interval "
            "as indicative."
        ),
    )


def all_metrics_table(summary: pd.DataFrame, dataset: str) -> Table:
    """Every registered metric (columns, in registration order) for each missing rate and
    method (rows), mean ± std over seeds; best and second marked among the methods of each
    rate. Metrics that no run of ``dataset`` recorded are left out and named in the note."""
    part = summary[summary["dataset"] == dataset]
    recorded = set(part.loc[part["n"] > 0, "metric"])
    specs = [s for s in metric_specs() if s.key in recorded]
    absent = [s for s in metric_specs() if s.key not in recorded]
    part = part[part["metric"].isin(recorded)]
    cells = part.set_index(["rate", "method", "metric"])
    n_max = int(part["n"].max())
    rows, marks = [], []
    for rate, at_rate in part.groupby("rate", sort=True):
        methods = sorted(at_rate["method"].unique())
        grid = [[cells.loc[(rate, m, s.key)] for s in specs] for m in methods]
        ranked = [
            rank_marks([float(row[j]["mean"]) for row in grid], s.higher_is_better, s.display)
            for j, s in enumerate(specs)
        ]
        for i, (method, row) in enumerate(zip(methods, grid, strict=True)):
            texts = (
                mean_std(c["mean"], c["std"], int(c["n"]), n_max, s.display)
                for c, s in zip(row, specs, strict=True)
            )
            rows.append((rate_label(rate), method, *texts))
            marks.append((0, 0, *(r[i] for r in ranked)))
    raw = [s for s in specs if s.display != "percent"]
    unit = f"in % except {_labels(raw)} (as stored)" if raw else "in %"
    not_recorded = f"; not recorded by these runs: {_labels(absent)}" if absent else ""
    return Table(
        name=f"{dataset}_all_metrics",
        title=f"{dataset}: every metric by missing rate and method",
        header=("rate", "method", *(s.label for s in specs)),
        rows=tuple(rows),
        marks=tuple(marks),
        note=(
            f"{_seed_note(part)}; {unit}; {_direction(specs)}; best per column among the "
            f"methods of each rate in bold, second underlined{not_recorded}."
        ),
    )


def _difference(value: float, display: str) -> str:
    """ours − theirs in points (for a metric in %) or as stored, with a sign."""
    if display == "percent":
        return signed(f"{100 * value:+.2f}")
    return signed(f"{value:+.{2 + RAW_EXTRA_DECIMALS}f}")


def published_table(comparison: pd.DataFrame, dataset: str) -> Table:
    """Published numbers beside ours: difference and whether they lie in our CI."""
    rows = []
    for row in comparison.itertuples():
        spec = metric_spec(row.metric)
        ci = (
            f"[{shown(row.ci_low, spec.display, 2)}, {shown(row.ci_high, spec.display, 2)}]"
            if not math.isnan(row.ci_low)
            else "n/a"
        )
        inside = "n/a" if row.inside_ci is None else ("yes" if row.inside_ci else "no")
        rows.append(
            (
                row.method,
                row.table,
                rate_label(row.rate),
                spec.label,
                shown(row.paper, spec.display, 2),
                shown(row.ours, spec.display, 2),
                ci,
                _difference(row.difference, spec.display),
                inside,
            )
        )
    specs = [metric_spec(m) for m in dict.fromkeys(comparison["metric"])]
    return Table(
        name=f"{dataset}_published",
        title=f"{dataset}: published numbers (KEDR paper) beside ours{unit_suffix(specs)}",
        header=(
            "method",
            "table",
            "rate",
            "metric",
            "paper",
            "ours",
            f"our {CI} CI",
            "ours − paper",
            "in CI",
        ),
        rows=tuple(rows),
        note=(
            "paper: Li et al., Information Fusion 136 (2026) 104502 (results/reference/, "
            "transcribed from a summary of the paper); ours: mean over seeds with its bootstrap CI."
        ),
    )


def relative_table(claims: pd.DataFrame, dataset: str) -> Table:
    """Published relative claims (points) beside our difference of means."""
    rows = tuple(
        (
            row.method,
            row.baseline,
            rate_label(row.rate),
            metric_spec(row.metric).label,
            row.paper,
            DASH if math.isnan(row.ours) else signed(f"{row.ours:+.2f}"),
            row.note,
        )
        for row in claims.itertuples()
    )
    return Table(
        name=f"{dataset}_published_relative",
        title=f"{dataset}: published differences between methods (points)",
        header=("method", "vs", "rate", "metric", "paper", "ours", "what"),
        rows=rows,
        note=(
            "ours: difference of means over seeds; best-baseline is our best method not "
            "named kedr*."
        ),
    )


def format_p(p: float) -> str:
    return DASH if math.isnan(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def comparison_cells(row, median: str) -> tuple[str, ...]:
    """The cells of one paired comparison (a row of ``stats.compare_to_reference``) after
    its method: pairs, W/T/L, P(better), the median difference as ``median`` formats it,
    W, p and p Holm."""
    return (
        str(row.n),
        f"{row.wins}/{row.ties}/{row.losses}",
        DASH if math.isnan(row.prob_improvement) else f"{row.prob_improvement:.2f}",
        DASH if math.isnan(row.median_difference) else median,
        DASH if math.isnan(row.statistic) else f"{row.statistic:g}",
        format_p(row.p_value),
        format_p(row.p_holm),
    )


def stats_table(comparison: pd.DataFrame, reference: str) -> Table:
    """Every method against the reference, per metric: paired cells, W/T/L, P(improvement),
    median difference, Wilcoxon signed-rank p and its Holm adjustment."""
    rows = []
    for row in comparison.itertuples():
        spec = metric_spec(row.metric)
        rows.append(
            (
                f"{spec.label} ({'higher' if spec.higher_is_better else 'lower'})",
                row.method,
                *comparison_cells(row, _difference(row.median_difference, spec.display)),
            )
        )
    raw = [metric_spec(m) for m in dict.fromkeys(comparison["metric"])]
    raw = [s for s in raw if s.display != "percent"]
    units = f" ({_labels(raw)}: as stored)" if raw else ""
    return Table(
        name="stats",
        title=f"Each method against {reference}, paired over (dataset, rate, seed)",
        header=(
            "metric (better)",
            "method",
            "pairs",
            "W/T/L",
            "P(better)",
            "median Δ",
            "W",
            "p",
            "p Holm",
        ),
        rows=tuple(rows),
        note=(
            f"pairs: cells both finished; W/T/L: the method is better, equal, worse than "
            f"{reference} (in the metric's direction); P(better) = P(X > Y) + 0.5 P(X = Y); "
            f"median Δ = method − reference in points{units}; W, p: two-sided Wilcoxon "
            "signed-rank (Wilcoxon 1945), zero differences dropped; p Holm: adjusted over the "
            "methods of each metric (Holm 1979)."
        ),
    )


def efficiency_table(profiles: pd.DataFrame) -> Table:
    """Cost per method from ``bench profile --save`` files."""
    rows = tuple(
        (
            row.method,
            f"{row.params_train / 1e6:.2f}",
            f"{row.params_infer / 1e6:.2f}",
            f"{row.flops_train / 1e9:.3f}",
            f"{row.flops_infer / 1e9:.3f}",
            f"{1000 * row.train_step_s:.1f}",
            f"{row.peak_mem_mb:.0f}",
        )
        for row in profiles.sort_values("method").itertuples()
    )
    return Table(
        name="efficiency",
        title="Efficiency (bench profile)",
        header=(
            "method",
            "params train (M)",
            "params infer (M)",
            "GFLOPs train",
            "GFLOPs infer",
            "train step (ms)",
            "peak mem (MiB)",
        ),
        rows=rows,
        note="training graph = forward + loss + backward; inference graph = eval forward.",
    )


def cost_table(paper_cost: pd.DataFrame) -> Table:
    rows = tuple(
        (
            row.method,
            row.graph,
            f"{row.params_m:g}",
            f"{row.gflops:g}",
            DASH if math.isnan(row.gpu_mem_gb) else f"{row.gpu_mem_gb:g}",
        )
        for row in paper_cost.itertuples()
    )
    return Table(
        name="published_cost",
        title="Published cost (KEDR paper)",
        header=("method", "graph", "params (M)", "GFLOPs", "GPU memory (GB)"),
        rows=rows,
        note="as printed in the paper (results/reference/), on its own backbones and image size.",
    )


def utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


PLATFORM_FIELDS = (
    "device_name",
    "device",
    "cpu_model",
    "torch_threads",
    "platform",
    "python_version",
    "torch_version",
    "cuda_version",
    "cudnn_version",
)


def platform_text(run: dict) -> str:
    """One run's platform in words, from its tags (:data:`bench.tracking.PLATFORM_TAGS`)."""
    tags = {key: str(run.get(key, "unknown")) for key in PLATFORM_FIELDS}
    if tags["python_version"] == "unknown":
        return "not recorded (the run predates platform tags)"
    cpu = "" if tags["cpu_model"] == tags["device_name"] else f", CPU {tags['cpu_model']}"
    threads = f"{tags['torch_threads']} torch thread{'' if tags['torch_threads'] == '1' else 's'}"
    return (
        f"{tags['device_name']} ({tags['device']}){cpu}, {threads}, "
        f"{tags['platform']}, Python {tags['python_version']}, torch {tags['torch_version']}, "
        f"CUDA {tags['cuda_version']}, cuDNN {tags['cudnn_version']}"
    )


def provenance_table(frame: pd.DataFrame) -> Table:
    """Every reported run: cell, run id, cell hash, git commit, end time and platform; the
    platforms (P1, P2, ... in order of first appearance) are spelt out in the note."""
    runs = frame.to_dict(orient="records")
    platforms = list(dict.fromkeys(platform_text(run) for run in runs))
    label = {text: f"P{i}" for i, text in enumerate(platforms, start=1)}
    rows = tuple(
        (
            run["method"],
            run["dataset"],
            rate_label(run["rate"]),
            str(run["seed"]),
            run["run_id"],
            run["cell_hash"],
            run["git_commit"][:12],
            utc(run["end_time"]),
            label[platform_text(run)],
        )
        for run in runs
    )
    return Table(
        name="provenance",
        title="Provenance of every reported run",
        header=(
            "method",
            "dataset",
            "rate",
            "seed",
            "run id",
            "cell hash",
            "git commit",
            "ended",
            "platform",
        ),
        rows=rows,
        note="Platforms: " + "; ".join(f"{label[t]} = {t}" for t in platforms) + ".",
    )
