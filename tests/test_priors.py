"""`bench priors`: show the shipped texts; generate new ones against a fake chat server."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import yaml

from bench.cli import main
from bench.data import all_cards
from bench.data.cards import cards_dir
from bench.errors import ConfigError
from bench.priors import import_released

SECRET = "sk-test-never-log-me"


class FakeChat(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeChat.seen.append({"auth": self.headers["Authorization"], "body": body})
        prompt = body["messages"][0]["content"]
        reply = {
            "choices": [{"message": {"content": f"answer #{len(FakeChat.seen)} to: {prompt[:40]}"}}]
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_server():
    server = HTTPServer(("127.0.0.1", 0), FakeChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    FakeChat.seen = []
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def test_every_card_with_priors_has_all_texts_for_every_class():
    for card in all_cards().values():
        if not card.priors_file:
            continue
        raw = yaml.safe_load((card.path.parent / card.priors_file).read_text())
        assert set(raw["prompts"]) >= {"naive", "cot_step1", "cot_step2"}
        assert set(raw["classes"]) == set(card.classes)
        for texts in raw["classes"].values():
            assert {"naive", "step1", "cot"} <= set(texts) and all(texts.values())


def test_show_prints_each_class(capsys):
    assert main(["priors", "show", "synthetic-retina"]) == 0
    out = capsys.readouterr().out
    assert "Wet AMD (wet_amd)" in out and "- cot:" in out


def test_generate_uses_two_step_cot_and_never_writes_the_key(
    fake_server, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("BENCH_LLM_BASE_URL", fake_server)
    monkeypatch.setenv("BENCH_LLM_API_KEY", SECRET)
    out = tmp_path / "priors.yaml"
    assert (
        main(["priors", "generate", "synthetic-retina", "--model", "m-1", "--out", str(out)]) == 0
    )
    assert len(FakeChat.seen) == 4 * 3  # per class: step 1, naive, step 2
    assert {s["auth"] for s in FakeChat.seen} == {f"Bearer {SECRET}"}
    step2 = [s for s in FakeChat.seen if "answer #" in s["body"]["messages"][0]["content"]]
    assert len(step2) == 4  # step 2 prompts carry the step-1 answer
    written = out.read_text()
    assert SECRET not in written and SECRET not in capsys.readouterr().out
    document = yaml.safe_load(written)
    assert document["provenance"]["model"] == "m-1"
    assert set(document["provenance"]["prompt_sha256"]) == {"naive", "cot_step1", "cot_step2"}
    assert document["classes"]["pcv"]["cot"].startswith("answer #")


def test_generate_writes_to_the_working_directory_by_default(fake_server, tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_LLM_BASE_URL", fake_server)
    monkeypatch.setenv("BENCH_LLM_API_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    shipped = sorted(cards_dir().iterdir())
    assert main(["priors", "generate", "synthetic-retina", "--model", "m-2"]) == 0
    (written,) = tmp_path.glob("synthetic-retina.priors.*.yaml")
    assert yaml.safe_load(written.read_text())["provenance"]["model"] == "m-2"
    assert sorted(cards_dir().iterdir()) == shipped  # nothing written beside the cards


def test_generate_without_a_key_says_which_variable_to_set(monkeypatch, capsys):
    for name in ("BENCH_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(["priors", "generate", "synthetic-retina", "--model", "m"]) == 2
    assert "set BENCH_LLM_API_KEY or OPENAI_API_KEY" in capsys.readouterr().err


def test_unreachable_server_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setenv("BENCH_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("BENCH_LLM_API_KEY", SECRET)
    assert main(["priors", "generate", "synthetic-retina", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert "no usable answer from the chat API" in err and SECRET not in err


# bench priors import-released --------------------------------------------------------------

# A model file in the shape of lijing-coder/KEDR@6368bb8:model/KEDR.py (imports that do not
# exist here, side effects at import, the vocabs inside FusionNet.__init__), with texts of
# our own. Importing or executing it would fail: the importer must only parse it.
RELEASED_SHAPE = """# -*- coding: utf-8 -*-
import os
os.environ["CUDA_VISIBLE_DEVICES"] = "6"
import torch.nn as nn
import ot
from .DEQ_fusion import DEQFusion
raise SystemExit("this file was executed")


class FusionNet(nn.Module):
    def __init__(self, num_classes, p_missing, dataset_name):
        super(FusionNet, self).__init__()
        self.temperature = 0.07
        if dataset_name == "SPC":
            print(dataset_name)
            self.vocab = {
                0: "Fixture text: a nevus, symmetric and evenly brown.",
                1: "Fixture text: basal cell carcinoma with arborizing vessels.",
                2: "Fixture text: melanoma, asymmetric with many colours.",
                3: "Fixture text: miscellaneous benign lesions, regular.",
                4: "Fixture text: seborrheic keratosis, stuck-on and waxy.",
            }

        if dataset_name == "MMC":
            print(dataset_name)
            self.vocab = {
                0: "Fixture text: wet AMD with leaking neovascular tissue.",
                1: "Fixture text: dry AMD with drusen and atrophy.",
                2: "Fixture text: PCV with polypoidal lesions.",
                3: "Fixture text: a normal retina with a preserved fovea.",
            }

        if dataset_name == "Harvard":
            print(dataset_name)
            self.vocab = {
                0: "Fixture text: a normal optic disc and retina.",
                1: "Fixture text: glaucoma with a cupped disc and thin RNFL.",
            }
        self.class_embedding = None
