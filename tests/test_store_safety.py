"""The results store under faults: two writers, a failing --overwrite, an edited source, damaged and
missing parts, compaction cut short, kill -9 mid-run, another batch size, prompts that raise, malformed
source rows, and prompts over the model's context. Each fault ends with no stored row lost (bench/RESULTS.md,
"Faults", lists them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from explorer.corpus import store as store_module
from explorer.corpus.local import run_corpus
from explorer.corpus.sources import Corpus, Prompt, read_source
from explorer.corpus.store import ResultsStore, RunInfo, load_results
from explorer.errors import BadResults
from explorer.results import Settings
from tests.helpers import tiny_loaded

ROOT = str(Path(__file__).resolve().parent.parent)
HOLDER_FILE, MANIFEST = ".writer.json", "manifest.jsonl"  # literal: the tests run on the code before too
TEXTS = [
    "the cat sat on",
    "one two three four",
    "a b a b a",
    "hello world",
    "x = 1 + 2",
    "ok then we go",
    "seven is a number",
    "the end of it",
]
SIZES = (0.1, 1.0)
N_MODES = 2


def settings(**kw) -> Settings:
    return Settings(sizes=SIZES, **kw)


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")[0]


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "p.txt"
    path.write_text("\n".join(TEXTS[:6]) + "\n")
    return path


@pytest.fixture(scope="module")
def whole(tiny, tmp_path_factory) -> pd.DataFrame:
    """The rows of an uninterrupted run of the six first prompts (the reference every fault must end at)."""
    folder = tmp_path_factory.mktemp("whole")
    path = folder / "p.txt"
    path.write_text("\n".join(TEXTS[:6]) + "\n")
    run_corpus(tiny, read_source(str(path)), folder / "r", settings())
    return _table(folder / "r")


def _table(folder) -> pd.DataFrame:
    return load_results(folder).table.drop(columns=["seconds"])


def _interrupted(tiny, corpus, folder, after: int):
    """A run of ``corpus`` stopped (KeyboardInterrupt) once ``after`` prompts are stored: one part each."""

    def stop(done, total, message):
        if done == after and message not in ("starting", "resuming") and not message.startswith("token cap"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_corpus(tiny, corpus, folder, settings(), progress=stop)


def _zero(path: Path, offset: int, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    data[offset : offset + n] = bytes(n)
    path.write_bytes(bytes(data))


def _subprocess(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


RUN_IN_CHILD = """
import os, sys, time
from pathlib import Path
from explorer.corpus.local import run_corpus
from explorer.corpus.sources import read_source
from explorer.results import Settings
from tests.helpers import tiny_loaded
tiny = tiny_loaded("llama")[0]
folder, source, signal_dir = Path(sys.argv[-3]), sys.argv[-2], Path(sys.argv[-1])
"""


# 1. one writer per folder ---------------------------------------------------------------------------


def test_a_second_writer_process_is_refused_and_no_row_is_lost(tiny, source, tmp_path, whole):
    folder, signals = tmp_path / "r", tmp_path / "signals"
    signals.mkdir()
    code = (
        RUN_IN_CHILD.replace("sys.argv[-3]", repr(str(folder)))
        .replace("sys.argv[-2]", repr(str(source)))
        .replace("sys.argv[-1]", repr(str(signals)))
        + """
def hold(done, total, message):
    if done == 1 and not (signal_dir / "started").exists():
        (signal_dir / "started").write_text(str(os.getpid()))
        for _ in range(1200):
            if (signal_dir / "go").exists():
                return
            time.sleep(0.1)
