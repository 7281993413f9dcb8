"""A dataset from outside kedr-bench: its adapter registered in code or through the entry-point
group ``bench.datasets``, its card in ``BENCH_DATASETS_DIR``; ``bench list`` shows it, and it
loads and verifies like a built-in one."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import pytest
import yaml

from bench.cli import main
from bench.data import ADAPTERS, DiskAdapter, adapter_for, load_dataset, register_adapter
from bench.data.images import SPLITS, decode_image
from bench.data.scan import Sample, Scan, ScanLog
from bench.data.verify import verify
from bench.errors import DataError
from bench.spec import DatasetRef
from tests.data_fixtures import write_image

REPO = Path(__file__).resolve().parents[1]


class FolderPairs(DiskAdapter):
    """``<root>/<split>/<class>/<id>_<modality>.png``: one folder per split and class."""

    def check_layout(self, root: Path) -> None:
        if not all((root / split).is_dir() for split in SPLITS):
            raise DataError(f"{self.name}: {root} lacks train/, val/ and test/: is it the copy?")

    def scan(self, root: Path) -> Scan:
        log = ScanLog()
        modalities = tuple(m["name"] for m in self.card.modalities)
        samples = []
        for split in SPLITS:
            for folder in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                for first in sorted(folder.glob(f"*_{modalities[0]}.png")):
                    sample_id = first.name.removesuffix(f"_{modalities[0]}.png")
                    where = f"{split}/{folder.name}/{sample_id}"
                    log.new_id(sample_id, where)
                    known = folder.name if folder.name in self.card.classes else None
                    label = log.label(known, where, f"folder {folder.name!r}", "the classes")
                    sources = tuple(
                        log.file(folder / f"{sample_id}_{m}.png", f"{sample_id}_{m}.png", where)
                        for m in modalities
                    )
                    samples.append(Sample(sample_id, label, split, sources))
        decoders = tuple(
            partial(decode_image, channels=int(m["channels"])) for m in self.card.modalities
        )
        classes = tuple(self.card.classes)
        return Scan(self.name, root, classes, modalities, samples, log.problems, decoders)


CARD = {
    "name": "folder-pairs",
    "summary": "Paired photographs and sketches in class folders (a third-party layout)",
    "adapter": "test-folder-pairs",
    "classes": {"cat": "Cat", "dog": "Dog"},
    "modalities": [{"name": "photo", "channels": 3}, {"name": "sketch", "channels": 1}],
    "options": {"root": None, "image_size": 16},
    "citation": "none",
    "licence": "CC0",
    "obtain": "written by the test",
}


def build_copy(root: Path) -> dict[str, int]:
    sizes = {"train": 4, "val": 2, "test": 2}
    n = 0
    for split, count in sizes.items():
        for i in range(count):
            label = "cat" if i % 2 else "dog"
            write_image(root / split / label / f"s{n}_photo.png", (20, 20), seed=n)
            write_image(root / split / label / f"s{n}_sketch.png", (20, 20), "L", seed=100 + n)
            n += 1
    return sizes


@pytest.fixture
def folder_pairs():
    register_adapter("test-folder-pairs")(FolderPairs)
    yield
    ADAPTERS.unregister("test-folder-pairs")


def test_an_adapter_registered_in_code_lists_loads_and_verifies(
    folder_pairs, tmp_path, monkeypatch, capsys
):
    cards = tmp_path / "cards"
    cards.mkdir()
    (cards / "folder-pairs.yaml").write_text(yaml.safe_dump(CARD))
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(cards))
    sizes = build_copy(tmp_path / "copy")

    assert main(["list"]) == 0
    assert "folder-pairs             Paired photographs" in capsys.readouterr().out
    root = {"root": str(tmp_path / "copy")}
    info = adapter_for("folder-pairs", root).check()
    assert info.modalities == ("photo", "sketch") and info.channels == (3, 1)
    data = load_dataset(DatasetRef.of("folder-pairs", root), tmp_path / "cache")
    assert {s: len(data.split(s)) for s in SPLITS} == sizes
    assert data.train.images[1].shape == (4, 1, 16, 16)

    write_image(tmp_path / "copy" / "test" / "bird" / "s0_photo.png", (20, 20))  # s0 again
    report = verify("folder-pairs", tmp_path / "copy", decode=False)
    found = {(p.kind, p.where, p.detail) for p in report.problems}
    assert ("duplicate_id", "test/bird/s0", "has the id of train/dog/s0") in found
    assert ("unknown_label", "test/bird/s0", "folder 'bird' is none of the classes") in found
    assert ("missing_file", "s0_sketch.png", "named by test/bird/s0: not on disk") in found
    assert not report.usable


PLUGIN = '''
"""A generated dataset, registered when the entry point imports this module."""
import torch

from bench.data import DatasetAdapter, LoadedDataset, Split, register_adapter


@register_adapter("tiles")
class Tiles(DatasetAdapter):
    OPTIONS = ("per_class",)

    def check_source(self):
        pass

    def load(self, cache_dir):
        info = self.info()
        n, size = int(self.options["per_class"]), self.image_size
        labels = torch.arange(info.num_classes).repeat(n)
        image = (40 * labels).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, size, size)
        split = Split((image.clone(), image.clone()), labels)
        return LoadedDataset(info, split, split, split)
'''


def test_an_adapter_from_an_entry_point_is_found_by_bench_list_and_loads(tmp_path):
    plugins = tmp_path / "site"
    (plugins / "tiles_plugin-0.1.dist-info").mkdir(parents=True)
    (plugins / "tiles_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tiles-plugin\nVersion: 0.1\n"
    )
    (plugins / "tiles_plugin-0.1.dist-info" / "entry_points.txt").write_text(
        "[bench.datasets]\ntiles = tiles_plugin\n"
    )
    (plugins / "tiles_plugin.py").write_text(textwrap.dedent(PLUGIN))
    card = {
        **CARD,
        "name": "tiles",
        "summary": "Flat grey tiles, one shade per class",
        "adapter": "tiles",
        "options": {"image_size": 8, "per_class": 3},
    }
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "tiles.yaml").write_text(yaml.safe_dump(card))
    probe = textwrap.dedent(
        """
        from bench.cli import main
        from bench.data import ADAPTERS, load_dataset
        from bench.spec import DatasetRef
        main(["list"])
        data = load_dataset(DatasetRef.of("tiles", {}), "cache")
        shape = tuple(data.train.images[0].shape)
        print("loaded", len(data.train), shape, ADAPTERS.origin("tiles"))
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugins), str(REPO)]),
        "BENCH_DATASETS_DIR": str(tmp_path / "cards"),
    }
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split("datasets:")[1].split("metrics:")[0].split()
    assert listed[0] == "tiles" and " ".join(listed[1:]) == card["summary"]
    assert f"loaded 6 (6, 1, 8, 8) {plugins / 'tiles_plugin.py'}" in done.stdout
