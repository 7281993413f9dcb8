"""Published claims tested against our runs: the observed paired difference, its 95 % CI,
the paired test, the design's minimum detectable effect and a verdict, per claim.

**Claims as data** (``results/reference/claims.csv``, shipped with the package): one claim
per row: ``id``; ``metric`` (our key); ``method`` (A) and ``baseline`` (B, or
``best-baseline``: the non-KEDR method, i.e. not named ``kedr*``, with the best mean of the
metric at that dataset and rate among those that ran, chosen on the same runs, which
favours B); ``dataset`` (card name) and ``rate``; ``direction`` (``higher`` | ``lower``: A's
metric against B's); ``relation`` (``more than`` | ``about`` | ``nearly``) with ``size`` and
``margin``; ``published``, the difference the paper reports (used for the seeds needed);
``source`` and ``note``. Sizes are in points of the metric as the report shows it (x 100 of
the stored fraction for a metric in %).

**The test.** A replicate is a seed (with its axis seeds on a grid with seed axes,
:mod:`bench.seeds`) that both A and B finished; the oriented difference of a replicate is
d = +-100 (A - B), + for ``higher``. The paired t-test over the replicates (Student 1908)
gives the mean of d, its 95 % t-interval [lo, hi] and p; the exact Wilcoxon signed-rank p
is shown beside it; the minimum detectable effect (MDE) is the |delta| the paired t-test of
this many replicates detects with 80 % power at the observed SD of d
(:mod:`bench.report.power`).

**The verdict.** A claim states a region R of the true mean of d: ``more than s``: (s, inf);
``about s``: [s - margin, s + margin]; ``nearly s``: [s - margin, s]; each within (0, inf),
since every claim has a direction.

- *contradicted*: [lo, hi] and R do not meet: every value the data allow lies outside it;
- *supported*: lo > 0 (the claimed direction holds at the 5 % level, two-sided) and
  [lo, hi] meets R;
- *inconclusive*: otherwise (the interval holds 0 and meets R). Then the seeds needed are
  the fewest replicates whose paired t-test detects the published difference with 80 %
  power at the observed SD (none when not even 10,000 would).

A claim whose cells did not run (dataset, rate, method or fewer than 2 paired replicates)
is *not run*, with the ``bench run`` command that would run it. On another dataset than the
paper's (``target``), every claim keeps its shape (A vs B at that rate) and is labelled as
re-targeted: it is then a question about that dataset, not a test of the paper.

The t-test takes the replicates as independent. On a grid with seed axes they are the cells
of a factorial, which share seeds, so the interval is too narrow there: test claims on a
grid without seed axes, and use seed axes to learn where the variance comes from
(:mod:`bench.report.variance`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import DEFAULTS
from bench.data import get_card
from bench.errors import BenchError, ConfigError
from bench.interface import METHODS
from bench.metrics import metric_keys, metric_spec
from bench.report.collect import ExperimentRuns
from bench.report.power import MAX_SEEDS, PairedDifference, paired_difference, seeds_needed
from bench.report.reference import BEST_BASELINE, REFERENCE_DIR
from bench.report.tables import CI, DASH, Table, format_p, rate_label, signed
from bench.report.variance import COUPLED, varied_axes
from bench.seeds import replicate_columns
from bench.spec import DATA_SEED_OPTIONS

CLAIMS_FILE = "claims.csv"
COLUMNS = (
    "id",
    "metric",
    "method",
    "baseline",
    "dataset",
    "rate",
    "direction",
    "relation",
    "size",
    "margin",
    "published",
    "source",
    "note",
)
DIRECTIONS = ("higher", "lower")
RELATIONS = ("more than", "about", "nearly")
RATE_TOLERANCE = 1e-9
DEFAULT_SEEDS = (0, 1, 2)  # for a command when the experiment has fewer than 2 seeds
MAX_PLANNED_SEEDS = 20  # no command beyond: more data is the cheaper way to a smaller SD


@dataclass(frozen=True)
class Claim:
    """One published claim (see the module docstring for the fields)."""

    id: str
    metric: str
    method: str
    baseline: str
    dataset: str
    rate: float
    direction: str
    relation: str
    size: float
    margin: float
    published: float
    source: str
    note: str = ""

    @property
    def sign(self) -> int:
        return 1 if self.direction == "higher" else -1

    def region(self) -> tuple[float, float]:
        """(low, high) of the claimed values of the oriented mean difference, in points;
        ``low`` is exclusive when it is the direction's 0 or a ``more than`` bound."""
        if self.relation == "more than":
            return self.size, math.inf
        high = self.size + self.margin if self.relation == "about" else self.size
        return max(0.0, self.size - self.margin), high

    def wording(self) -> str:
        """'lower by about 3 ± 1', 'higher' (more than 0), 'higher by more than 1'."""
        if self.relation == "more than" and self.size == 0:
            return self.direction
        margin = f" ± {self.margin:g}" if self.relation == "about" else ""
        return f"{self.direction} by {self.relation} {self.size:g}{margin}"