run_corpus(tiny, read_source(source), folder, Settings(sizes=(0.1, 1.0)), progress=hold)
"""
    )
    child = _subprocess(code)
    try:
        for _ in range(1200):
            if (signals / "started").exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert (signals / "started").exists(), child.communicate()[1][-2000:]
        before = (folder / "run.json").read_text()
        with pytest.raises(BadResults) as refused:
            run_corpus(tiny, read_source(str(source)), folder, settings())
        message = str(refused.value)
        assert str(folder) in message and f"pid {child.pid}" in message and "another run" in message
        assert "\n" not in message
        assert (folder / "run.json").read_text() == before  # the refused writer touched nothing
    finally:
        (signals / "go").write_text("")
        _, err = child.communicate(timeout=600)
    assert child.returncode == 0, err[-2000:]
    pd.testing.assert_frame_equal(_table(folder), whole)  # no row lost
    assert not (folder / HOLDER_FILE).exists()


def _holding(folder: Path) -> ResultsStore:
    """A writer holding ``folder`` in this process (a store left open)."""
    return ResultsStore(folder, RunInfo("m", None, "float32", "s", None, "text", ["all"], {}))


def test_a_second_writer_in_the_same_process_is_refused(tiny, source, tmp_path):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    held = _holding(folder)
    try:
        errors: list[Exception] = []

        def other_thread():
            try:
                run_corpus(tiny, corpus, folder, settings())
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
        assert len(errors) == 1 and isinstance(errors[0], BadResults)
        assert f"pid {os.getpid()}" in str(errors[0]) and str(folder) in str(errors[0])
        with pytest.raises(BadResults, match="being written by another run"):  # the same thread, another store
            _holding(folder)
        assert json.loads((folder / HOLDER_FILE).read_text())["pid"] == os.getpid()
    finally:
        held.close()
    summary = run_corpus(tiny, corpus, folder, settings(), overwrite=True)  # free again once released
    assert summary.traced == 6 and not (folder / HOLDER_FILE).exists()


def test_the_command_line_refuses_a_held_folder_before_loading(tmp_path, source, capsys):
    from explorer.__main__ import main

    folder = tmp_path / "r"
    held = _holding(folder)
    try:
        assert main(["corpus", "--source", str(source), "--out", str(folder), "--device", "cpu"]) == 2
    finally:
        held.close()
    err = capsys.readouterr().err
    assert "being written by another run" in err and f"pid {os.getpid()}" in err


# 2. --overwrite keeps the old run until the new one stored a prompt ----------------------------------


def test_a_failing_overwrite_keeps_the_old_run(tiny, source, tmp_path, whole, monkeypatch):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    run_corpus(tiny, corpus, folder, settings())
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}

    # every prompt fails (over a 2-token cap): nothing stored, so nothing replaced
    summary = run_corpus(tiny, corpus, folder, settings(max_tokens=2), overwrite=True)
    assert summary.kept_old and summary.traced == 0 and len(summary.failed) == 6
    pd.testing.assert_frame_equal(_table(folder), whole)
    assert RunInfo.read(folder).settings["max_tokens"] == 256

    # the first prompt raises out of the run (an interrupt)
    import explorer.corpus.rows as rows_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rows_module, "trace_modes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_corpus(tiny, corpus, folder, Settings(sizes=(1.0,)), overwrite=True)
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_table(folder), whole)
    assert {
        p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
    } == files  # byte for byte


def test_an_overwrite_cut_short_before_its_switch_leaves_the_old_run(tiny, source, tmp_path, whole, monkeypatch):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    run_corpus(tiny, corpus, folder, settings())

    def crash(self, folder):
        raise OSError("disk gone")

    monkeypatch.setattr(RunInfo, "write", crash)  # the new part is written, run.json not yet switched
    with pytest.raises(OSError, match="disk gone"):
        run_corpus(tiny, corpus, folder, Settings(sizes=(1.0,)), overwrite=True)
    monkeypatch.undo()
    assert len(list(folder.glob("part-*.parquet"))) == 2  # the old part and the new run's stray one
    pd.testing.assert_frame_equal(_table(folder), whole)  # the stray part is ignored
    again = run_corpus(tiny, corpus, folder, settings())  # resuming the old run removes it
    assert again.already == 6 and again.traced == 0
    assert [p.name for p in folder.glob("part-*.parquet")] == ["part-00000.parquet"]


def test_an_overwrite_replaces_the_run_once_it_stored_a_prompt(tiny, source, tmp_path):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    run_corpus(tiny, corpus, folder, settings())
    old_id = RunInfo.read(folder).run_id

    def stop(done, total, message):
        if done == 1 and message.startswith("0000"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_corpus(tiny, corpus, folder, Settings(sizes=(1.0,)), overwrite=True, progress=stop)
    res = load_results(folder)
    assert res.run.run_id != old_id and len(res.prompts) == N_MODES and list(res.table["size"].unique()) == [1.0]
    lines = [json.loads(line) for line in (folder / MANIFEST).read_text().splitlines()]
    assert {x["run"] for x in lines} == {res.run.run_id}
    assert run_corpus(tiny, corpus, folder, Settings(sizes=(1.0,))).already == 1  # resumes the new run


# 3. resume notices a changed source -----------------------------------------------------------------


def test_an_edited_source_is_refused(tiny, tmp_path):
    path = tmp_path / "eight.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    folder = tmp_path / "r"
    run_corpus(tiny, read_source(str(path)), folder, settings())
    edited = TEXTS.copy()
    edited[3] = "hello there world"
    path.write_text("\n".join(edited) + "\n")
    with pytest.raises(BadResults) as refused:
        run_corpus(tiny, read_source(str(path)), folder, settings())
    message = str(refused.value)
    assert "another version of its source" in message and "prompt 3" in message and "hello world" in message
    assert "--overwrite" in message and "another output folder" in message
    res = load_results(folder)
    assert len(res.prompts) == 8 * N_MODES and sorted(set(res.prompts["text"])) == sorted(TEXTS)


def test_a_longer_limit_extends_a_run_but_an_untraced_change_is_refused(tiny, tmp_path):
    path = tmp_path / "eight.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    folder = tmp_path / "r"
    run_corpus(tiny, read_source(str(path), limit=3), folder, settings(), limit=3)
    extended = run_corpus(tiny, read_source(str(path), limit=5), folder, settings(), limit=5)
    assert extended.already == 3 and extended.traced == 2
    assert RunInfo.read(folder).source_prompts == 5
    cut = tmp_path / "cut"
    _interrupted(tiny, read_source(str(path)), cut, after=4)
    path.write_text("\n".join(TEXTS[:6] + ["a changed line"] + TEXTS[7:]) + "\n")  # prompt 6: not traced yet
    with pytest.raises(BadResults, match="a prompt not yet traced changed"):
        run_corpus(tiny, read_source(str(path)), cut, settings())
    assert len(load_results(cut).prompts) == 4 * N_MODES


# 4. integrity a reader checks -----------------------------------------------------------------------


def test_zeroed_bytes_anywhere_in_a_part_raise_naming_it(tiny, source, tmp_path, whole):
    """64 zero bytes at every 64th offset of a part: each load raises a BadResults naming the part, never
    returns rows (before the checksums, 11 of these offsets gave wrong numbers without a word)."""
    folder = tmp_path / "r"
    run_corpus(tiny, read_source(str(source)), folder, settings())
    part = folder / "part-00000.parquet"
    good = part.read_bytes()
    for offset in range(0, len(good) - 64, 64):
        _zero(part, offset)
        with pytest.raises(BadResults, match="part-00000.parquet") as refused:
            load_results(folder)
        assert "damaged" in str(refused.value), offset
        part.write_bytes(good)
    pd.testing.assert_frame_equal(_table(folder), whole)


def test_page_checksums_catch_damage_in_a_part_the_manifest_does_not_list(tiny, source, tmp_path):
    folder = tmp_path / "r"
    run_corpus(tiny, read_source(str(source)), folder, settings())
    (folder / MANIFEST).unlink()  # read as an unverified part: its page checksums still hold
    load_results(folder)
    _zero(folder / "part-00000.parquet", 200)
    with pytest.raises(BadResults, match="part-00000.parquet"):
        load_results(folder)


def test_a_damaged_part_is_traced_again_on_a_rerun(tiny, source, tmp_path, whole):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    _interrupted(tiny, corpus, folder, after=4)
    damaged = folder / "part-00001.parquet"
    _zero(damaged, damaged.stat().st_size // 2)
    with pytest.raises(BadResults, match="part-00001.parquet"):
        load_results(folder)
    seen: list[str] = []
    again = run_corpus(tiny, corpus, folder, settings(), progress=lambda d, t, m: seen.append(m))
    assert again.already == 3 and again.traced == 3
    assert any("part-00001.parquet" in m and "traced again" in m for m in seen)
    assert any("part-00001.parquet" in m for m in again.notices)
    assert len(list((folder / "damaged").iterdir())) == 1  # kept, out of the way
    pd.testing.assert_frame_equal(_table(folder), whole)


def test_a_missing_part_is_reported_and_traced_again(tiny, source, tmp_path, whole):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    _interrupted(tiny, corpus, folder, after=4)
    (folder / "part-00002.parquet").unlink()
    with pytest.raises(BadResults, match="part-00002.parquet listed in manifest.jsonl but missing"):
        load_results(folder)
    again = run_corpus(tiny, corpus, folder, settings())
    assert again.already == 3 and again.traced == 3
    pd.testing.assert_frame_equal(_table(folder), whole)


def test_compaction_cut_short_loses_nothing(tiny, source, tmp_path, whole, monkeypatch):
    folder = tmp_path / "r"
    corpus = read_source(str(source))
    _interrupted(tiny, corpus, folder, after=4)
    calls = {"n": 0}
    real = store_module.write_part

    def failing(path, table, run_id):  # the appends pass; the merged part fails
        calls["n"] += 1
        if table.num_rows > len(SIZES) * N_MODES:
            raise OSError("disk full")
        return real(path, table, run_id)

    monkeypatch.setattr(store_module, "write_part", failing)
    with pytest.raises(OSError, match="disk full"):
        run_corpus(tiny, corpus, folder, settings())
    pd.testing.assert_frame_equal(_table(folder), whole)  # every part kept
    monkeypatch.setattr(store_module, "write_part", real)

    def no_links(src, dst):  # the merged part is written and the old ones removed; then a crash
        raise OSError("crash while renaming")

    monkeypatch.setattr(store_module, "link_part", no_links)
    (folder / "part-00005.parquet").unlink()  # the last prompt again, so that the rerun compacts
    with pytest.raises(OSError, match="crash while renaming"):
        run_corpus(tiny, corpus, folder, settings())
    assert [p.name for p in folder.glob("part-*.parquet")] == ["part-00006.parquet"]
    pd.testing.assert_frame_equal(_table(folder), whole)
    monkeypatch.undo()
    run_corpus(tiny, corpus, folder, settings())
    pd.testing.assert_frame_equal(_table(folder), whole)


def test_compaction_keeps_parts_of_bounded_size(tiny, source, tmp_path, whole, monkeypatch):
    monkeypatch.setattr(store_module, "COMPACT_PROMPTS", 4)
    folder = tmp_path / "r"
    run_corpus(tiny, read_source(str(source)), folder, settings())
    assert sorted(p.name for p in folder.glob("part-*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    pd.testing.assert_frame_equal(_table(folder), whole)


def test_kill_9_mid_write_then_resume_loses_nothing(tiny, source, tmp_path, whole):
    """The child SIGKILLs itself after its third part is renamed into place, before its manifest line."""
    folder = tmp_path / "r"
    code = (
        RUN_IN_CHILD.replace("sys.argv[-3]", repr(str(folder)))
        .replace("sys.argv[-2]", repr(str(source)))
        .replace("sys.argv[-1]", repr(str(tmp_path)))
        + """
