"""Pre-flight: what a grid needs, checked before any cell starts, so that a problem costs
one line and exit status 2, and nothing is recorded.

:func:`check_grid` checks, for every distinct part of the grid:

- the device of each training recipe exists here (``--device cuda`` on a CPU machine);
- the executor can start (Ray installed for ``--executor ray``);
- each dataset: its adapter accepts the options, and (``read_disk``) its source is usable
  (:meth:`bench.data.DatasetAdapter.check`: the root exists, the index or manifest header
  is readable with its columns, classes and modalities are not empty) and a scan of a copy
  on disk finds no blocking problem (every file named is there), decoding nothing;
- each method is built once, on the CPU, with its hyper-parameters on that dataset's
  description: a value of the wrong type, absent pretrained weights, a missing text encoder
  or a malformed priors file fails here; a frozen backbone is built once with its weights.

:func:`check_store` checks that the results folder and its cache can be written. Only the
dataset sources need data on disk; ``bench run --dry-run`` runs every other check (the
methods of datasets whose description needs the disk are then left out).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import yaml

from bench.data import DatasetAdapter, DiskAdapter, adapter_for
from bench.encoders import create_encoder
from bench.errors import BenchError, ConfigError
from bench.files import yaml_problem
from bench.interface import DatasetInfo, build_method
from bench.runtime import resolve_device
from bench.spec import CellSpec, DatasetRef
from bench.tracking import check_writable

log = logging.getLogger(__name__)


def check_devices(cells: list[CellSpec]) -> None:
    """Every recipe's device exists here (``auto`` always does)."""
    for name in sorted({cell.train.device for cell in cells}):
        resolve_device(name)


def check_executor(name: str) -> None:
    """The executor's own dependencies are importable."""
    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError as err:
            raise ConfigError(
                "--executor ray needs Ray: pip install 'kedr-bench[ray]' (or use --executor "
                "process)"
            ) from err


def dataset_adapters(cells: list[CellSpec]) -> dict[DatasetRef, DatasetAdapter]:
    """The adapter of every dataset of the grid; building one checks its options."""
    return {
        ref: adapter_for(ref.name, dict(ref.options)) for ref in _unique(c.dataset for c in cells)
    }


def check_dataset(adapter: DatasetAdapter) -> DatasetInfo:
    """:meth:`~bench.data.DatasetAdapter.check`, then for a copy on disk its scan (every
    sample's files looked up, none decoded): a blocking problem (a file that is not there,
    a path leaving the manifest's folder, an unknown label...) fails here, not in a cell."""
    info = adapter.check()
    if isinstance(adapter, DiskAdapter):
        adapter.scan(adapter.root()).raise_if_blocking()
    return info


def check_datasets(
    adapters: dict[DatasetRef, DatasetAdapter], read_disk: bool = True
) -> dict[DatasetRef, DatasetInfo]:
    """The description of every dataset a method will see, checked; a dataset read from
    disk is checked (and described) only when ``read_disk``."""
    return {
        ref: check_dataset(adapter)
        for ref, adapter in adapters.items()
        if read_disk or not isinstance(adapter, DiskAdapter)
    }


def _unique(items: Any) -> list[Any]:
    """``items`` without repeats, in order; compared by ``repr`` since a hyper-parameter
    value may be a list (unhashable)."""
    return list({repr(item): item for item in items}.values())


def _files_named(hparams: tuple[tuple[str, Any], ...]) -> str:
    """The hyper-parameters that name a file on disk, as ``key=path`` (a method may read
    such a file from its text, so that PyYAML's error cannot name it)."""
    files = [
        f"{key}={value}"
        for key, value in hparams
        if isinstance(value, str) and Path(value).expanduser().is_file()
    ]
    return " or ".join(files) or "it reads"


def _frozen_width(frozen: dict[str, Any], info: DatasetInfo) -> int:
    """The width of the frozen backbone's features (building it checks name and weights)."""
    encoder = create_encoder(frozen["name"], info.channels[0], pretrained=frozen.get("pretrained"))
    return int(encoder.feature_dim)


def check_methods(cells: list[CellSpec], infos: dict[DatasetRef, DatasetInfo]) -> None:
    """Build every (method, hyper-parameters, dataset) of the grid once, on the CPU, for the
    datasets in ``infos``; any failure is one ConfigError line naming the method."""
    widths: dict[tuple, int] = {}
    for method, hparams, ref, frozen in _unique(
        (c.method, c.hparams, c.dataset, c.frozen_backbone) for c in cells if c.dataset in infos
    ):
        values = dict(hparams)
        try:
            if frozen:
                key = (ref, frozen)
                if key not in widths:
                    widths[key] = _frozen_width(dict(frozen), infos[ref])
                values.update(backbone="features", feature_dim=widths[key])
            build_method(method, infos[ref], values)
        except BenchError:
            raise
        except yaml.YAMLError as err:  # a file a method reads, such as a priors file
            raise ConfigError(
                f"{method} cannot read the YAML file {_files_named(hparams)} "
                f"({yaml_problem(err)}): fix the file"
            ) from err
        except Exception as err:  # a value of the wrong type or range reaches the method
            shown = ", ".join(f"{k}={v!r}" for k, v in hparams) or "its defaults"
            raise ConfigError(
                f"{method} cannot be built on {ref.name} with {shown} ({type(err).__name__}: "
                f"{err}): fix the hyper-parameter values (bench list shows each method's)"
            ) from err


def check_grid(cells: list[CellSpec], executor: str = "local", read_disk: bool = True) -> None:
    """Every pre-flight check but the store's (see the module docstring)."""
    check_devices(cells)
    check_executor(executor)
    infos = check_datasets(dataset_adapters(cells), read_disk)
    check_methods(cells, infos)
    log.info("pre-flight passed: %d cells, %d datasets checked", len(cells), len(infos))


def check_disk(cells: list[CellSpec]) -> None:
    """What :func:`check_grid` with ``read_disk=False`` left out: the datasets read from
    disk, and the methods of their cells."""
    adapters = {
        ref: adapter
        for ref, adapter in dataset_adapters(cells).items()
        if isinstance(adapter, DiskAdapter)
    }
    infos = check_datasets(adapters)
    check_methods([c for c in cells if c.dataset in infos], infos)


def check_output_folder(folder: str | Path, flag: str) -> Path:
    """``folder``, which can be created and written: it, or the nearest folder above it
    that exists, is a folder this process may write into (nothing is created); ``flag``
    names the option that set it, for the one-line error."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"output folder {str(folder)!r} cannot be written ({existing} is not a writable "
            f"folder): pass {flag} with a folder you can write to"
        )
    return folder


def check_store(results_dir: str | Path) -> Path:
    """The results folder and its cache exist and can be written; the resolved folder."""
    folder = check_writable(Path(results_dir))
    check_writable(folder / "cache")
    return folder
