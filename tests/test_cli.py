"""The command line: a table and JSON on success; one line and exit status 2 on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from explorer.__main__ import main


def _run(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_trace_prints_table_and_writes_json(tmp_path, capsys, smollm):
    path = tmp_path / "t.json"
    code, out, err = _run(["trace", "--prompt", "The capital of France is", "--controls",
                           "--mode", "attention-kept", "--json", str(path)], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["size", "edges", "TV", "nucleus", "top-1"]
    assert "TV[inverse]" in lines[0] and "TV[random]" in lines[0]
    assert any(line.split()[0] == "1" for line in lines[1:])  # the full graph row
    assert "density" in out
    data = json.loads(path.read_text())
    assert data["settings"]["mode"] == "attention-kept" and data["settings"]["controls"] is True


@pytest.mark.parametrize("args, message", [
    (["--prompt", "   "], "the prompt is empty"),
    (["--prompt", "one two three four five six", "--max-tokens", "3"], "limit is 3"),
    (["--prompt", "hi there", "--model", "no-such-org/no-such-model"], "model 'no-such-org/no-such-model'"),
    (["--prompt", "hi there", "--sizes", "0.1,abc"], "--sizes"),
    (["--prompt", "hi there", "--sizes", "0,0.5"], "sizes must be"),
])
def test_bad_input_gives_one_line_and_status_2(args, message, capsys):
    code, out, err = _run(["trace", *args], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_unsupported_architecture(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertForMaskedLM"]}))
    code, _, err = _run(["trace", "--prompt", "hi there", "--model", str(tmp_path)], capsys)
    assert code == 2
    assert "unsupported architecture 'bert'" in err and "Llama" in err and "GPT-NeoX" in err


def test_missing_local_folder(tmp_path, capsys):
    code, _, err = _run(["trace", "--prompt", "hi there", "--model", str(tmp_path / "nope")], capsys)
    assert code == 2 and "no model folder" in err


def test_as_a_process():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "explorer", "trace", "--prompt", ""],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: the prompt is empty"


def test_trace_at_a_position_with_target_and_foil(tmp_path, capsys, smollm):
    path = tmp_path / "t.json"
    code, out, _ = _run(["trace", "--prompt", "The capital of France is Paris", "--position", "-2",
                         "--target", " Paris", "--foil", " London", "--sizes", "0.01,0.1,1", "--json", str(path)],
                        capsys)
    assert code == 0 and "target ' Paris'" in out and "foil ' London'" in out
    data = json.loads(path.read_text())
    assert data["position"] == len(data["tokens"]) - 1 and data["next_token"] == " Paris"
    assert data["target"] == " Paris" and data["foil"] == " London"
    assert all(s["outputs"]["trace"]["target_prob"] is not None for s in data["strata"])


def test_strip_prints_one_row_per_position_and_writes_csv_and_json(tmp_path, capsys, smollm):
    csv_path, json_path = tmp_path / "s.csv", tmp_path / "s.json"
    code, out, _ = _run(["strip", "--text", "The cat sat on the mat", "--positions", "2:", "--sizes", "0.01,0.1,1",
                         "--csv", str(csv_path), "--json", str(json_path)], capsys)
    assert code == 0
    data = json.loads(json_path.read_text())
    rows = csv_path.read_text().splitlines()
    n = len(data["tokens"])
    assert [p["position"] for p in data["positions"]] == list(range(2, n)) and len(rows) == n - 2 + 1
    assert out.splitlines()[0].split()[:3] == ["pos", "token", "next"]
    assert sorted(data["traces"], key=int) == [str(t) for t in range(2, n)]


def test_strip_of_a_generated_continuation(capsys, smollm):
    code, out, _ = _run(["strip", "--prompt", "Once upon a time", "--generate", "3", "--top-p", "0.6",
                         "--sizes", "0.1,1"], capsys)
    assert code == 0 and "(* generated)" in out and out.count("*") >= 3


@pytest.mark.parametrize("args, message", [
    (["trace", "--prompt", "hi there", "--position", "40"], "outside the text"),
    (["trace", "--prompt", "hi there", "--position", "0"], "outside the text"),
    (["strip", "--text", "  "], "the prompt is empty"),
    (["strip", "--generate", "5"], "--generate needs --prompt"),
    (["strip", "--prompt", "hi there"], "give --text, or --prompt with --generate"),
    (["strip", "--text", "hi there", "--positions", "x"], "positions: 'x'"),
    (["strip", "--prompt", "hi there", "--generate", "0"], "at least 1"),
])
def test_bad_positions_and_strips_give_one_line(args, message, capsys):
    code, _, err = _run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
