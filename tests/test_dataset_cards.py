"""Every shipped dataset card parses, names a registered adapter and resolves its options;
a broken card fails in one line that names the card and the fix."""

from __future__ import annotations

import pytest
import yaml

from bench.cli import main
from bench.data import ADAPTERS, DiskAdapter, adapter_for, all_cards, get_card, load_priors
from bench.errors import ConfigError, DataError, UnknownNameError

CARDS = sorted(all_cards())


@pytest.mark.parametrize("name", CARDS)
def test_every_card_names_a_registered_adapter_that_accepts_its_options(name):
    card = get_card(name)
    adapter = adapter_for(name)
    assert type(adapter) is ADAPTERS.entry(card.adapter).obj
    assert adapter.options == card.options and adapter.name == name
    assert card.summary and card.modalities
    assert {"citation", "licence", "obtain"} <= set(card.meta), "say where the data comes from"
    for key in card.options:  # each option may be overridden by itself
        adapter_for(name, {key: card.options[key]})


@pytest.mark.parametrize("name", CARDS)
def test_every_priors_file_loads_a_text_of_each_kind_for_every_class(name):
    card = get_card(name)
    if card.priors_file is None:
        assert load_priors(card) == {}
        return
    assert (card.path.parent / card.priors_file).is_file()
    priors = load_priors(card)
    assert set(priors) == set(card.classes)
    assert all(set(texts) >= {"naive", "step1", "cot"} for texts in priors.values())


@pytest.mark.parametrize("name", CARDS)
def test_every_card_passes_its_check_or_says_where_to_get_the_data(name, monkeypatch):
    card = get_card(name)
    adapter = adapter_for(name)
    if not isinstance(adapter, DiskAdapter):
        info = adapter.check()
        assert info.classes == tuple(card.classes) and info.name == name
        return
    monkeypatch.delenv(f"BENCH_DATA_{name.upper().replace('-', '_')}", raising=False)
    with pytest.raises(DataError, match=f"--data-root {name}=") as err:
        adapter.check()
    assert "\n" not in str(err.value)


def write_card(folder, name="toy", **fields):
    card = {
        "name": name,
        "summary": "a toy card",
        "adapter": "synthetic-retina",
        "classes": {"normal": "Normal", "dry_amd": "Dry", "wet_amd": "Wet", "pcv": "PCV"},
        "modalities": [{"name": "fundus", "channels": 3}, {"name": "oct", "channels": 1}],
        "options": dict(get_card("synthetic-retina").options),
        **fields,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(card))
    return folder


def test_a_card_folder_from_the_environment_replaces_the_shipped_cards(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(write_card(tmp_path / "cards")))
    assert sorted(all_cards()) == ["toy"]
    assert adapter_for("toy").check().name == "toy"


def test_an_unregistered_adapter_is_named_with_the_valid_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(write_card(tmp_path / "c", adapter="nope")))
    with pytest.raises(ConfigError, match=r"names adapter 'nope', which is not registered") as err:
        adapter_for("toy")
    assert "synthetic-retina" in str(err.value) and "bench.datasets" in str(err.value)


def test_a_card_without_an_option_its_adapter_reads_is_refused(tmp_path, monkeypatch):
    options = dict(get_card("synthetic-retina").options)
    del options["n_test"]
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(write_card(tmp_path / "c", options=options)))
    with pytest.raises(ConfigError, match=r"toy\.yaml lacks option\(s\) n_test"):
        adapter_for("toy")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed", "is not valid YAML (line 1, column 16: expected ',' or ']'"),
        ("- a list", "is not a YAML mapping"),
        ("name: x\nsummary: y\nadapter: z\nclasses: {}\nmodalities: []\n", "lacks options"),
        (
            "name: x\nsummary: y\nadapter: z\nclasses: [a]\nmodalities: []\noptions: {}\n",
            "classes must be a mapping",
        ),
        (
            "name: x\nsummary: y\nadapter: z\nclasses: {}\nmodalities: [fundus]\noptions: {}\n",
            "each modality needs a name and a number of channels",
        ),
    ],
    ids=["bad-yaml", "not-a-mapping", "missing-field", "classes-list", "modality-name"],
)
def test_a_malformed_card_fails_in_one_line(tmp_path, monkeypatch, capsys, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(tmp_path))
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert message in err and "bad.yaml" in err and err.count("\n") == 1


def test_a_cards_folder_that_does_not_exist_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATASETS_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"BENCH_DATASETS_DIR=.*is not a folder"):
        all_cards()


def test_an_unknown_dataset_lists_the_cards():
    with pytest.raises(UnknownNameError, match="unknown dataset 'mmc_amd': choose one of csv"):
        adapter_for("mmc_amd")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("mmc-amd", {"pairs": "most"}, "pairs='most' is not valid: choose one of first, all"),
        ("mmc-amd", {"val_fraction": 1.5}, "val_fraction=1.5 must be a fraction"),
        ("harvard-glaucoma", {"oct_slice": "top"}, "oct_slice='top' is not valid"),
        ("csv", {"modality_columns": "id,m2"}, "modality_columns='id,m2' must name distinct"),
        ("synthetic-retina", {"n_test": 0}, "split sizes are invalid"),
        ("synthetic-retina", {"modalities": 4}, "modalities must be 2"),
        ("derm7pt", {"image_size": "big"}, "image_size='big' must be an integer >= 1"),
    ],
)
def test_a_bad_option_value_fails_when_the_adapter_is_built(name, options, message):
    with pytest.raises(ConfigError, match=message):
        adapter_for(name, options)
