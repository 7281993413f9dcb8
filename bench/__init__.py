"""kedr-bench: the harness. See README.md and ``bench --help``."""

import os

# torch's profiler (bench profile's CPU memory trace) prints its start/stop to stderr
# unless told otherwise before torch loads.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")

__version__ = "0.1.0"
