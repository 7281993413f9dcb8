"""Data files that ship with kedr-bench: dataset cards and priors, published reference numbers.

In the repository they live outside the code, in ``datasets/`` (cards and priors; no Python,
so that no top-level ``datasets`` package can shadow Hugging Face ``datasets``) and
``results/reference/``. ``pyproject.toml`` maps both into the wheel as package data,
``bench/_resources/datasets`` and ``bench/_resources/reference``, found here with
:mod:`importlib.resources`. An editable install or a source checkout on ``PYTHONPATH`` has
no such folder inside the package (setuptools' editable finder does not map a data-only
folder into a package), so there they are read from the checkout that holds the imported
``bench`` package.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from bench.errors import ConfigError

PACKAGED = "_resources"  # the folder inside the installed bench package
IN_CHECKOUT = {"datasets": Path("datasets"), "reference": Path("results", "reference")}


def shipped_dir(name: str) -> Path:
    """The folder of shipped data ``name`` (``datasets`` or ``reference``)."""
    package = Path(str(files("bench")))
    installed = package / PACKAGED / name
    if installed.is_dir():
        return installed
    checkout = package.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / IN_CHECKOUT[name]).is_dir():
        return checkout / IN_CHECKOUT[name]
    raise ConfigError(
        f"kedr-bench's {name} files are neither in the installed package ({installed}) nor in "
        f"a source checkout ({checkout / IN_CHECKOUT[name]}): reinstall kedr-bench"
        + (" or set BENCH_DATASETS_DIR to a folder of dataset cards" if name == "datasets" else "")
    )
