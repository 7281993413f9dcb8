"""`bench tune`: resumable Optuna studies that processes join, and `bench run --hparams`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import optuna
import yaml

from bench.cli import main
from bench.tracking import Tracker
from bench.tune import search_space, trial_spec
from methods.late_fusion import LateFusion
from tests.conftest import TINY_SETS, run_args

STUDY = "late-fusion_synthetic-retina_r0.4_s0"


def tune_args(results_dir, trials: int, *extra: str) -> list[str]:
    args = ["tune", "--method", "late-fusion", "--rate", "0.4", "--trials", str(trials)]
    args += ["--epochs", "2", "--results-dir", str(results_dir)]
    for item in TINY_SETS:
        args += ["--set", item]
    return args + list(extra)


def load_study(results_dir, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{results_dir}/optuna.db")


def tune_runs(results_dir) -> list:
    tracker = Tracker(results_dir)
    return tracker.find_runs(tracker.experiment_id("tune"))


def test_search_space_is_the_methods_own_plus_lr_and_weight_decay(tiny_ref):
    from bench.spec import CellSpec, MissingSpec, TrainSpec

    trial = optuna.create_study().ask()
    assert set(search_space("moddrop", trial)) == {
        "train.lr",
        "train.weight_decay",
        "dropout",
        "scheme",
        "drop_prob",
    }
    base = CellSpec("moddrop", tiny_ref, MissingSpec(0.4), TrainSpec(), 0, (("feature_dim", 8),))
    spec = trial_spec(base, optuna.trial.FixedTrial(trial.params))
    assert spec.train.lr == trial.params["train.lr"] and 1e-4 <= spec.train.lr <= 1e-2
    assert dict(spec.hparams) == {
        "feature_dim": 8,
        **{k: trial.params[k] for k in ("dropout", "scheme", "drop_prob")},
    }


def test_tune_resumes_to_the_study_total_and_run_reads_the_best(tmp_path, capsys):
    assert main(tune_args(tmp_path, 2)) == 0
    assert main(tune_args(tmp_path, 3)) == 0  # resumed: one more trial, not three
    study = load_study(tmp_path)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert study.user_attrs["sampler"]["multivariate"] is True
    assert study.user_attrs["sampler"]["constant_liar"] is True

    runs = tune_runs(tmp_path)
    (parent,) = [r for r in runs if r.tags.get("optuna_role") == "study"]
    trials = [r for r in runs if r.tags.get("mlflow.parentRunId") == parent.run_id]
    assert len(trials) == 3 and parent.status == "FINISHED"
    assert all(not r.test_metrics for r in trials)
    assert {r.tags["optuna_state"] for r in trials} <= {"COMPLETE", "PRUNED"}
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    by_run = {r.run_id: r for r in trials}
    for trial in complete:  # the objective is the logged validation value of the kept epoch
        run = by_run[trial.user_attrs["mlflow_run_id"]]
        assert run.metrics["best_val/f1_macro"] == trial.value

    exported = tmp_path / "tune" / f"{STUDY}.yaml"
    tuned = yaml.safe_load(exported.read_text())
    assert tuned["hparams"]["late-fusion"]["dropout"] == study.best_params["dropout"]
    assert tuned["train"]["lr"] == study.best_params["train.lr"]
    capsys.readouterr()
    args = run_args(tmp_path, "--methods", "late-fusion", "--rates", "0.4", "--seeds", "0")
    assert main([*args, "--hparams", str(exported)]) == 0
    tracker = Tracker(tmp_path)
    (run,) = tracker.runs(tracker.experiment_id("t"))
    assert float(run.params["train.lr"]) == tuned["train"]["lr"]
    assert float(run.params["hparams.dropout"]) == tuned["hparams"]["late-fusion"]["dropout"]

    other = ["--study", STUDY, "--set", "train.batch_size=16"]
    assert main(tune_args(tmp_path, 4, *other)) == 2
    err = capsys.readouterr().err
    assert "tunes a cell with train.batch_size=32, not 16" in err


def test_two_processes_join_one_study_and_share_its_total(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "bench.cli", *tune_args(tmp_path, 3)]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    trials = load_study(tmp_path).trials
    counted = [t for t in trials if "void" not in t.user_attrs]
    assert len(counted) == 3 and {t.state.name for t in counted} <= {"COMPLETE", "PRUNED"}
    assert len({t.params["train.lr"] for t in counted}) == 3  # no repeated draws
    assert len({t.user_attrs["pid"] for t in counted}) == 2  # both processes worked
    parents = [r for r in tune_runs(tmp_path) if r.tags.get("optuna_role") == "study"]
    assert len(parents) == 1


def test_a_pruned_trial_is_recorded_pruned_not_finished(tmp_path, capsys, monkeypatch):
    prune_all = optuna.pruners.ThresholdPruner(lower=2.0)  # every F1 is below 2
    monkeypatch.setattr(optuna.pruners, "MedianPruner", lambda **settings: prune_all)
    assert main(tune_args(tmp_path, 1)) == 1
    assert "no trial completed" in capsys.readouterr().out
    (trial,) = load_study(tmp_path).trials
    assert trial.state.name == "PRUNED"
    (run,) = [r for r in tune_runs(tmp_path) if "optuna_trial" in r.tags]
    assert run.status == "KILLED" and run.tags["optuna_state"] == "PRUNED"
    assert "pruned after epoch 1" in run.tags["error"]


def test_tune_with_a_frozen_backbone_trains_on_its_cached_features(tmp_path, monkeypatch):
    seen = []
    forward = LateFusion.forward

    def recording(self, batch):
        seen.append(tuple(x.dim() for x in batch.images))
        return forward(self, batch)

    monkeypatch.setattr(LateFusion, "forward", recording)
    assert main(tune_args(tmp_path, 1, "--set", "frozen_backbone.name=resnet18")) == 0
    assert len(list((tmp_path / "cache" / "features").glob("*.npz"))) == 1
    assert seen and set(seen) == {(2, 2)}  # (B, D) features for both modalities, no images
    (run,) = [r for r in tune_runs(tmp_path) if "optuna_trial" in r.tags]
    assert run.status == "FINISHED" and run.params["frozen_backbone.name"] == "resnet18"


def test_bad_tune_input_is_one_line_exit_2(tmp_path, capsys):
    assert main(tune_args(tmp_path, 2, "--set", "hparams.late-fusion.dropout=0.1")) == 2
    assert "--set hparams.late-fusion.dropout fixes a value that bench tune searches" in (
        capsys.readouterr().err
    )
    assert main(tune_args(tmp_path, 0)) == 2
    assert "--trials must be at least 1" in capsys.readouterr().err
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [late-fusion]\n")
    assert main([*run_args(tmp_path, "--methods", "late-fusion"), "--hparams", str(grid)]) == 2
    assert "may hold only hparams and train" in capsys.readouterr().err


def test_a_trial_whose_process_died_is_voided_and_replaced(tmp_path, tiny_ref):
    from bench.spec import CellSpec, MissingSpec, TrainSpec
    from bench.tune import TuneTask, next_trial, open_study

    base = CellSpec("late-fusion", tiny_ref, MissingSpec(0.4), TrainSpec(epochs=2), 0)
    task = TuneTask(base, "s", f"sqlite:///{tmp_path}/optuna.db", 1, tmp_path)
    tracker = Tracker(tmp_path)
    study, _ = open_study(task)
    orphan = study.ask()  # asked by a process that was then killed -9
    run_id = tracker.client.create_run(tracker.experiment_id("tune")).info.run_id
    attrs = {"host": socket.gethostname(), "pid": "999999999", "mlflow_run_id": run_id}
    for key, value in attrs.items():
        orphan.set_user_attr(key, value)
    replacement = next_trial(study, 1, tracker)
    assert replacement is not None and replacement.number == 1
    voided = study.trials[0]
    assert voided.state.name == "FAIL" and voided.user_attrs["void"] == "its process died"
    assert tracker.client.get_run(run_id).info.status == "KILLED"