def _row_error(path: Path, row: Mapping[str, str], message: str) -> ConfigError:
    return ConfigError(f"claims file {path}, claim {row.get('id', '?')!r}: {message}: fix the row")


def _number(path: Path, row: Mapping[str, str], key: str, low: float, high: float) -> float:
    try:
        value = float(row[key])
    except (TypeError, ValueError):
        raise _row_error(path, row, f"{key} {row[key]!r} is not a number") from None
    if not low <= value < high:
        raise _row_error(path, row, f"{key} {value:g} is outside [{low:g}, {high:g})")
    return value


def _claim(path: Path, row: Mapping[str, str]) -> Claim:
    if row["metric"] not in metric_keys():
        raise _row_error(path, row, f"metric {row['metric']!r} is not one of {metric_keys()}")
    for key in ("method", "baseline"):
        if not (key == "baseline" and row[key] == BEST_BASELINE):
            try:
                METHODS.resolve(row[key])
            except BenchError as err:
                raise _row_error(path, row, f"{key}: {err}") from None
    try:
        get_card(row["dataset"])
    except BenchError as err:
        raise _row_error(path, row, f"dataset: {err}") from None
    for key, valid in (("direction", DIRECTIONS), ("relation", RELATIONS)):
        if row[key] not in valid:
            raise _row_error(path, row, f"{key} {row[key]!r} is not one of {', '.join(valid)}")
    return Claim(
        id=row["id"],
        metric=row["metric"],
        method=row["method"],
        baseline=row["baseline"],
        dataset=row["dataset"],
        rate=_number(path, row, "rate", 0.0, 1.0),
        direction=row["direction"],
        relation=row["relation"],
        size=_number(path, row, "size", 0.0, math.inf),
        margin=_number(path, row, "margin", 0.0, math.inf),
        published=_number(path, row, "published", 0.0, math.inf),
        source=row["source"],
        note=row.get("note") or "",
    )


