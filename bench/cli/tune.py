"""``bench tune``: an Optuna study of one method's hyper-parameters on one cell
(see :mod:`bench.tune`)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from bench.cli.arguments import add_tracking_uri
from bench.errors import ConfigError


def _check_not_searched(sets: list[str], method: str, searched: set[str]) -> None:
    owners = {"*", method.partition(":")[0], method}
    for item in sets:
        key = item.partition("=")[0].strip()
        parts = key.split(".")
        hparam = len(parts) == 3 and parts[0] == "hparams" and parts[1] in owners
        name = parts[2] if hparam else key
        if name in searched:
            raise ConfigError(
                f"--set {key} fixes a value that bench tune searches: drop it (or tune "
                "another method)"
            )


def cmd_tune(args: argparse.Namespace) -> int:
    import optuna

    from bench.config import expand, resolve
    from bench.interface import check_hparams
    from bench.preflight import check_grid, check_store
    from bench.tune import (
        STUDY_NAME,
        TuneTask,
        best_trial,
        counted_trials,
        redacted,
        trial_spec,
        tune,
    )

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own line per trial instead
    if args.trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {args.trials}")
    flags = {
        "methods": [args.method],
        "datasets": [args.dataset],
        "rates": [args.rate],
        "seeds": [args.seed],
        "results_dir": args.results_dir,
        "train": {
            k: v for k, v in {"epochs": args.epochs, "device": args.device}.items() if v is not None
        },
    }
    cells = expand(resolve(None, flags, args.set or []))
    if len(cells) != 1:
        raise ConfigError(f"--method takes one method, like late-fusion: got {args.method!r}")
    check_grid(cells)
    check_store(args.results_dir)
    base = cells[0]
    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    check_hparams(base.method, dict(trial_spec(base, probe).hparams))
    _check_not_searched(args.set or [], base.method, set(probe.params))
    study_name = args.study or f"{base.method}_{base.dataset.name}_r{args.rate:g}_s{args.seed}"
    study_name = study_name.replace(":", "-")
    if not STUDY_NAME.fullmatch(study_name):
        raise ConfigError(f"--study {study_name!r} may use only letters, digits and _.@+-")
    results_dir = Path(args.results_dir).expanduser().resolve()
    storage = args.storage or f"sqlite:///{results_dir / 'optuna.db'}"
    task = TuneTask(
        base, study_name, storage, args.trials, results_dir, args.experiment, args.tracking_uri
    )
    study = tune(task)
    states = [t.state.name for t in counted_trials(study.get_trials(deepcopy=False))]
    counts = ", ".join(f"{states.count(s)} {s.lower()}" for s in sorted(set(states)))
    print(f"study {task.study}: {len(states)} trials ({counts}) in {redacted(storage)}")
    best = best_trial(study)
    if best is None:
        print("no trial completed: see the errors above")
        return 1
    print(f"best: trial {best.number}, validation {task.monitor} {best.value:.4f}")
    for key, value in best.params.items():
        print(f"  {key} = {value:.6g}" if isinstance(value, float) else f"  {key} = {value}")
    sets = "".join(f" --set {shlex.quote(item)}" for item in args.set or [])
    print(f"wrote {task.export_path}; use it with:")
    print(
        f"  bench run --methods {base.method} --datasets {base.dataset.name} --rates {args.rate:g} "
        f"--results-dir {args.results_dir} --hparams {task.export_path}{sets}"
    )
    return _exit_status(states)


def _exit_status(states: list[str]) -> int:
    """0 when every trial of the study ended COMPLETE or PRUNED (pruning is the study's
    choice); else 1, with a last line that counts the others. A trial still RUNNING belongs
    to another process that joined the study: it is named, and does not fail this one."""
    running = states.count("RUNNING")
    if running:
        print(f"{running} trials still RUNNING in other processes of this study", file=sys.stderr)
    unfinished = [s for s in states if s not in ("COMPLETE", "PRUNED", "RUNNING")]
    if not unfinished:
        return 0
    counts = ", ".join(f"{unfinished.count(s)} {s}" for s in sorted(set(unfinished)))
    print(
        f"{len(unfinished)} of {len(states)} trials not finished ({counts}): see the errors "
        "above; their trials count towards --trials, so raise --trials to replace them",
        file=sys.stderr,
    )
    return 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    tune_ = sub.add_parser("tune", help="tune a method's hyper-parameters with Optuna")
    tune_.add_argument("--method", required=True, help="one method, e.g. late-fusion")
    tune_.add_argument("--dataset", default="synthetic-retina")
    tune_.add_argument("--rate", type=float, required=True, help="missing rate, e.g. 0.4")
    tune_.add_argument("--trials", type=int, required=True, help="the study's total trials")
    tune_.add_argument("--seed", type=int, default=0, help="training and sampler seed")
    tune_.add_argument("--study", help="study name (default <method>_<dataset>_r<rate>_s<seed>)")
    tune_.add_argument(
        "--storage",
        help="Optuna storage: a database URL (default sqlite:///<results-dir>/optuna.db; "
        "postgresql://USER@HOST/DB for a server) or journal:PATH (a file on a shared disk)",
    )
    add_tracking_uri(tune_)
    tune_.add_argument("--results-dir", dest="results_dir", default="results")
    tune_.add_argument("--experiment", default="tune", help="MLflow experiment of the trials")
    tune_.add_argument("--epochs", type=int)
    tune_.add_argument("--device", help="auto | cpu | cuda | mps")
    tune_.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a config key that is not searched, e.g. train.batch_size=16 (repeatable)",
    )
    tune_.set_defaults(func=cmd_tune)