"""


def released_clone(root, text=RELEASED_SHAPE):
    (root / "model").mkdir(parents=True)
    (root / "model" / "KEDR.py").write_text(text)
    return root


def test_import_released_writes_one_priors_file_per_dataset(tmp_path, capsys):
    clone = released_clone(tmp_path / "KEDR")
    out = tmp_path / "priors"
    args = ["priors", "import-released", str(clone), "--out", str(out), "--commit", "6368bb8"]
    assert main(args) == 0
    assert "use --set hparams.kedr.priors_file=" in capsys.readouterr().out
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "derm7pt.priors.released.yaml",
        "harvard-glaucoma.priors.released.yaml",
        "mmc-amd.priors.released.yaml",
    ]
    derm = yaml.safe_load((out / "derm7pt.priors.released.yaml").read_text())
    assert derm["dataset"] == "derm7pt" and list(derm["classes"]) == [
        "bcc",
        "nev",
        "mel",
        "misc",
        "sk",
    ]  # the card's order
    assert derm["classes"]["bcc"] == {
        "cot": "Fixture text: basal cell carcinoma with arborizing vessels."
    }
    provenance = derm["provenance"]
    assert provenance["commit"] == "6368bb8" and provenance["vocab"] == "SPC"
    assert provenance["file"] == str((clone / "model" / "KEDR.py").resolve())
    assert provenance["date"] and len(provenance["file_sha256"]) == 64
    mmc = yaml.safe_load((out / "mmc-amd.priors.released.yaml").read_text())
    assert mmc["classes"]["wet_amd"]["cot"].startswith("Fixture text: wet AMD")
    glaucoma = yaml.safe_load((out / "harvard-glaucoma.priors.released.yaml").read_text())
    assert glaucoma["classes"]["no_glaucoma"]["cot"].endswith("normal optic disc and retina.")


def test_an_imported_file_drives_kedr_through_priors_file(tmp_path):
    from bench.data import dataset_info, get_card
    from methods.kedr import prior_texts

    (path,) = [
        p
        for p in import_released(released_clone(tmp_path / "KEDR"), tmp_path / "out")
        if p.name.startswith("mmc-amd")
    ]
    card = get_card("mmc-amd")
    info = dataset_info(card, card.options)
    texts = prior_texts(info, "cot", str(path))
    assert texts[info.classes.index("pcv")] == "Fixture text: PCV with polypoidal lesions."
    with pytest.raises(ConfigError, match="has no 'naive' text for normal, dry_amd"):
        prior_texts(info, "naive", str(path))


def test_the_commit_of_a_git_clone_is_read_when_not_given(tmp_path):
    clone = released_clone(tmp_path / "KEDR")
    git = ["git", "-C", str(clone), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "fixture"], check=True)
    head = subprocess.run([*git[:3], "rev-parse", "HEAD"], capture_output=True, text=True)
    (path, *_) = import_released(clone / "model" / "KEDR.py", tmp_path / "out")
    assert yaml.safe_load(path.read_text())["provenance"]["commit"] == head.stdout.strip()


@pytest.mark.parametrize(
    "edit, error",
    [
        (lambda t: t.replace('0: "Fixture text: a nevus', '9: "Fixture text: a nevus'), "indices"),
        (lambda t: t.replace("basal cell carcinoma", "a lesion"), "does not mention 'basal cell'"),
        (
            lambda t: t.replace('"Fixture text: a nevus', 'describe("nevus") + "'),
            "is not a literal",
        ),
        (lambda t: t.replace('"Harvard"', '"ISIC"'), "no card maps to"),
        (lambda t: t.replace("self.vocab", "self.names"), "holds no `if dataset_name"),
        (lambda t: t + "\ndef broken(:\n", "cannot parse"),
    ],
)
def test_a_file_that_is_not_the_released_shape_is_a_one_line_error(tmp_path, capsys, edit, error):
    clone = released_clone(tmp_path / "KEDR", edit(RELEASED_SHAPE))
    assert main(["priors", "import-released", str(clone), "--out", str(tmp_path / "o")]) == 2
    assert error in capsys.readouterr().err


def test_a_missing_clone_says_what_to_pass(tmp_path, capsys):
    assert main(["priors", "import-released", str(tmp_path / "nowhere")]) == 2
    assert "pass a clone of github.com/lijing-coder/KEDR" in capsys.readouterr().err
