"""Why a cell failed, and whether the failure sticks.

Every FAILED or KILLED run carries tag ``failure_class``:

- ``method``: the method itself failed (a non-finite loss, an exception raised while the
  method was built, trained or evaluated). Rerunning the same cell gives the same failure,
  so it stays FAILED until ``bench run --retry-failed``: the only sticky class.
- ``data``: the dataset could not be loaded (a missing or corrupt file, a bad manifest).
- ``setup``: something the user fixes outside the method (absent pretrained weights or
  text encoder, a device that is not there).
- ``resources``: out of memory (CPU, CUDA or MPS) or an operating-system error (disk full).
- ``store``: the tracking store failed while the run was recorded.
- ``interrupted``: the run was stopped from outside (Ctrl-C, a killed worker, pruning).

A plain rerun of the same command retries every class but ``method``. Runs recorded before
the tag existed are classified from their ``error`` tag (``"DataError: ..."``).
"""

from __future__ import annotations

from collections.abc import Mapping

from bench.errors import BenchError, DataError, TrainingDivergedError

TAG = "failure_class"
METHOD, DATA, SETUP, RESOURCES, STORE, INTERRUPTED = (
    "method",
    "data",
    "setup",
    "resources",
    "store",
    "interrupted",
)
STICKY = (METHOD,)
PHASES = {"data": DATA, "method": METHOD, "store": STORE}  # where run_cell was when it failed
OUT_OF_MEMORY = ("out of memory", "can't allocate memory", "cannot allocate memory")
BY_ERROR_NAME = {  # the class of an error tag written before failure_class was recorded
    "DataError": DATA,
    "TrainingDivergedError": METHOD,
    "ConfigError": SETUP,
    "UnknownNameError": SETUP,
    "OutOfMemoryError": RESOURCES,
    "MemoryError": RESOURCES,
    "WorkerDiedError": INTERRUPTED,
    "KeyboardInterrupt": INTERRUPTED,
    "StopCell": INTERRUPTED,
}


def out_of_memory(err: BaseException) -> bool:
    """A CPU, CUDA or MPS allocation failure (torch raises a RuntimeError subclass)."""
    if isinstance(err, MemoryError):
        return True
    return isinstance(err, RuntimeError) and any(t in str(err).lower() for t in OUT_OF_MEMORY)


def classify(err: BaseException, phase: str) -> str:
    """The failure class of ``err``, raised while ``run_cell`` was in ``phase`` (``data``:
    loading the dataset and masks; ``method``: building, training, evaluating; ``store``:
    recording the finished run)."""
    if out_of_memory(err):
        return RESOURCES
    if isinstance(err, DataError):
        return DATA
    if isinstance(err, TrainingDivergedError):
        return METHOD
    if isinstance(err, BenchError):
        return SETUP
    if isinstance(err, OSError):
        return RESOURCES
    return PHASES[phase]


def recorded_class(status: str, tags: Mapping[str, str]) -> str:
    """The failure class of a FAILED or KILLED run ("" for any other status): its tag
    ``failure_class``, else ``interrupted`` for a KILLED run and, for a FAILED one, the
    class of the exception named in its ``error`` tag (an unknown name counts as the
    method's, as every failure did before the tag)."""
    if status not in ("FAILED", "KILLED"):
        return ""
    if tags.get(TAG):
        return tags[TAG]
    if status == "KILLED":
        return INTERRUPTED
    return BY_ERROR_NAME.get(tags.get("error", "").partition(":")[0].strip(), METHOD)


def is_sticky(status: str, tags: Mapping[str, str]) -> bool:
    """Whether a recorded run keeps its cell from running again without ``--retry-failed``."""
    return status == "FAILED" and recorded_class(status, tags) in STICKY
