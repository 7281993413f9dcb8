"""`bench priors`: show the shipped texts; generate new ones against a fake chat server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
import yaml

from bench.cli import main
from bench.data import all_cards
from bench.data.cards import cards_dir

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
