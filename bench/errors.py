"""User-facing errors. The CLI prints ``str(error)`` on one line and exits with status 2.

Every message says what is wrong and how to fix it (scikit-learn's habit).
"""


class BenchError(Exception):
    """Base class for errors a user can fix."""


class UnknownNameError(BenchError, KeyError):
    """A method, dataset or other registered name that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(BenchError, ValueError):
    """A configuration value or key that is not valid."""


class DataError(BenchError):
    """A dataset copy on disk that cannot be used as it is."""


class TrainingDivergedError(BenchError, FloatingPointError):
    """The loss became NaN or infinite; the cell fails with this reason."""
