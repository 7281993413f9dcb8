"""Property: whatever ``--set`` value or config YAML a user writes, ``bench run --dry-run``
ends with exit 0 or 2 and, on 2, one ``bench: error:`` line; never a traceback
(hypothesis, MacIver et al., JOSS 2019). ``--dry-run`` trains nothing and touches no store.
Integers are kept within +-1000 so that an accepted size never allocates gigabytes."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.config import DEFAULTS
from bench.spec import flatten

KEYS = [
    *sorted(flatten({k: v for k, v in DEFAULTS.items() if k != "hparams"})),
    "hparams.late-fusion.dropout",
    "hparams.late-fusion.feature_dim",
    "hparams.*.backbone",
    "hparams.kedr.ot_eps",
    "hparams.moddrop.drop_prob",
    "dataset_options.synthetic-retina.image_size",
    "dataset_options.synthetic-retina.modalities",
    "dataset_options.synthetic-retina.label_noise",
    "dataset_options.csv.channels",
    "dataset_options",
    "hparams",
    "train",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["late-fusion", "all", "synthetic-retina", "csv", "cpu", "cuda", "mcar"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
TREES = st.dictionaries(
    st.sampled_from(["methods", "datasets", "rates", "seeds", "experiment", "results_dir"])
    | st.sampled_from(["missing", "train", "hparams", "dataset_options", "frozen_backbone"])
    | st.text(max_size=8),
    VALUES,
    max_size=5,
)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def dry_run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as tmp:
        base = ["run", "--dry-run", "--results-dir", str(Path(tmp) / "never")]
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = main([*base, *argv])
        assert not (Path(tmp) / "never").exists()
    return code, err.getvalue()


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2), err
    if code == 2:
        assert err.startswith("bench: error: ") and err.count("\n") == 1, err


@SETTINGS
@given(key=st.sampled_from(KEYS) | st.text(max_size=10), value=st.text(max_size=20))
def test_any_set_text_is_exit_0_or_a_one_line_error(key, value):
    assert_clean(*dry_run("--methods", "late-fusion", f"--set={key}={value}"))


@SETTINGS
@given(key=st.sampled_from(KEYS), value=VALUES)
def test_any_set_yaml_value_is_exit_0_or_a_one_line_error(key, value):
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    assert_clean(*dry_run("--methods", "late-fusion", f"--set={key}={text}"))


@SETTINGS
@given(tree=TREES)
def test_any_yaml_config_is_exit_0_or_a_one_line_error(tree):
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "grid.yaml"
        config.write_text(yaml.safe_dump(tree))
        assert_clean(*dry_run("--config", str(config)))


@SETTINGS
@given(text=st.text(max_size=60))
def test_any_text_as_a_config_file_is_exit_0_or_a_one_line_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "grid.yaml"
        config.write_text(text, encoding="utf-8", errors="surrogatepass")
        assert_clean(*dry_run("--config", str(config), "--methods", "late-fusion"))
