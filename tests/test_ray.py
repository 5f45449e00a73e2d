"""Corpus runs sharded over Ray (``explorer.corpus.ray_tracer``): one local Ray instance with two CPUs
for the module, actors on the embedded model. The sharded run writes the same rows as a local run and
resumes one; a worker killed mid-run loses no prompt and duplicates none; prompts that fail every time are
recorded with their reason. Without ``--ray`` nothing imports Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -r requirements-ray.txt")

from explorer.__main__ import main
from explorer.corpus.cluster import RayOptions
from explorer.corpus.driver import ModelSpec
from explorer.corpus.local import corpus_frequencies, run_corpus
from explorer.corpus.ray_tracer import run_corpus_ray
from explorer.corpus.sources import Corpus, Prompt, read_source
from explorer.corpus.store import ResultsStore, RunInfo, load_results
from explorer.options import MODES
from explorer.results import Settings

ROOT = str(Path(__file__).resolve().parent.parent)
TEXTS = ["The capital of France is", "one two three four", "a b a b a", "Hello, my name is", "x = 1 + 2 ="]
SIZES = (0.01, 0.1, 1.0)
MODEL = ModelSpec("smollm2-135m", device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine with two CPUs (so two one-CPU actors), started once for the module."""
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1"}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return path


def _table(folder) -> pd.DataFrame:
    return load_results(folder).table.drop(columns=["seconds"])


def test_sharded_run_equals_a_local_run_and_resumes(local_ray, smollm, text_file, tmp_path):
    corpus = read_source(str(text_file))
    settings = Settings(controls=False, sizes=SIZES)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each one-CPU actor: the same kernels, so the same bits
    try:
        run_corpus(smollm, corpus, tmp_path / "local", settings, MODES, corpus_frequencies(smollm, str(text_file)))
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "ray"
    args = [
        "corpus",
        "--source",
        str(text_file),
        "--out",
        str(out),
        "--sizes",
        "0.01,0.1,1",
        "--no-controls",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--ray",
        "--ray-workers",
        "2",
    ]
    assert main(args + ["--limit", "2"]) == 0  # the first two prompts, through the command line
    assert len(load_results(out).prompts) == 2 * len(MODES)

    seen = []
    summary = run_corpus_ray(
        MODEL,
        corpus,
        out,
        settings,
        MODES,
        freq_source=str(text_file),
        progress=lambda done, total, message: seen.append((done, total)),
        options=RayOptions(workers=2),
    )
    assert (summary.already, summary.traced, summary.failed, summary.workers) == (2, 3, [], 2)
    assert seen[-1] == (5, 5) and [d for d, _ in seen] == sorted(d for d, _ in seen)  # one bar, forward only

    pd.testing.assert_frame_equal(_table(out), _table(tmp_path / "local"), check_exact=True)
    assert RunInfo.read(out).identity() == RunInfo.read(tmp_path / "local").identity()
    ray_freq, local_freq = load_results(out).frequencies, load_results(tmp_path / "local").frequencies
    assert (ray_freq.counts == local_freq.counts).all()
    assert [p.name for p in out.iterdir() if p.name.startswith("part-")] == ["part-00000.parquet"]
    assert not (out / "failed.jsonl").exists()


def test_killed_worker_and_failing_prompts(local_ray, tmp_path, monkeypatch):
    """The first actor kills its own process (SIGKILL) before its second prompt; every actor that is given
    the POISON prompt does the same; one prompt is too long for the token cap. One prompt in flight per
    actor: with more, the reply of the prompt an actor finished just before it died can be lost with it,
    and that prompt is then charged the death instead of the one it died on (see RayTracer._retire)."""
    texts = TEXTS + ["POISON pill", "long " * 80, "the last one"]
    corpus = Corpus("mem", [Prompt(f"p{i}", t) for i, t in enumerate(texts)])
    appended: list[str] = []
    append = ResultsStore.append

    def recording(self, rows):
        appended.extend({r["prompt_id"] for r in rows})
        return append(self, rows)

    monkeypatch.setattr(ResultsStore, "append", recording)
    out = tmp_path / "r"
    summary = run_corpus_ray(
        MODEL,
        corpus,
        out,
        Settings(sizes=(0.1, 1.0), max_tokens=48),
        ("all",),
        options=RayOptions(workers=2, max_retries=1, in_flight=1, fault="after:1,text:POISON"),
    )

    failed = dict(summary.failed)
    assert set(failed) == {"p5", "p6"}
    assert "died 2 times" in failed["p5"] and "limit" in failed["p6"]
    # the two actors given the poison, and the first actor unless the poison was its second prompt
    assert summary.deaths in (2, 3)
    done = {f"p{i}" for i in range(len(texts))} - set(failed)
    assert sorted(appended) == sorted(done)  # each prompt written exactly once
    res = load_results(out)
    assert set(res.prompts["prompt_id"]) == done and summary.traced == len(done)
    assert len(res.table) == len(done) * 2
    lines = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert {(x["prompt_id"], x["text"]) for x in lines} == {("p5", "POISON pill"), ("p6", texts[6])}
    assert not set(failed) & ResultsStore(out, res.run).done_ids()  # a rerun retries them


def test_missing_ray_is_one_line(monkeypatch, capsys, text_file, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    assert main(["corpus", "--source", str(text_file), "--out", str(tmp_path / "r"), "--ray"]) == 2
    assert "pip install -r requirements-ray.txt" in capsys.readouterr().err


def test_a_local_run_imports_no_ray(text_file, tmp_path):
    code = (
        "import sys; from explorer.__main__ import main; "
        f"rc = main(['corpus', '--source', {str(text_file)!r}, '--out', {str(tmp_path / 'r')!r}, '--limit', '1', "
        "'--sizes', '1', '--modes', 'all', '--no-controls', '--device', 'cpu']); "
        "assert rc == 0; assert 'ray' not in sys.modules, 'ray was imported'"
    )
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