import signal
from explorer.corpus import parts
real = parts.Manifest.add
count = {"n": 0}
def add(self, entry):
    count["n"] += 1
    if count["n"] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, entry)
parts.Manifest.add = add
run_corpus(tiny, read_source(source), folder, Settings(sizes=(0.1, 1.0)))
"""
    )
    child = _subprocess(code)
    _, err = child.communicate(timeout=600)
    assert child.returncode == -9, err[-2000:]
    assert len(load_results(folder).prompts) == 3 * N_MODES  # the third part is there, unlisted
    again = run_corpus(tiny, read_source(str(source)), folder, settings())
    assert again.already == 3 and again.traced == 3
    pd.testing.assert_frame_equal(_table(folder), whole)


# 5. the batch size is part of the run's identity ----------------------------------------------------


def test_another_batch_size_is_refused(tiny, source, tmp_path):
    folder = tmp_path / "r"
    corpus = read_source(str(source), limit=2)
    run_corpus(tiny, corpus, folder, settings(batch_size=32))
    assert RunInfo.read(folder).settings["batch_size"] == 32
    with pytest.raises(BadResults, match="other settings \\(batch_size: 32 → 8\\)"):
        run_corpus(tiny, corpus, folder, settings(batch_size=8))
    assert run_corpus(tiny, corpus, folder, settings(batch_size=32)).already == 2


# 6. one bad prompt does not stop a run --------------------------------------------------------------


def test_any_exception_from_one_prompt_is_recorded_and_the_run_goes_on(tiny, tmp_path, monkeypatch):
    import explorer.corpus.rows as rows_module

    real = rows_module.trace_modes

    def flaky(lm, text, *args, **kwargs):
        if text == "breaks":
            raise IndexError("index out of range in self")
        return real(lm, text, *args, **kwargs)

    monkeypatch.setattr(rows_module, "trace_modes", flaky)
    corpus = Corpus("mem", [Prompt("a", "short one"), Prompt("b", "breaks"), Prompt("c", "another")])
    summary = run_corpus(tiny, corpus, tmp_path / "r", settings())
    assert summary.traced == 2 and summary.failed == [("b", "IndexError: index out of range in self")]
    line = json.loads((tmp_path / "r" / "failed.jsonl").read_text())
    assert line["prompt_id"] == "b" and line["reason"].startswith("IndexError")
    assert sorted(load_results(tmp_path / "r").prompts["prompt_id"].unique()) == ["a", "c"]


def test_a_jsonl_row_with_a_lone_surrogate_is_skipped(tiny, tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"text": "good one"}\n{"text": "bad \\ud800 row"}\n{"text": "x", "gold": "\\udfff"}\n{"text": "good two"}\n',
        encoding="utf-8",
    )
    corpus = read_source(str(path))
    assert [p.text for p in corpus.prompts] == ["good one", "good two"]
    assert [s.where for s in corpus.skipped] == ["line 2", "line 3"]
    assert all("surrogate" in s.reason for s in corpus.skipped)
    assert run_corpus(tiny, corpus, tmp_path / "r", settings()).traced == 2


@pytest.mark.parametrize(
    "rows, texts, bad",
    [
        ('1,"unclosed,x\n2,next,y\n3,plain,z\n', ["next", "plain"], ["line 2"]),  # open to the end
        ('1,"unclosed\n2,next,y\n3,plain",z\n4,four,w\n', ["next", 'plain"', "four"], ["line 2"]),  # closed later
        ('1,"unclosed,x\n2,"ok",y\n3,plain,z\n', ["ok", "plain"], ["line 2"]),  # closed by the next row's quote
        ('1,"two\nlines",g\n2,two,h\n', ["two\nlines", "two"], []),  # a real multi-line field
    ],
)
def test_a_csv_quote_left_open_does_not_swallow_the_next_rows(tmp_path, rows, texts, bad):
    path = tmp_path / "p.csv"
    path.write_text("id,text,gold\n" + rows, encoding="utf-8")
    corpus = read_source(str(path))
    assert [p.text for p in corpus.prompts] == texts
    assert [s.where for s in corpus.skipped] == bad
    assert all("quote" in s.reason for s in corpus.skipped)


def test_a_byte_order_mark_is_dropped_by_every_file_source(tmp_path):
    bom = "\ufeff"
    (tmp_path / "p.txt").write_text(bom + "first line\nsecond\n", encoding="utf-8")
    (tmp_path / "p.csv").write_text(bom + "text,gold\nfirst line,x\nsecond,y\n", encoding="utf-8")
    (tmp_path / "p.jsonl").write_text(bom + '{"text": "first line"}\n{"text": "second"}\n', encoding="utf-8")
    for name in ("p.txt", "p.csv", "p.jsonl"):
        corpus = read_source(str(tmp_path / name))
        assert [p.text for p in corpus.prompts] == ["first line", "second"], name
        assert not corpus.skipped, name


# 7. the model's context length ----------------------------------------------------------------------


def test_a_prompt_over_the_models_context_is_recorded_as_failed(tmp_path):
    gpt2 = tiny_loaded("gpt2")[0]  # n_positions = 128
    corpus = Corpus("mem", [Prompt("a", "short one"), Prompt("b", "x" * 200), Prompt("c", "another")])
    seen: list[str] = []
    summary = run_corpus(gpt2, corpus, tmp_path / "r", settings(), progress=lambda d, t, m: seen.append(m))
    assert summary.traced == 2 and [f[0] for f in summary.failed] == ["b"]
    assert "the limit is 128" in summary.failed[0][1] and "the model's context" in summary.failed[0][1]
    assert summary.token_cap == 128 and summary.token_cap_by.startswith("the model's context")
    assert any(m.startswith("token cap: 128") for m in seen)
    assert RunInfo.read(tmp_path / "r").notes["token_cap"].startswith("128")
    small = run_corpus(gpt2, Corpus("mem", corpus.prompts[:1]), tmp_path / "s", settings(max_tokens=64))
    assert small.token_cap == 64 and small.token_cap_by.startswith("the configured limit")