def load_claims(path: Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default: the shipped ``claims.csv``), each checked: a
    registered metric and methods, a known dataset card, valid direction and relation."""
    path = Path(path) if path is not None else REFERENCE_DIR / CLAIMS_FILE
    if not path.is_file():
        raise ConfigError(f"claims file {str(path)!r} does not exist: check the path")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(f"claims file {path} lacks the column(s) {', '.join(missing)}: add them")
    claims = [_claim(path, row) for row in table.to_dict(orient="records")]
    ids = [c.id for c in claims]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"claims file {path} repeats the id(s) {', '.join(repeated)}: rename")
    return claims


@dataclass(frozen=True)
class ClaimResult:
    """A claim tested on ``dataset`` (``retargeted`` when it is not the paper's): the
    resolved ``baseline`` and how it was chosen, the paired difference in points (oriented,
    None when not run), the verdict, the seeds needed when inconclusive, why, and the run
    that would add the missing cells or seeds."""

    claim: Claim
    dataset: str
    retargeted: bool
    verdict: str
    baseline: str = ""
    selection: str = ""
    difference: PairedDifference | None = None
    seeds_needed: int | None = None
    reason: str = ""
    pending: PendingRun | None = None


def verdict(claim: Claim, low: float, high: float) -> str:
    """supported / contradicted / inconclusive from the CI [low, high] of the oriented mean
    difference (points) and the claim's region (module docstring)."""
    region_low, region_high = claim.region()
    if high <= region_low or low > region_high:
        return "contradicted"
    return "supported" if low > 0 else "inconclusive"


def _cells(frame: pd.DataFrame, dataset: str, rate: float) -> pd.DataFrame:
    return frame[
        (frame["dataset"] == dataset) & np.isclose(frame["rate"], rate, atol=RATE_TOLERANCE)
    ]


def _best_baseline(cells: pd.DataFrame, claim: Claim) -> tuple[str, str]:
    """The best non-KEDR method by mean metric among ``cells``, and the candidates it was
    chosen from."""
    spec = metric_spec(claim.metric)
    candidates = cells[~cells["method"].str.startswith("kedr") & (cells["method"] != claim.method)]
    means = candidates.groupby("method")[claim.metric].mean().dropna().sort_index()
    if means.empty:
        return "", ""
    best = str(means.idxmax() if spec.higher_is_better else means.idxmin())
    return best, ", ".join(means.index)


def _paired(cells: pd.DataFrame, a: str, b: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    key = replicate_columns(cells.columns)
    left = cells[cells["method"] == a].set_index(key)[metric]
    right = cells[cells["method"] == b].set_index(key)[metric]
    both = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner").dropna()
    return both["a"].to_numpy(dtype=np.float64), both["b"].to_numpy(dtype=np.float64)


def evaluate_claim(
    frame: pd.DataFrame, claim: Claim, dataset: str, plan: RunPlanner
) -> ClaimResult:
    """The claim tested on the FINISHED cells of ``frame`` at ``dataset``."""
    retargeted = dataset != claim.dataset
    cells = _cells(frame, dataset, claim.rate)
    result = ClaimResult(claim, dataset, retargeted, "not run")
    baseline, selection = claim.baseline, ""
    if claim.baseline == BEST_BASELINE:
        baseline, selection = _best_baseline(cells, claim)
    named = [claim.method] + ([claim.baseline] if claim.baseline != BEST_BASELINE else [])
    missing = [m for m in named if m not in set(cells["method"])]
    where = f"{dataset} at {rate_label(claim.rate)}"
    why = ""
    if dataset not in set(frame["dataset"]):
        why = f"{dataset} did not run"
    elif cells.empty:
        why = f"no cells of {where}"
    elif missing:
        why = f"{', '.join(missing)} did not run on {where}"
    elif not baseline:
        why = f"no non-KEDR method ran on {where}"
    if why:
        return replace(result, reason=why, pending=plan(claim, dataset, None))
    a, b = _paired(cells, claim.method, baseline, claim.metric)
    if len(a) < 2:
        return replace(
            result,
            baseline=baseline,
            selection=selection,
            reason=f"{len(a)} paired seed(s) of {claim.method} and {baseline}: need 2 or more",
            pending=plan(claim, dataset, None),
        )
    scale = claim.sign * (100.0 if metric_spec(claim.metric).display == "percent" else 1.0)
    difference = paired_difference(scale * a, scale * b)
    outcome = verdict(claim, difference.ci_low, difference.ci_high)
    needed, pending = None, None
    if outcome == "inconclusive":
        needed = seeds_needed(claim.published, difference.sd) if claim.published > 0 else None
        if needed is not None and difference.n < needed <= MAX_PLANNED_SEEDS:
            pending = plan(claim, dataset, needed, baseline)
    return ClaimResult(
        claim,
        dataset,
        retargeted,
        outcome,
        baseline=baseline,
        selection=selection,
        difference=difference,
        seeds_needed=needed,
        reason=_detail(outcome, difference, claim, needed),
        pending=pending,
    )


def _detail(outcome: str, d: PairedDifference, claim: Claim, needed: int | None) -> str:
    if outcome == "supported":
        low, high = claim.region()
        if claim.relation == "more than" and claim.size == 0:
            return "the claimed direction holds"
        inside = d.ci_low > low and d.ci_high <= high
        return "direction holds; size " + ("established" if inside else "compatible")
    if outcome == "contradicted":
        if d.ci_high <= 0:
            return (
                "the opposite direction holds"
                if d.ci_high < 0
                else "no difference in the claimed direction"
            )
        if d.ci_low > 0:
            return "direction holds, size outside the claim"
        return f"the claimed size is excluded: at most {d.ci_high:+.2f} points"
    if claim.published == 0:
        return "no published size to plan for"
    if needed is None:
        return f"not even {MAX_SEEDS} seeds detect {claim.published:g} points at this SD"
    if needed <= d.n:
        return (
            f"{d.n} seeds already detect {claim.published:g} points at 80 % power: the observed "
            "difference is smaller than published"
        )
    beyond = f" (no command beyond {MAX_PLANNED_SEEDS} seeds)" if needed > MAX_PLANNED_SEEDS else ""
    return f"{needed} seeds would detect {claim.published:g} points at 80 % power{beyond}"


@dataclass(frozen=True)
class PendingRun:
    """The cells a claim still needs: a ``bench run`` of ``methods`` on ``dataset`` at
    ``rates`` with ``seeds``; ``flags`` repeat the experiment's recipe."""

    dataset: str
    methods: tuple[str, ...]
    rates: tuple[float, ...]
    seeds: tuple[int, ...]
    flags: tuple[str, ...]

    def command(self) -> str:
        return " ".join(
            [
                "bench run",
                f"--datasets {self.dataset}",
                f"--methods {','.join(self.methods)}",
                f"--rates {','.join(f'{r:g}' for r in self.rates)}",
                f"--seeds {','.join(map(str, self.seeds))}",
                *self.flags,
            ]
        )


def merged(pending: Iterable[PendingRun]) -> list[PendingRun]:
    """Fewer runs for the same cells (a rerun skips the cells already done): runs of the same
    methods on a dataset become one over all their rates and seeds, then runs at the same
    rates and seeds become one over all their methods; in order of appearance."""
    by_methods: dict[tuple, tuple[list[float], list[int]]] = {}
    for run in pending:
        rates, seeds = by_methods.setdefault((run.dataset, run.methods, run.flags), ([], []))
        rates += [r for r in run.rates if r not in rates]
        seeds += [s for s in run.seeds if s not in seeds]
    by_cells: dict[tuple, list[str]] = {}
    for (dataset, methods, flags), (rates, seeds) in by_methods.items():
        key = (dataset, tuple(sorted(rates)), tuple(sorted(seeds)), flags)
        names = by_cells.setdefault(key, [])
        names += [m for m in methods if m not in names]
    return [
        PendingRun(dataset, tuple(methods), rates, seeds, flags)
        for (dataset, rates, seeds, flags), methods in by_cells.items()
    ]


class RunPlanner:
    """What to run for a claim in an experiment: its methods (``all`` for a best-baseline
    claim) with the experiment's seeds, or the seeds needed, and the experiment's recipe
    (epochs, training and dataset options, missingness, seed axes) read from the parameters
    of its runs, so that the new cells pair with the old ones."""

    def __init__(
        self,
        experiment: str,
        results_dir: str | Path,
        seeds: Iterable[int],
        recipes: Mapping[str, Mapping[str, str]],
        seed_axes: Iterable[str] = (),
    ) -> None:
        self.seeds = tuple(sorted(set(seeds)))
        self.recipes = dict(recipes)
        self.seed_axes = tuple(seed_axes)
        self.flags = (f"--experiment {experiment}",)
        if str(results_dir) != DEFAULTS["results_dir"]:
            self.flags += (f"--results-dir {results_dir}",)
        if seed_axes:
            self.flags += (f"--seed-axes {','.join(seed_axes)}",)

    def __call__(
        self, claim: Claim, dataset: str, seeds: int | None, baseline: str = ""
    ) -> PendingRun:
        """The run of ``claim`` on ``dataset`` with the experiment's seeds, or with ``seeds``
        seeds of ``claim.method`` and the ``baseline`` it was compared with."""
        if baseline or claim.baseline != BEST_BASELINE:
            methods = (claim.method, baseline or claim.baseline)
        else:
            extra = () if claim.method in METHODS.defaults() else (claim.method,)
            methods = ("all", *extra)
        chosen = self.seeds if len(self.seeds) >= 2 else DEFAULT_SEEDS
        if seeds:  # the experiment's seeds, then the next integers, up to the count needed
            extra = itertools.count(max(chosen) + 1)
            chosen = chosen + tuple(next(extra) for _ in range(seeds - len(chosen)))
        recipe = self.recipes.get(dataset) or next(iter(self.recipes.values()), {})
        kept = "data" not in self.seed_axes  # a varied data seed is the axes' to set
        flags = self.flags + tuple(
            recipe_flags(recipe, dataset if dataset in self.recipes else None, kept)
        )
        if "root" in get_card(dataset).options and dataset not in self.recipes:
            flags += (f"--data-root {dataset}=/path/to/{dataset}",)
        return PendingRun(dataset, methods, (claim.rate,), chosen, flags)


def planner_for(runs: ExperimentRuns, results_dir: str | Path) -> RunPlanner:
    """The :class:`RunPlanner` of an experiment: its seeds, seed axes and, per dataset, the
    parameters of its newest run."""
    frame = runs.frame
    experiment_id = runs.tracker.require_experiment(runs.experiment)
    recipes = {}
    for dataset, part in frame.groupby("dataset", sort=True):
        newest = part.sort_values(["end_time", "run_id"]).iloc[-1]
        found = runs.tracker.find_runs(experiment_id, cell_hash=newest["cell_hash"])
        recipes[dataset] = next(r.params for r in found if r.run_id == newest["run_id"])
    axes = [a for a in varied_axes(frame) if a != COUPLED]
    return RunPlanner(runs.experiment, results_dir, frame["seed"], recipes, axes)


def recipe_flags(
    params: Mapping[str, str], dataset: str | None, data_seed: bool = True
) -> list[str]:
    """``bench run`` flags that reproduce a run's recipe (its parameters, as the tracking
    store holds them) where it differs from the defaults: training (``--epochs``, ``--set
    train.*``), missingness, a frozen backbone and, for ``dataset``, the dataset options that
    differ from its card (not its root; its data seed only when ``data_seed``). Per-method
    hyper-parameters are not repeated."""
    flags = []
    train = DEFAULTS["train"]
    for key, default in train.items():
        value = params.get(f"train.{key}")
        if key == "device" or value is None or value == str(default):
            continue
        flags.append(f"--epochs {value}" if key == "epochs" else f"--set train.{key}={value}")
    for key, default in DEFAULTS["missing"].items():
        value = params.get(f"missing.{key}")
        if value is not None and value != str(default):
            flags.append(f"--{key.replace('_', '-')} {value}")
    for key in DEFAULTS["frozen_backbone"]:
        value = params.get(f"frozen_backbone.{key}")
        if value not in (None, "None"):
            flags.append(f"--set frozen_backbone.{key}={value}")
    if dataset is not None:
        skipped = {"root"} | (set() if data_seed else set(DATA_SEED_OPTIONS))
        for key, default in get_card(dataset).options.items():
            value = params.get(f"dataset.options.{key}")
            if key not in skipped and value is not None and value != str(default):
                flags.append(f"--set dataset_options.{dataset}.{key}={value}")
    return flags


def targets(
    frame: pd.DataFrame, claims: list[Claim], target: str | None
) -> list[tuple[Claim, str]]:
    """Which claim is tested on which dataset: every claim on ``target`` when given; else
    every claim on its own dataset, and re-targeted to each dataset of ``frame`` that no
    claim is about."""
    if target is not None:
        get_card(target)
        return [(c, target) for c in claims]
    own = [(c, c.dataset) for c in claims]
    covered = {c.dataset for c in claims}
    others = sorted(set(frame["dataset"]) - covered)
    return own + [(c, d) for d in others for c in claims]


def evaluate_claims(
    frame: pd.DataFrame, claims: list[Claim], plan: RunPlanner, target: str | None = None
) -> list[ClaimResult]:
    """Every claim tested (:func:`evaluate_claim`) on the datasets :func:`targets` names."""
    return [
        evaluate_claim(frame, claim, dataset, plan)
        for claim, dataset in targets(frame, claims, target)
    ]


def claims_frame(results: list[ClaimResult]) -> pd.DataFrame:
    """One row per tested claim, numbers in points (oriented: + is the claimed direction)."""
    rows = []
    for r in results:
        d = r.difference
        rows.append(
            {
                "claim": r.claim.id,
                "dataset": r.dataset,
                "retargeted": r.retargeted,
                "metric": r.claim.metric,
                "method": r.claim.method,
                "baseline": r.baseline or r.claim.baseline,
                "rate": r.claim.rate,
                "claimed": r.claim.wording(),
                "published": r.claim.published,
                "n": d.n if d else 0,
                "difference": d.mean if d else math.nan,
                "ci_low": d.ci_low if d else math.nan,
                "ci_high": d.ci_high if d else math.nan,
                "sd": d.sd if d else math.nan,
                "t_p": d.t_p if d else math.nan,
                "wilcoxon_p": d.wilcoxon_p if d else math.nan,
                "mde": d.mde if d else math.nan,
                "verdict": r.verdict,
                "seeds_needed": r.seeds_needed,
                "detail": r.reason,
                "selection": r.selection,
                "command": r.pending.command() if r.pending else "",
                "source": r.claim.source,
            }
        )
    return pd.DataFrame(rows)


RULE = (
    "Verdicts: the 95 % t-interval of the paired difference (claimed direction positive, in "
    "points) against the claimed region: contradicted when they do not meet; supported when "
    "the interval also excludes 0; inconclusive otherwise, with the seeds that would detect "
    "the published difference at 80 % power at the observed SD. p: paired t-test / exact "
    "Wilcoxon signed-rank, two-sided; MDE: the difference this design detects with 80 % "
    "power (paired t-test, alpha 0.05)."
)


def _points(value: float) -> str:
    return DASH if math.isnan(value) else signed(f"{value:+.2f}")


def claim_row(r: ClaimResult) -> tuple[str, ...]:
    """A result as the cells of :func:`claims_table`."""
    spec = metric_spec(r.claim.metric)
    baseline = r.baseline or r.claim.baseline
    if r.claim.baseline == BEST_BASELINE and r.baseline:
        baseline = f"{r.baseline} (best)"
    d = r.difference
    observed = DASH
    if d is not None:
        observed = f"{_points(d.mean)} [{_points(d.ci_low)}, {_points(d.ci_high)}]"
    needed = r.reason
    if r.seeds_needed is not None and r.seeds_needed > (d.n if d else 0):
        needed = f"{r.seeds_needed}"
    return (
        r.claim.id,
        f"{r.claim.method} vs {baseline}",
        rate_label(r.claim.rate),
        spec.label,
        r.claim.wording(),
        _points(r.claim.published),
        observed,
        str(d.n) if d else "0",
        f"{format_p(d.t_p)} / {format_p(d.wilcoxon_p)}" if d else DASH,
        f"{d.mde:.2f}" if d else DASH,
        r.verdict,
        needed,
    )


def claims_table(results: list[ClaimResult], dataset: str) -> Table:
    """The verdicts of the claims tested on ``dataset``."""
    retargeted = any(r.retargeted for r in results)
    where = (
        f"{dataset}: the paper's claims re-targeted (not the paper's dataset)"
        if retargeted
        else f"{dataset}: the paper's claims"
    )
    candidates = sorted({m for r in results for m in r.selection.split(", ") if m})
    return Table(
        name=f"{dataset}_claims",
        title=f"{where}, tested on our runs (points)",
        header=(
            "claim",
            "compared",
            "rate",
            "metric",
            "claimed",
            "paper",
            f"ours [{CI} CI]",
            "n",
            "p (t / W)",
            "MDE",
            "verdict",
            "seeds needed / why",
        ),
        rows=tuple(claim_row(r) for r in results),
        note=(
            f"(best): the non-KEDR method with the best mean of the claim's metric at its rate "
            f"among those that ran ({', '.join(candidates)}), chosen on these same runs, which "
            "favours it."
            if candidates
            else ""
        ),
    )


def by_dataset(
    results: list[ClaimResult], ran: Iterable[str]
) -> tuple[dict[str, list[ClaimResult]], dict[str, list[ClaimResult]]]:
    """The results grouped by the dataset they were tested on: those that ran (a table
    each), and those absent from the experiment (one line each), in order of appearance."""
    ran = set(ran)
    tested: dict[str, list[ClaimResult]] = {}
    absent: dict[str, list[ClaimResult]] = {}
    for r in results:
        (tested if r.dataset in ran else absent).setdefault(r.dataset, []).append(r)
    return tested, absent


def absent_line(dataset: str, results: list[ClaimResult]) -> str:
    """'mmc-amd: 17 claims not run (ids): the experiment has no mmc-amd cells.'"""
    ids = ", ".join(r.claim.id for r in results)
    count = f"{len(results)} claim" + ("" if len(results) == 1 else "s")
    return f"{dataset}: {count} not run ({ids}): the experiment has no {dataset} cells."


def commands(results: list[ClaimResult]) -> list[str]:
    """The ``bench run`` commands that would run every claim not run, and add the seeds an
    inconclusive one needs, merged over rates."""
    return [p.command() for p in merged(r.pending for r in results if r.pending)]


def claim_sections(results: list[ClaimResult], datasets: pd.Series) -> list[Table | str]:
    """What ``bench claims`` prints and the report shows, in order: the verdict rule, a table
    per dataset whose claims ran, a line per dataset whose claims did not, and the commands
    that run the missing cells or add the seeds needed."""
    tested, absent = by_dataset(results, datasets)
    sections: list[Table | str] = [RULE]
    sections += [claims_table(group, dataset) for dataset, group in tested.items()]
    sections += [absent_line(dataset, group) for dataset, group in absent.items()]
    todo = commands(results)
    if todo:
        sections += ["To run the claims not run, or add the seeds needed:", *todo]
    return sections
