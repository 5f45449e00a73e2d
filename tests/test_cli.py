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
    code, out, err = _run(
        [
            "trace",
            "--prompt",
            "The capital of France is",
            "--controls",
            "--mode",
            "attention-kept",
            "--json",
            str(path),
        ],
        capsys,
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["size", "edges", "TV", "nucleus", "top-1"]
    assert "TV[inverse]" in lines[0] and "TV[random]" in lines[0]
    assert any(line.split()[0] == "1" for line in lines[1:])  # the full graph row
    assert "density" in out
    data = json.loads(path.read_text())
    assert data["settings"]["mode"] == "attention-kept" and data["settings"]["controls"] is True


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "   "], "the prompt is empty"),
        (["--prompt", "one two three four five six", "--max-tokens", "3"], "limit is 3"),
        (["--prompt", "hi there", "--model", "no-such-org/no-such-model"], "model 'no-such-org/no-such-model'"),
        (["--prompt", "hi there", "--sizes", "0.1,abc"], "--sizes"),
        (["--prompt", "hi there", "--sizes", "0,0.5"], "sizes must be"),
    ],
)
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
    proc = subprocess.run(
        [sys.executable, "-m", "explorer", "trace", "--prompt", ""],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: the prompt is empty"


def test_trace_at_a_position_with_target_and_foil(tmp_path, capsys, smollm):
    path = tmp_path / "t.json"
    code, out, _ = _run(
        [
            "trace",
            "--prompt",
            "The capital of France is Paris",
            "--position",
            "-2",
            "--target",
            " Paris",
            "--foil",
            " London",
            "--sizes",
            "0.01,0.1,1",
            "--json",
            str(path),
        ],
        capsys,
    )
    assert code == 0 and "target ' Paris'" in out and "foil ' London'" in out
    data = json.loads(path.read_text())
    assert data["position"] == len(data["tokens"]) - 1 and data["next_token"] == " Paris"
    assert data["target"] == " Paris" and data["foil"] == " London"
    assert all(s["outputs"]["trace"]["target_prob"] is not None for s in data["strata"])


def test_strip_prints_one_row_per_position_and_writes_csv_and_json(tmp_path, capsys, smollm):
    csv_path, json_path = tmp_path / "s.csv", tmp_path / "s.json"
    code, out, _ = _run(
        [
            "strip",
            "--text",
            "The cat sat on the mat",
            "--positions",
            "2:",
            "--sizes",
            "0.01,0.1,1",
            "--csv",
            str(csv_path),
            "--json",
            str(json_path),
        ],
        capsys,
    )
    assert code == 0
    data = json.loads(json_path.read_text())
    rows = csv_path.read_text().splitlines()
    n = len(data["tokens"])
    assert [p["position"] for p in data["positions"]] == list(range(2, n)) and len(rows) == n - 2 + 1
    assert out.splitlines()[0].split()[:3] == ["pos", "token", "next"]
    assert sorted(data["traces"], key=int) == [str(t) for t in range(2, n)]


def test_strip_of_a_generated_continuation(capsys, smollm):
    code, out, _ = _run(
        ["strip", "--prompt", "Once upon a time", "--generate", "3", "--top-p", "0.6", "--sizes", "0.1,1"], capsys
    )
    assert code == 0 and "(* generated)" in out and out.count("*") >= 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["trace", "--prompt", "hi there", "--position", "40"], "outside the text"),
        (["trace", "--prompt", "hi there", "--position", "0"], "outside the text"),
        (["strip", "--text", "  "], "the prompt is empty"),
        (["strip", "--generate", "5"], "--generate needs --prompt"),
        (["strip", "--prompt", "hi there"], "give --text, or --prompt with --generate"),
        (["strip", "--text", "hi there", "--positions", "x"], "positions: 'x'"),
        (["strip", "--prompt", "hi there", "--generate", "0"], "at least 1"),
    ],
)
def test_bad_positions_and_strips_give_one_line(args, message, capsys):
    code, _, err = _run(args, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err


@pytest.mark.parametrize(
    "args, message",
    [
        (["trace", "--prompt", "hi there", "--sizes", "nan"], "sizes must be numbers with 0 < s <= 1, got nan"),
        (["trace", "--prompt", "hi there", "--sizes", "1e-9"], "the sizes give no edge on this prompt"),
        (["trace", "--prompt", "hi there", "--sizes", ""], "--sizes: give at least one size"),
        (["trace", "--prompt", "hi there", "--seed", "-1", "--controls"], "--seed must be at least 0, got -1"),
        (["trace", "--prompt", "a\ud800b"], "the prompt is not valid text: character 1 is a lone surrogate (U+D800)"),
        (["trace", "--prompt", "hi there", "--target", "\udcff"], "the target is not valid text"),
        (["trace", "--prompt", "hi there", "--device", "meta"], "unknown device 'meta'"),
        (["trace", "--prompt", "hi there", "--device", "cuda:banana"], "unknown device 'cuda:banana'"),
        (["trace", "--prompt", "hi there", "--max-tokens", "0"], "--max-tokens must be at least 1, got 0"),
        (["trace", "--prompt", "hi there", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["strip", "--text", "hi there you", "--sizes", "1e-9"], "the sizes give no edge on the text's first traced"),
        (
            ["strip", "--prompt", "hi there", "--generate", "2", "--sizes", "1e-9"],
            "the sizes give no edge on the prompt",
        ),
        (["strip", "--text", "hi there you", "--max-tokens", "0"], "--max-tokens must be at least 1"),
        (["corpus", "--source", "project", "--modes", "all,all"], "--modes: ablation mode 'all' is given twice"),
        (["corpus", "--source", "project", "--modes", "all,"], "holds an empty mode name"),
        (["corpus", "--source", "project", "--max-tokens", "0"], "--max-tokens must be at least 1, got 0"),
        (["corpus", "--source", "project", "--sizes", ""], "--sizes: give at least one size"),
        (
            ["corpus", "--source", "project", "--limit", "2", "--sizes", "1e-9"],
            "the sizes give no edge on the corpus's shortest prompt",
        ),
    ],
)
def test_bad_settings_give_one_line_before_any_work(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    corpus = ["--out", str(out)] + ([] if "--limit" in args else ["--limit", "1"])  # short, were it run
    code, _, err = _run(args + (corpus if args[0] == "corpus" else []), capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    assert not out.exists()  # a refused corpus run writes nothing


def test_sizes_that_give_no_edge_name_the_smallest_that_would(capsys):
    code, _, err = _run(["trace", "--prompt", "hi there", "--sizes", "1e-9,2e-9"], capsys)
    smallest = float(err.rsplit(" ", 1)[1])
    edges = int(err.split("E = ")[1].split()[0])
    assert code == 2 and int(smallest * edges) == 1 and int(smallest / 1.01 * edges) == 0, err
    code, out, _ = _run(["trace", "--prompt", "hi there", "--sizes", f"{smallest},1"], capsys)
    assert code == 0 and any(line.split()[:2] == [f"{smallest:.2g}", "1"] for line in out.splitlines()), out


def test_a_missing_apple_gpu_is_one_line(capsys):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    code, _, err = _run(["trace", "--prompt", "hi there", "--device", "mps"], capsys)
    assert code == 2 and err == "error: device 'mps' asked for, but Apple MPS is not available here\n"


def test_a_folder_of_pickled_weights_is_refused(tmp_path, capsys):
    from tests.test_loading import model_folder

    folder = model_folder(tmp_path / "m", weights="pickle")
    code, _, err = _run(["trace", "--prompt", "hello world", "--model", str(folder)], capsys)
    assert code == 2 and err.count("\n") == 1 and "pytorch_model.bin, a pickle" in err, err


def test_a_broken_folder_says_what_is_wrong_with_it(tmp_path, capsys):
    from tests.test_loading import model_folder

    folder = model_folder(tmp_path / "m")
    (folder / "config.json").write_text("{")
    code, _, err = _run(["trace", "--prompt", "hello world", "--model", str(folder)], capsys)
    assert code == 2 and err.count("\n") == 1 and "config.json is not valid JSON" in err, err
    assert "cannot be reached" not in err


def test_a_byte_that_is_not_utf8_in_argv_is_one_line():
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "-m", "explorer", "trace", "--prompt", b"\xed\xa0\x80"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: the prompt is not valid text"), proc.stderr


def test_ctrl_c_is_one_line(monkeypatch, capsys):
    from explorer import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "trace", interrupted)
    code, _, err = _run(["trace", "--prompt", "hi there"], capsys)
    assert code == 2 and err == "error: interrupted (results stored so far are kept)\n"


def test_ctrl_c_in_a_corpus_run_keeps_what_is_stored_and_the_rerun_resumes(tmp_path, monkeypatch, capsys):
    from explorer.corpus import rows
    from explorer.corpus.store import load_results

    cfg = {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 49152,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    source = tmp_path / "prompts.txt"
    source.write_text("The cat sat on the mat\nOne two three four five\nHello there my old friend\n")
    out = tmp_path / "run"
    args = [
        "corpus",
        "--model",
        f"random:{tmp_path}",
        "--device",
        "cpu",
        "--source",
        str(source),
        "--out",
        str(out),
        "--sizes",
        "0.5,1",
        "--modes",
        "all",
        "--no-controls",
    ]
    real, calls = rows.trace_rows, []

    def interrupt_the_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(rows, "trace_rows", interrupt_the_second)
    code, _, err = _run(args, capsys)
    assert code == 2 and "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error")] == [
        "error: interrupted (results stored so far are kept)"
    ]
    assert set(load_results(out).table["prompt_index"]) == {0}
    monkeypatch.setattr(rows, "trace_rows", real)
    code, out_text, _ = _run(args, capsys)
    assert code == 0 and "2 prompts traced, 1 already in" in out_text, out_text
    assert set(load_results(out).table["prompt_index"]) == {0, 1, 2}


def test_a_prompt_that_starts_with_a_dash_is_one_line_with_the_way_to_write_it(capsys):
    """Found by the unicode fuzz test: argparse takes "-x" for an option and printed its usage and error."""
    code, out, err = _run(["trace", "--prompt", "-x", "--sizes", "0.5,1"], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "--prompt=" in err
    code, out, err = _run(["trace", "--prompt", "x", "--no-such-option"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--no-such-option" in err
