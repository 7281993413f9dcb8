"""Paper-style tables from the summaries of :mod:`bench.report.stats`, rendered as Markdown
and LaTeX (booktabs). Values are shown in %, mean ± sample std over seeds; in each column
the best value is bold and the second underlined, ranked on the values as shown (so equal
shown values share a mark), in the metric's direction (ECE: lower is better).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import pandas as pd

from bench.metrics import HIGHER_IS_BETTER

MAIN_METRICS = ("f1_macro", "kappa", "accuracy")
REPORT_METRICS = (*MAIN_METRICS, "ece")
LABELS = {"f1_macro": "F1", "kappa": "κ", "accuracy": "Acc", "ece": "ECE"}
DECIMALS = 1
BEST, SECOND = 1, 2
DASH = "–"
MINUS = "−"
NUMERIC = re.compile(r"^([−+<\-]?[\d.]+([\s%†/]|$)|–$|n/a$)")


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

    def flat_header(self) -> tuple[str, ...]:
        """Column labels with their group label in front, for formats without spans."""
        if not self.groups:
            return self.header
        spans = [label for label, width in self.groups for _ in range(width)]
        return (self.header[0], *(f"{g} {h}" for g, h in zip(spans, self.header[1:], strict=True)))


def numeric_column(texts: list[str]) -> bool:
    """Whether every text of a column is a number as shown (so it is right-aligned)."""
    return all(NUMERIC.match(text) for text in texts)


def rate_label(rate: float) -> str:
    return f"{100 * rate:g} %"


def signed(text: str) -> str:
    """A formatted number with a true minus sign (U+2212), as typeset tables have."""
    return text.replace("-", MINUS)


def percent(value: float, decimals: int = DECIMALS) -> str:
    return DASH if math.isnan(value) else signed(f"{100 * value:.{decimals}f}")


def mean_std(mean: float, std: float, n: int = 0, n_max: int = 0) -> str:
    """'85.0 ± 1.2' in %; the mean alone without a std; '†' when fewer seeds than n_max."""
    if math.isnan(mean):
        return DASH
    text = percent(mean) if math.isnan(std) else f"{percent(mean)} ± {percent(std)}"
    return text + ("†" if n < n_max else "")


def rank_marks(values: list[float], higher_is_better: bool) -> list[int]:
    """BEST for every value equal (as shown) to the best, SECOND for the next distinct value;
    no marks when fewer than two values are finite."""
    shown = [round(100 * v, DECIMALS) if not math.isnan(v) else math.nan for v in values]
    distinct = sorted({v for v in shown if not math.isnan(v)}, reverse=higher_is_better)
    if sum(not math.isnan(v) for v in shown) < 2:
        return [0] * len(values)
    order = {v: rank for rank, v in enumerate(distinct[:2], start=BEST)}
    return [order.get(v, 0) for v in shown]


def _columns_marked(columns: list[list[float]], higher: list[bool]) -> list[tuple[int, ...]]:
    """Per-row marks from per-column values (columns[j][i] is row i of column j)."""
    ranked = [rank_marks(values, h) for values, h in zip(columns, higher, strict=True)]
    return [(0, *row) for row in zip(*ranked, strict=True)]


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
    n_max = int(part["n"].max())
    columns = [(r, m) for r in rates for m in metrics]
    rows, values = [], []
    for method in methods:
        texts, numbers = [method], []
        for key in columns:
            cell = cells.loc[(method, *key)] if (method, *key) in cells.index else None
            mean = math.nan if cell is None else float(cell["mean"])
            std = math.nan if cell is None else float(cell["std"])
            texts.append(mean_std(mean, std, 0 if cell is None else int(cell["n"]), n_max))
            numbers.append(mean)
        rows.append(tuple(texts))
        values.append(numbers)
    by_column = [list(col) for col in zip(*values, strict=True)]
    marks = _columns_marked(by_column, [HIGHER_IS_BETTER[m] for _, m in columns])
    what = ", ".join(LABELS[m] for m in metrics)
    direction = "lower is better" if metrics == ("ece",) else "higher is better"
    return Table(
        name=f"{dataset}_{name}",
        title=f"{dataset}: {what} (%) by missing rate",
        header=("method", *(LABELS[m] for _, m in columns)),
        rows=tuple(rows),
        marks=tuple(marks),
        groups=tuple((rate_label(r), len(metrics)) for r in rates),
        note=f"{_seed_note(part)}; {direction}; best per column in bold, second underlined.",
    )


def main_table(summary: pd.DataFrame, dataset: str) -> Table:
    return metric_table(summary, dataset, MAIN_METRICS, "main")


def ece_table(summary: pd.DataFrame, dataset: str) -> Table:
    table = metric_table(summary, dataset, ("ece",), "ece")
    note = "top-label ECE, 15 equal-width bins (lo, hi] (Guo et al. 2017); " + table.note
    return replace(table, note=note)


def robustness_table(robust: pd.DataFrame, dataset: str) -> Table:
    """Methods x metrics: normalised area under the metric-vs-rate curve."""
    part = robust[robust["dataset"] == dataset]
    cells = part.set_index(["method", "metric"])
    methods = sorted(part["method"].unique())
    n_max = int(part["n"].max())
    rows, by_column = [], [[] for _ in REPORT_METRICS]
    for method in methods:
        texts = [method]
        for j, metric in enumerate(REPORT_METRICS):
            cell = cells.loc[(method, metric)]
            texts.append(mean_std(cell["mean"], cell["std"], int(cell["n"]), n_max))
            by_column[j].append(float(cell["mean"]))
        rows.append(tuple(texts))
    rates = (
        ", ".join(rate_label(float(r)) for r in part["rates"].iloc[0].split()) if len(part) else ""
    )
    return Table(
        name=f"{dataset}_robustness",
        title=f"{dataset}: robustness, area under the metric-vs-missing-rate curve (%)",
        header=("method", *(LABELS[m] for m in REPORT_METRICS)),
        rows=tuple(rows),
        marks=tuple(_columns_marked(by_column, [HIGHER_IS_BETTER[m] for m in REPORT_METRICS])),
        note=(
            f"trapezoid area over the rates every method has ({rates or 'none'}), divided by "
            "their span, so a value is the curve's mean level; per seed, then "
            f"{_seed_note(part)}; best per column in bold, second underlined."
        ),
    )


def ci_table(summary: pd.DataFrame, dataset: str, metric: str = "f1_macro") -> Table:
    """Methods x rates: mean [95 % bootstrap CI] of ``metric`` (%)."""
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
            interval = (
                f"[{percent(cell['ci_low'])}, {percent(cell['ci_high'])}]"
                if not math.isnan(cell["ci_low"])
                else "(CI n/a)"
            )
            texts.append(f"{percent(cell['mean'])} {interval}")
        rows.append(tuple(texts))
    return Table(
        name=f"{dataset}_ci_{metric}",
        title=f"{dataset}: {LABELS[metric]} (%), mean and 95 % bootstrap CI over seeds",
        header=("method", *(rate_label(r) for r in rates)),
        rows=tuple(rows),
        note=(
            "percentile bootstrap of the mean over seeds (Efron 1979), 9999 resamples, seed 0; "
            "n/a with fewer than 3 seeds. With 3 seeds there are only 10 distinct resamples: "
            "read the interval as indicative."
        ),
    )


def published_table(comparison: pd.DataFrame, dataset: str) -> Table:
    """Published numbers beside ours: difference and whether they lie in our CI."""
    rows = []
    for row in comparison.itertuples():
        ci = (
            f"[{percent(row.ci_low, 2)}, {percent(row.ci_high, 2)}]"
            if not math.isnan(row.ci_low)
            else "n/a"
        )
        inside = "n/a" if row.inside_ci is None else ("yes" if row.inside_ci else "no")
        rows.append(
            (
                row.method,
                row.table,
                rate_label(row.rate),
                LABELS[row.metric],
                percent(row.paper, 2),
                percent(row.ours, 2),
                ci,
                signed(f"{100 * row.difference:+.2f}"),
                inside,
            )
        )
    return Table(
        name=f"{dataset}_published",
        title=f"{dataset}: published numbers (KEDR paper) beside ours (%)",
        header=(
            "method",
            "table",
            "rate",
            "metric",
            "paper",
            "ours",
            "our 95 % CI",
            "ours − paper",
            "in CI",
        ),
        rows=tuple(rows),
        note=(
            "paper: Li et al., Information Fusion 136 (2026) 104502, via EVALUATION.md "
            "(results/reference/); ours: mean over seeds with its bootstrap CI."
        ),
    )


def relative_table(claims: pd.DataFrame, dataset: str) -> Table:
    """Published relative claims (points) beside our difference of means."""
    rows = tuple(
        (
            row.method,
            row.baseline,
            rate_label(row.rate),
            LABELS[row.metric],
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


def stats_table(comparison: pd.DataFrame, reference: str) -> Table:
    """Every method against the reference, per metric: paired cells, W/T/L, P(improvement),
    median difference, Wilcoxon signed-rank p and its Holm adjustment."""
    rows = tuple(
        (
            f"{LABELS[row.metric]} ({'higher' if HIGHER_IS_BETTER[row.metric] else 'lower'})",
            row.method,
            str(row.n),
            f"{row.wins}/{row.ties}/{row.losses}",
            DASH if math.isnan(row.prob_improvement) else f"{row.prob_improvement:.2f}",
            DASH
            if math.isnan(row.median_difference)
            else signed(f"{100 * row.median_difference:+.2f}"),
            DASH if math.isnan(row.statistic) else f"{row.statistic:g}",
            format_p(row.p_value),
            format_p(row.p_holm),
        )
        for row in comparison.itertuples()
    )
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
        rows=rows,
        note=(
            f"pairs: cells both finished; W/T/L: the method is better, equal, worse than "
            f"{reference} (in the metric's direction); P(better) = P(X > Y) + 0.5 P(X = Y); "
            "median Δ = method − reference in points; W, p: two-sided Wilcoxon signed-rank "
            "(Wilcoxon 1945), zero differences dropped; p Holm: adjusted over the methods of "
            "each metric (Holm 1979)."
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
        note="as printed in the paper (via EVALUATION.md), on its own backbones and image size.",
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


# rendering -----------------------------------------------------------------------------
def to_markdown(table: Table) -> str:
    """A GitHub-flavoured Markdown table: **best**, <u>second</u>."""

    def cell(text: str, mark: int) -> str:
        text = text.replace("|", "\\|")
        return {BEST: f"**{text}**", SECOND: f"<u>{text}</u>"}.get(mark, text)

    header = table.flat_header()
    right = [j > 0 and numeric_column([row[j] for row in table.rows]) for j in range(len(header))]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if r else ":---" for r in right) + "|",
    ]
    for i, row in enumerate(table.rows):
        lines.append("| " + " | ".join(cell(t, table.mark(i, j)) for j, t in enumerate(row)) + " |")
    return "\n".join(lines)


LATEX_CHARS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "±": r"$\pm$",
    "κ": r"$\kappa$",
    "Δ": r"$\Delta$",
    "–": "--",
    "−": "$-$",
    "†": r"$^\dagger$",
    "<": r"$<$",
    ">": r"$>$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_CHARS.get(c, c) for c in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment: \\textbf best, \\underline second."""

    def cell(text: str, mark: int) -> str:
        text = latex_escape(text)
        return {BEST: rf"\textbf{{{text}}}", SECOND: rf"\underline{{{text}}}"}.get(mark, text)

    columns = len(table.header)
    caption = latex_escape(table.title) + (f". {latex_escape(table.note)}" if table.note else "")
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        rf"\caption{{{caption}}}",
        rf"\label{{tab:{table.name.replace('_', '-')}}}",
        rf"\begin{{tabular}}{{l{'r' * (columns - 1)}}}",
        r"\toprule",
    ]
    if table.groups:
        spans, rules, start = [""], [], 2
        for label, width in table.groups:
            spans.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(label)}}}")
            rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
            start += width
        lines += [" & ".join(spans) + r" \\", " ".join(rules)]
    lines.append(" & ".join(latex_escape(h) for h in table.header) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(table.rows):
        lines.append(" & ".join(cell(t, table.mark(i, j)) for j, t in enumerate(row)) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
