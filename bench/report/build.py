"""``bench report``: tables, statistics, figures and a PDF regenerated from what the tracking
store holds for one experiment (metrics and artifacts of its FINISHED cells); nothing is
retrained. Rebuilding from the same runs gives byte-identical files.

The report is first assembled as a list of blocks (headings, paragraphs, tables, figures),
then written as Markdown, LaTeX tables, CSV files, PNG/SVG figures and one PDF.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from bench.errors import ConfigError, DataError, UnknownNameError
from bench.metrics import metric_keys, metric_spec, metric_specs
from bench.report import figures, reference, stats
from bench.report.calibration import (
    calibration_frame,
    calibration_table,
    monitor_text,
    selection_table,
    ts_predictions,
    ts_stats_table,
)
from bench.report.claims import (
    CLAIMS_FILE,
    claim_sections,
    claims_frame,
    evaluate_claims,
    load_claims,
    planner_for,
)
from bench.report.collect import SETTING, ExperimentRuns, collect
from bench.report.pdf import Subheading, table_pages, text_pages, write_pdf
from bench.report.render import to_latex, to_markdown
from bench.report.tables import (
    CI,
    Table,
    all_metrics_table,
    ci_table,
    cost_table,
    ece_table,
    efficiency_table,
    headline_metrics,
    main_table,
    provenance_table,
    published_table,
    rate_label,
    relative_table,
    robustness_table,
    stats_table,
    unit_suffix,
    utc,
)
from bench.report.variance import seed_variance, variance_table
from bench.tracking import Tracker

log = logging.getLogger(__name__)

FORMATS = ("md", "tex", "csv", "pdf")
PRIMARY = "f1_macro"
PROFILE_KEYS = (
    "method",
    "params_train",
    "params_infer",
    "flops_train",
    "flops_infer",
    "train_step_s",
    "peak_mem_mb",
)
RC = {"svg.hashsalt": "kedr-bench", "font.size": 9}  # fixed SVG ids: reproducible files
PNG_DPI = 150
RELIABILITY_ROWS = 4  # methods per reliability figure (one PDF page)


def metric_definitions() -> list[str]:
    """One line per registered metric (its spec's label, key, direction, display and
    definition), then how tables, intervals, robustness and statistics are computed; every
    number is read from the specs and the constants of :mod:`bench.report.stats`."""
    lines = []
    for spec in metric_specs():
        primary = ", the primary metric" if spec.key == PRIMARY else ""
        better = "higher" if spec.higher_is_better else "lower"
        shown = "in %" if spec.display == "percent" else "as stored"
        lines.append(
            f"- {spec.label} ({spec.key}{primary}; {better} is better; {shown}): {spec.describe()}"
        )
    raw = ", ".join(s.label for s in metric_specs() if s.display != "percent")
    return [
        *lines,
        "- Tables: mean ± sample standard deviation (ddof 1) over seeds, in %"
        + (f" (except {raw}, as stored)" if raw else "")
        + "; best per column in bold, second underlined, ranked on the values as shown.",
        f"- {CI} CI: percentile bootstrap of the mean over seeds (Efron 1979), "
        f"{stats.N_RESAMPLES} resamples, seed {stats.BOOTSTRAP_SEED}; unavailable with fewer "
        f"than {stats.MIN_SEEDS_FOR_CI} seeds.",
        "- Robustness: trapezoid area under the metric-vs-missing-rate curve over the rates "
        "every method has, divided by their span (the curve's mean level), per seed.",
        "- Statistics: two-sided Wilcoxon signed-rank test (Wilcoxon 1945) of each method "
        "against the reference over the paired (dataset, rate, seed) cells, zero differences "
        "dropped, mid-ranks for ties, exact p-value over all sign patterns up to "
        f"{stats.EXACT_MAX_PAIRS} pairs (normal approximation beyond); Holm (1979) correction "
        "over the methods, per metric; win/tie/loss counts; probability of improvement "
        "P(X > Y) + 0.5 P(X = Y) over the paired cells.",
    ]


@dataclass(frozen=True)
class Heading:
    text: str
    level: int


@dataclass(frozen=True)
class Paragraph:
    text: str


@dataclass(frozen=True)
class FigureBlock:
    stem: str
    figure: Figure
    caption: str


Block = Heading | Paragraph | Table | FigureBlock


def build_report(
    experiment: str,
    results_dir: str | Path = "results",
    out: str | Path | None = None,
    formats: tuple[str, ...] = FORMATS,
    reference_method: str | None = None,
    reference_dir: Path = reference.REFERENCE_DIR,
    tracking_uri: str | None = None,
) -> list[Path]:
    """Write the report of ``experiment`` under ``out`` (default ``reports/<experiment>``)
    and return the paths written, sorted. Figures (PNG and SVG) are always written."""
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ConfigError(
            f"unknown report format(s) {', '.join(unknown)}: choose from {','.join(FORMATS)}"
        )
    runs = collect(experiment, results_dir, tracking_uri)
    out = Path(out) if out is not None else Path("reports") / experiment
    with matplotlib.rc_context(RC):
        blocks, frames = _assemble(runs, Path(results_dir), reference_method, reference_dir)
        return sorted(_write(blocks, frames, out, formats, runs))


def _assemble(
    runs: ExperimentRuns, results_dir: Path, requested: str | None, reference_dir: Path
) -> tuple[list[Block], dict[str, pd.DataFrame]]:
    """Compute every table, statistic and figure; return the blocks and the CSV frames."""
    frame = runs.frame
    methods = sorted(frame["method"].unique())
    ref = stats.default_reference(frame, requested, PRIMARY)
    if ref not in methods:
        raise UnknownNameError(
            f"--reference {ref!r} did not run in experiment {runs.experiment!r}: choose one of "
            f"{', '.join(methods)}"
        )
    headline = headline_metrics()
    summary = stats.summarise(frame, headline)
    every_metric = stats.summarise(frame, metric_keys())
    robust = stats.robustness(frame, headline)
    comparisons = {
        m: stats.compare_to_reference(frame, ref, m, metric_spec(m).higher_is_better)
        for m in headline
    }
    paper = reference.published(reference_dir)
    claims = reference.relative(reference_dir)
    predictions = {run_id: runs.predictions(run_id) for run_id in frame["run_id"]}
    calibration = calibration_frame(runs)
    scaled = {r: p for r in frame["run_id"] if (p := ts_predictions(runs, r)) is not None}
    colours = figures.method_colours(methods)

    blocks: list[Block] = [Heading(f"Benchmark report: {runs.experiment}", 1)]
    blocks += _overview(runs, ref)
    published_frames, relative_frames = [], []
    for dataset in sorted(frame["dataset"].unique()):
        part = frame[frame["dataset"] == dataset]
        comparison = reference.compare(paper, summary, dataset)
        published_frames.append(comparison.assign(dataset=dataset))
        relation = reference.compare_relative(claims, summary, dataset)
        relative_frames.append(relation.assign(dataset=dataset))
        blocks += [
            Heading(f"Dataset: {dataset}", 2),
            Paragraph(
                f"{len(part)} FINISHED cells: methods {_join(part['method'])}; missing rates "
                f"{_join(part['rate'], rate_label)}; seeds {_join(part['seed'])}."
            ),
            main_table(summary, dataset),
            ece_table(summary, dataset),
            *_calibration(calibration, scaled, part, dataset),
            robustness_table(robust, dataset),
            ci_table(summary, dataset, PRIMARY),
            all_metrics_table(every_metric, dataset),
            _curves(summary, dataset, colours),
            *_reliability(part, predictions, dataset),
            *_confidences(part, predictions, dataset),
            *_published(paper, summary, comparison, relation, dataset),
        ]
    blocks.append(Heading(f"Statistics against {ref}", 2))
    comparison = pd.concat(comparisons.values(), ignore_index=True)
    ts_comparison = stats.compare_to_reference(calibration, ref, "ece_ts", False)
    if comparison.empty:  # one method finished: nothing to compare it with
        blocks.append(Paragraph(f"Only {ref} finished cells: no other method to compare."))
    else:
        blocks += [stats_table(comparison, ref), ts_stats_table(ts_comparison, ref)]
    claim_blocks, claim_frames = _claims_and_variance(runs, results_dir, reference_dir, predictions)
    blocks += claim_blocks
    blocks += _efficiency(results_dir, reference.cost(reference_dir), runs.tracker)
    blocks += [Heading("Provenance", 2), Paragraph(_comparability(runs)), provenance_table(frame)]

    frames = {
        "summary": summary,
        "summary_all_metrics": every_metric,
        "robustness": robust,
        f"stats_vs_{ref.replace(':', '_')}": comparison,
        "published_comparison": pd.concat(published_frames, ignore_index=True),
        "calibration": calibration,
        f"stats_ece_ts_vs_{ref.replace(':', '_')}": ts_comparison,
        "runs": frame,
    }
    relation = pd.concat(relative_frames, ignore_index=True)
    if not relation.empty:
        frames["published_relative"] = relation
    frames.update(claim_frames)
    return blocks, frames


def _comparability(runs: ExperimentRuns) -> str:
    """Whether every reported run shares one comparability key (commit, torch version,
    device type, CPU threads); a mix is also logged as a warning."""
    keys = runs.comparability
    if len(keys) == 1:
        return (
            f"Comparability: every reported run shares {next(iter(keys))}, so rerunning a cell "
            "under it reproduces its numbers on the same platform."
        )
    listed = "; ".join(f"{key} ({n} runs)" for key, n in keys.items())
    text = (
        f"Comparability WARNING: the tables mix {len(keys)} settings under which a cell can "
        f"give other numbers: {listed}."
    )
    log.warning("%s", text)
    return text


def _overview(runs: ExperimentRuns, ref: str) -> list[Block]:
    frame = runs.frame
    setting = ", ".join(f"{k} = {frame[k].iloc[0]}" for k in SETTING)
    skipped = ", ".join(f"{n} {s}" for s, n in runs.not_finished.items())
    text = [
        f"Experiment {runs.experiment!r}: {len(frame)} FINISHED cells, newest run ended "
        f"{utc(runs.newest_end_ms)} (the report's date). Methods: {_join(frame['method'])}. "
        f"Datasets: {_join(frame['dataset'])}. Missing rates: {_join(frame['rate'], rate_label)}. "
        f"Seeds: {_join(frame['seed'])}.",
        "Everything here is regenerated from the MLflow store (test metrics and saved "
        "per-sample predictions); nothing is retrained. Only FINISHED cells count"
        + (f"; not reported: {skipped} cells." if skipped else ".")
        + (
            f" {runs.superseded} older FINISHED runs of cells whose recipe changed since "
            "were superseded by the newest."
            if runs.superseded
            else ""
        ),
        f"Code: git commit(s) {_join(frame['git_commit'].str[:12])}. Reference method for the "
        f"statistics: {ref}.",
    ]
    protocol = [
        f"Missingness: {setting}. Masks are a pure function of (dataset, split, n, rate, "
        "mechanism, modality, seed), so every method sees the same masks and comparisons are "
        "paired. Model selection uses the validation split only; the test split is scored "
        "once. Metrics are computed from saved class probabilities.",
        *metric_definitions(),
    ]
    return (
        [Paragraph(t) for t in text]
        + [Heading("Protocol and metrics", 2)]
        + [Paragraph(t) for t in protocol]
    )


def _join(values: pd.Series, fmt=str) -> str:
    """The distinct values, sorted, formatted and comma-separated."""
    return ", ".join(fmt(v) for v in sorted(set(values)))


def _pool(part: pd.DataFrame, predictions: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([predictions[r] for r in part["run_id"]], ignore_index=True)


def _curves(summary: pd.DataFrame, dataset: str, colours: dict[str, tuple]) -> FigureBlock:
    specs = [metric_spec(m) for m in headline_metrics()]
    return FigureBlock(
        f"{dataset}_curves",
        figures.curves_figure(summary, dataset, colours),
        f"{dataset}: {', '.join(s.label for s in specs)}{unit_suffix(specs)} against "
        f"the missing rate, one line per method (mean over seeds), with the {CI} bootstrap CI "
        f"as a band where there are {stats.MIN_SEEDS_FOR_CI} or more seeds.",
    )


def _reliability(
    part: pd.DataFrame, predictions: dict[str, pd.DataFrame], dataset: str
) -> list[FigureBlock]:
    """Reliability diagrams, at most RELIABILITY_ROWS methods a figure (a page stays legible)."""
    pooled = {key: _pool(cell, predictions) for key, cell in part.groupby(["method", "rate"])}
    methods = sorted(part["method"].unique())
    rates = sorted(part["rate"].unique())
    chunks = [methods[i : i + RELIABILITY_ROWS] for i in range(0, len(methods), RELIABILITY_ROWS)]
    caption = (
        f"{dataset}: reliability diagrams per method (rows) and missing rate (columns), the "
        "test predictions of all seeds pooled. Blue bars: accuracy per confidence bin; red "
        "hatched: gap to the bin's mean confidence; dashed: perfect calibration; grey: samples "
        "per bin. The ECE in each title is that of the pooled predictions."
    )
    return [
        FigureBlock(
            f"{dataset}_reliability" + (f"_{k + 1}" if len(chunks) > 1 else ""),
            figures.reliability_figure(pooled, dataset, chunk, rates),
            caption + (f" Part {k + 1} of {len(chunks)}." if len(chunks) > 1 else ""),
        )
        for k, chunk in enumerate(chunks)
    ]


def _calibration(
    calibration: pd.DataFrame,
    scaled: dict[str, pd.DataFrame],
    part: pd.DataFrame,
    dataset: str,
) -> list[Block]:
    """ECE before and after temperature scaling, the kept epochs and their monitor, and the
    reliability diagrams of the temperature-scaled predictions."""
    blocks: list[Block] = [
        Heading(f"{dataset}: calibration and model selection", 3),
        Paragraph(monitor_text(calibration[calibration["dataset"] == dataset])),
        calibration_table(calibration, dataset),
        selection_table(calibration, dataset),
    ]
    cells = {key: cell for key, cell in part.groupby(["method", "rate"])}
    pooled = {
        key: _pool(cell, scaled)
        for key, cell in cells.items()
        if set(cell["run_id"]) <= set(scaled)
    }
    if not pooled:
        return blocks
    methods = sorted({method for method, _ in pooled})
    rates = sorted(part["rate"].unique())
    chunks = [methods[i : i + RELIABILITY_ROWS] for i in range(0, len(methods), RELIABILITY_ROWS)]
    for k, chunk in enumerate(chunks):
        blocks.append(
            FigureBlock(
                f"{dataset}_reliability_ts" + (f"_{k + 1}" if len(chunks) > 1 else ""),
                figures.reliability_figure(
                    pooled, f"{dataset} after temperature scaling", chunk, rates
                ),
                f"{dataset}: reliability diagrams of the temperature-scaled test predictions "
                "(each run's T fitted on its validation split), drawn as the raw diagrams are."
                + (f" Part {k + 1} of {len(chunks)}." if len(chunks) > 1 else ""),
            )
        )
    return blocks


def _confidences(
    part: pd.DataFrame, predictions: dict[str, pd.DataFrame], dataset: str
) -> list[Block]:
    blocks: list[Block] = []
    for method, cells in part.groupby("method", sort=True):
        pooled = _pool(cells, predictions)
        if not figures.confidence_columns(pooled):
            continue
        blocks.append(
            FigureBlock(
                f"{dataset}_confidence_{method.replace(':', '_')}",
                figures.confidence_figure(pooled, dataset, method),
                f"{dataset}, {method}: density of each branch's confidence over all rates and "
                "seeds, one line per missing pattern; a modality's own branch is not drawn "
                "where that modality is missing (its confidence is 0 by design).",
            )
        )
    if not blocks:
        blocks.append(
            Paragraph(
                f"Branch confidences: no method of {dataset} saved conf_* columns "
                "(KEDR does), so there is no confidence-density figure."
            )
        )
    return blocks


def _published(
    paper: pd.DataFrame,
    summary: pd.DataFrame,
    comparison: pd.DataFrame,
    relation: pd.DataFrame,
    dataset: str,
) -> list[Block]:
    if dataset not in set(paper["dataset"]) and relation.empty:
        return [Paragraph(f"Published numbers: the KEDR paper reports none for {dataset}.")]
    blocks: list[Block] = []
    if comparison.empty:
        blocks.append(
            Paragraph(f"Published numbers for {dataset} exist, but no run here matches them.")
        )
    else:
        blocks.append(published_table(comparison, dataset))
    missing = reference.unmatched(paper, summary, dataset)
    if missing:
        blocks.append(Paragraph(f"Published but not run here: {', '.join(missing)}."))
    if not relation.empty:
        blocks.append(relative_table(relation, dataset))
    return blocks


# claims and variance ---------------------------------------------------------------------
def _claims_and_variance(
    runs: ExperimentRuns,
    results_dir: Path,
    reference_dir: Path,
    predictions: dict[str, pd.DataFrame],
) -> tuple[list[Block], dict[str, pd.DataFrame]]:
    """The published claims tested on these runs (as ``bench claims`` does), and where the
    variance of the primary metric comes from (seed axes, test-set bootstrap)."""
    blocks: list[Block] = [Heading("Published claims, tested", 2)]
    frames = {}
    path = reference_dir / CLAIMS_FILE
    if path.is_file():
        results = evaluate_claims(runs.frame, load_claims(path), planner_for(runs, results_dir))
        sections = claim_sections(results, runs.frame["dataset"])
        blocks += [Paragraph(s) if isinstance(s, str) else s for s in sections]
        frames["claims"] = claims_frame(results)
    else:
        blocks.append(Paragraph(f"No claims file {path}: nothing to test."))
    spread = seed_variance(runs.frame, PRIMARY, predictions.__getitem__)
    blocks.append(Heading("Where the variance comes from", 2))
    blocks += [variance_table(spread, d) for d in sorted(spread["dataset"].unique())]
    frames["variance"] = spread
    return blocks, frames


def stored_profiles(tracker: Tracker) -> dict[str, dict]:
    """The newest FINISHED run of each method in the store's ``profile`` experiment (as
    ``bench profile --save`` records it), by method."""
    experiment_id = tracker.experiment_id("profile", create=False)
    found: dict[str, dict] = {}
    for run in [] if experiment_id is None else tracker.find_runs(experiment_id, status="FINISHED"):
        values = {**run.params, **run.metrics}  # oldest first: the newest stays
        if all(key in values for key in PROFILE_KEYS):
            found[run.tags.get("profile_method", values["method"])] = values
    return found


def load_profiles(results_dir: Path, tracker: Tracker | None = None) -> pd.DataFrame:
    """``<results_dir>/profile/*.json`` as written by ``bench profile --save``, and the
    profiles recorded in ``tracker``'s store for methods without a file, by method."""
    rows = []
    for path in sorted((results_dir / "profile").glob("*.json")):
        data = json.loads(path.read_text())
        missing = [k for k in PROFILE_KEYS if k not in data]
        if missing:
            raise DataError(
                f"profile file {str(path)!r} lacks {', '.join(missing)}: rewrite it with "
                "bench profile --method M --save"
            )
        rows.append({k: data[k] for k in PROFILE_KEYS})
    filed = {row["method"] for row in rows}
    stored = stored_profiles(tracker) if tracker is not None else {}
    for method, values in sorted(stored.items()):
        if method not in filed:
            row = {k: values[k] for k in PROFILE_KEYS}
            row.update({k: int(row[k]) for k in ("params_train", "params_infer")})
            rows.append(row)
    frame = pd.DataFrame(rows, columns=list(PROFILE_KEYS))
    return frame.sort_values("method", ignore_index=True)


def _efficiency(results_dir: Path, paper_cost: pd.DataFrame, tracker: Tracker) -> list[Block]:
    profiles = load_profiles(results_dir, tracker)
    if profiles.empty:
        return [
            Heading("Efficiency", 2),
            Paragraph(
                f"No profile files in {results_dir / 'profile'} nor profile runs in the store: "
                f"run bench profile --method M --save --results-dir {results_dir} for each "
                "method to add the efficiency table."
            ),
        ]
    blocks: list[Block] = [Heading("Efficiency", 2), efficiency_table(profiles)]
    if not paper_cost.empty:
        blocks.append(cost_table(paper_cost))
    return blocks


# writing -------------------------------------------------------------------------------
def _write(
    blocks: list[Block],
    frames: dict[str, pd.DataFrame],
    out: Path,
    formats: tuple[str, ...],
    runs: ExperimentRuns,
) -> list[Path]:
    (out / "figures").mkdir(parents=True, exist_ok=True)
    written = []
    for block in blocks:
        if isinstance(block, FigureBlock):
            png = out / "figures" / f"{block.stem}.png"
            svg = png.with_suffix(".svg")
            block.figure.savefig(png, dpi=PNG_DPI)
            block.figure.savefig(svg, metadata={"Date": None})
            written += [png, svg]
    if "md" in formats:
        path = out / "report.md"
        path.write_text(_markdown(blocks))
        written.append(path)
    if "tex" in formats:
        (out / "tables").mkdir(exist_ok=True)
        for table in (b for b in blocks if isinstance(b, Table)):
            path = out / "tables" / f"{table.name}.tex"
            path.write_text(to_latex(table))
            written.append(path)
    if "csv" in formats:
        (out / "csv").mkdir(exist_ok=True)
        for name, frame in frames.items():
            path = out / "csv" / f"{name}.csv"
            frame.to_csv(path, index=False, float_format="%.6g")
            written.append(path)
    if "pdf" in formats:
        path = out / "report.pdf"
        write_pdf(path, _pages(blocks), f"kedr-bench report: {runs.experiment}")
        written.append(path)
    log.info("report of %s: %d files in %s", runs.experiment, len(written), out)
    return written


def _markdown(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Heading):
            parts.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            parts.append(f"**{block.title}**\n\n{to_markdown(block)}")
            if block.note:
                parts.append(f"*{block.note}*")
        else:
            parts.append(f"![{block.stem}](figures/{block.stem}.png)\n\n*{block.caption}*")
    return "\n\n".join(parts) + "\n"


def _pages(blocks: list[Block]) -> list[Figure]:
    """Text runs become text pages titled by the section they start in (a section heading
    that follows text becomes a bold subheading on the same page), runs of tables are
    stacked on table pages, and each figure is a page (figures carry their own titles)."""
    pages: list[Figure] = []
    title, section, paragraphs, tables = "", "", [], []

    def flush() -> None:
        if paragraphs:
            pages.extend(text_pages(title, paragraphs))
            paragraphs.clear()
        if tables:
            pages.extend(table_pages(tables))
            tables.clear()

    def add_text(text: str) -> None:
        nonlocal title
        if tables:
            flush()
        if not paragraphs:
            title = section
        paragraphs.append(text)

    for block in blocks:
        if isinstance(block, Heading):
            if block.level > 2 or (paragraphs and not tables):
                add_text(Subheading(block.text))
            else:
                flush()
            if block.level <= 2:
                section = block.text
        elif isinstance(block, Paragraph):
            add_text(block.text)
        elif isinstance(block, Table):
            if paragraphs:
                flush()
            tables.append(block)
        else:
            flush()
            pages.append(block.figure)
    flush()
    return pages
