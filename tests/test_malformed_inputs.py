"""The table of malformed inputs (``python -m tests.malformed_inputs``): none ends in a
traceback, every one ends with a clear last line and exit 1 or 2, and none leaves a
FINISHED or sticky-FAILED run in the store."""

from __future__ import annotations

from collections import Counter

from tests.malformed_inputs import cases, run_all, table

KINDS = (
    "CLI flag",
    "config YAML",
    "hparams YAML",
    "priors YAML",
    "dataset card",
    "manifest",
    "data folder",
)


def test_the_table_covers_every_kind_of_file_and_at_least_40_inputs():
    kinds = Counter(case.kind for case in cases())
    assert sum(kinds.values()) >= 40 and set(kinds) == set(KINDS)
    assert min(kinds.values()) >= 3


def test_no_malformed_input_ends_in_a_traceback_or_leaves_a_run(tmp_path):
    outcomes = run_all(tmp_path)
    printed = table(outcomes)
    bad = [o for o in outcomes if o.traceback or o.exit_code not in (1, 2)]
    assert not bad, printed
    assert not [o for o in outcomes if o.finished or o.sticky], printed
    for outcome in outcomes:
        if outcome.exit_code == 2:  # a user error: bench's line, or argparse's usage error
            assert outcome.message.startswith(("bench: error: ", "bench run: error: ")), printed
        else:  # a cell failed for its data: the run's last line says how to finish
            assert outcome.message.endswith("(data: fix it, then rerun the same command))")
    assert printed.count("\n") == len(outcomes) + 1
