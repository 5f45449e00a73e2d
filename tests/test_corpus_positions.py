"""All-positions corpus runs (``corpus --all-positions``): the stored rows are ``trace_text``'s summaries,
the store's integrity machinery (resume, refusal of a changed run, checksums) holds for them, the
statistics of density along the context against scipy on a synthetic table, the command line, and the
Corpus page showing such a run (AppTest)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from explorer.corpus import stats
from explorer.corpus.frequency import count_tokens
from explorer.corpus.local import run_corpus
from explorer.corpus.sources import Corpus, Prompt, prompt_id
from explorer.corpus.store import load_results
from explorer.errors import BadResults, BadSetting
from explorer.graph import layout_for
from explorer.options import MODES, RECOVERY_LEVELS
from explorer.results import Settings
from explorer.search import strata_edges
from explorer.text import trace_text
from explorer.views import corpus_tables as ct
from tests.helpers import VOCAB, tiny_loaded
from tests.test_corpus_pages import COMPARE, CORPUS, ok, page

SIZES = (0.01, 0.1, 0.5, 1.0)
TEXTS = ["the cat sat on", "one two three", "a b a b a", "hello world"]
SUMMARY_COLUMNS = [
    "position",
    "token",
    "next_token",
    "next_token_prob",
    "next_token_rank",
    "entropy",
    "top1",
    "top1_prob",
    "density",
    "density_linear",
    *[f"recovery_{k}" for k in RECOVERY_LEVELS],
]


@pytest.fixture(scope="module")
def tiny():
    return tiny_loaded("llama")[0]


def corpus(texts=TEXTS) -> Corpus:
    return Corpus("mem", [Prompt(prompt_id(i, t, None), t, category=f"c{i % 2}") for i, t in enumerate(texts)])


def settings(**kw) -> Settings:
    return Settings(sizes=SIZES, **kw)


def run(lm, folder, texts=TEXTS, **kw):
    freq = count_tokens(lm.tokenizer, TEXTS, VOCAB, "mem", lm.model_id)
    return run_corpus(lm, corpus(texts), folder, settings(), frequencies=freq, all_positions=True, **kw)


def _table(folder) -> pd.DataFrame:
    return load_results(folder).positions.drop(columns=["seconds"])


def expected_rows(text) -> pd.DataFrame:
    """``trace_text``'s summaries as the store names their columns."""
    df = pd.DataFrame(text.rows()).rename(
        columns={"top1_kept_at": "recovery_1", **{f"nucleus{k}_at": f"recovery_{k}" for k in RECOVERY_LEVELS}}
    )
    return df[SUMMARY_COLUMNS]


# rows ----------------------------------------------------------------------------------------------


def test_stored_rows_are_trace_texts_summaries(tiny, tmp_path):
    summary = run(tiny, tmp_path / "r")
    assert summary.traced == len(TEXTS) and not summary.failed
    res = load_results(tmp_path / "r")
    assert res.all_positions and json.loads((tmp_path / "r" / "run.json").read_text())["all_positions"] is True
    assert res.modes == list(MODES) and res.run.settings["controls"] is False
    with pytest.raises(BadResults, match="all-positions run"):
        _ = res.prompts
    pos = res.positions
    assert res.frequencies is not None
    for index, prompt in enumerate(corpus().prompts):
        for mode in MODES:
            text = trace_text(tiny, prompt.text, settings(mode=mode), keep_traces=False)
            got = pos[(pos["prompt_id"] == prompt.id) & (pos["mode"] == mode)].reset_index(drop=True)
            assert got["position"].tolist() == list(range(1, len(text.token_ids)))
            pd.testing.assert_frame_equal(
                got[SUMMARY_COLUMNS], expected_rows(text), check_dtype=False, check_exact=True
            )
            assert (got["n_context"] == got["position"] + 1).all()
            edges = [layout_for(tiny.adapter, n).n_edges for n in got["n_context"]]
            assert got["n_edges"].tolist() == edges
            assert got["n_sizes"].tolist() == [len(strata_edges(SIZES, e)) for e in edges]
            assert (got["n_tokens"] == len(text.token_ids)).all() and (got["prompt_index"] == index).all()
            assert (got["category"] == prompt.category).all() and (got["text"] == prompt.text).all()
            nxt = [text.token_ids[p + 1] for p in got["position"][:-1]]
            assert got["next_token_id"][:-1].tolist() == nxt and pd.isna(got["next_token_id"].iloc[-1])
            assert got["next_token_freq"][:-1].tolist() == res.frequencies.per_million(nxt).tolist()
            assert pd.isna(got["next_token_freq"].iloc[-1]) and pd.isna(got["next_token"].iloc[-1])


def test_an_interrupted_run_resumes_to_the_same_rows(tiny, tmp_path):
    run(tiny, tmp_path / "whole")

    def interrupt(done, total, message):
        if done == 2 and message != "starting":
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run(tiny, cut, progress=interrupt)
    assert load_results(cut).positions["prompt_id"].nunique() == 2
    again = run(tiny, cut)
    assert again.already == 2 and again.traced == 2
    pd.testing.assert_frame_equal(_table(cut), _table(tmp_path / "whole"))
    assert sorted(p.name for p in cut.iterdir() if p.name.startswith("part-")) == ["part-00000.parquet"]
    assert run(tiny, cut).already == len(TEXTS)  # a third run finds everything stored


def test_a_resume_with_or_without_the_flag_is_refused(tiny, tmp_path):
    every = tmp_path / "every"
    run(tiny, every, texts=TEXTS[:1])
    with pytest.raises(BadResults, match="all_positions"):
        run_corpus(tiny, corpus(TEXTS[:1]), every, settings())
    normal = tmp_path / "normal"
    run_corpus(tiny, corpus(TEXTS[:1]), normal, settings())
    with pytest.raises(BadResults, match="all_positions"):
        run(tiny, normal, texts=TEXTS[:1])
    with pytest.raises(BadSetting, match="no control"):
        run_corpus(tiny, corpus(), tmp_path / "x", settings(controls=True), all_positions=True)
    assert not load_results(normal).all_positions
    with pytest.raises(BadResults, match="not every position"):
        _ = load_results(normal).positions


def test_a_damaged_part_is_named_then_traced_again(tiny, tmp_path):
    folder = tmp_path / "r"
    run(tiny, folder, texts=TEXTS[:2])
    whole = _table(folder)
    part = folder / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 32] = bytes(32)
    part.write_bytes(bytes(data))
    with pytest.raises(BadResults, match="part-00000.parquet"):
        load_results(folder)
    again = run(tiny, folder, texts=TEXTS[:2])
    assert again.traced == 2 and any("damaged" in n for n in again.notices)
    pd.testing.assert_frame_equal(_table(folder), whole)


# statistics ----------------------------------------------------------------------------------------


def synthetic() -> pd.DataFrame:
    """Three texts of 20 positions in both modes: density rises with the position in ``all`` and falls in
    ``attention-kept``; the next token's frequency is random, none after each text's last position."""
    rng = np.random.default_rng(0)
    rows = []
    for mode, slope in (("all", 0.05), ("attention-kept", -0.02)):
        for text in range(3):
            for position in range(1, 21):
                d = 1 + slope * position + rng.normal(0, 0.2)
                rows.append(
                    {
                        "prompt_id": f"t{text}",
                        "mode": mode,
                        "position": position,
                        "n_context": position + 1,
                        "n_sizes": 3 if position < 4 else 4,
                        "density": d,
                        "density_linear": d / 3 + rng.normal(0, 0.1),
                        "next_token_freq": np.nan if position == 20 else float(rng.integers(0, 5000)),
                    }
                )
    return pd.DataFrame(rows)


def test_position_statistics_match_scipy():
    df = synthetic()
    for mode in MODES:
        mine = df[df["mode"] == mode]
        want = scipy_stats.spearmanr(mine["n_context"], mine["density"])
        got = stats.density_position(df, mode)
        assert (got.rho, got.p, got.n) == (pytest.approx(want.statistic), pytest.approx(want.pvalue), 60)
        has = mine[mine["next_token_freq"].notna()]
        want = scipy_stats.spearmanr(has["next_token_freq"], has["density"])  # ranks: log or not, the same
        got = stats.density_next_frequency(df, mode)
        assert (got.rho, got.p, got.n) == (pytest.approx(want.statistic), pytest.approx(want.pvalue), 57)
        lin = stats.density_position(df, mode, "linear")
        assert lin.rho == pytest.approx(scipy_stats.spearmanr(mine["n_context"], mine["density_linear"]).statistic)
    assert stats.density_position(df, "all").rho > 0.5 and stats.density_position(df, "attention-kept").rho < -0.3
    table = stats.position_correlations(df)
    assert table[["mode", "against"]].values.tolist() == [[m, a] for m in MODES for a in stats.POSITION_AGAINST]
    assert table["rho"].iloc[1] == pytest.approx(stats.density_next_frequency(df, "all").rho)
    means = stats.density_by_position(df, "all").set_index("n_context")
    five = df[(df["mode"] == "all") & (df["n_context"] == 5)]["density"]
    assert means.loc[5, "mean"] == pytest.approx(five.mean()) and means.loc[5, "n"] == 3
    assert means.loc[5, "q25"] == pytest.approx(np.percentile(five, 25))
    assert np.isnan(stats.density_next_frequency(df.assign(next_token_freq=np.nan), "all").rho)
    full = stats.full_grid(df)
    assert len(full) == len(df[df["position"] >= 4]) and len(stats.full_grid(df, 3)) == len(df)
    want = scipy_stats.spearmanr(full[full["mode"] == "all"]["n_context"], full[full["mode"] == "all"]["density"])
    assert stats.density_position(full, "all").rho == pytest.approx(want.statistic)


# command line --------------------------------------------------------------------------------------


def test_corpus_command_all_positions(tmp_path):
    from explorer.__main__ import main

    source = tmp_path / "p.txt"
    source.write_text("The cat sat on the mat\n")
    out = tmp_path / "out"
    args = [
        "corpus",
        "--source",
        str(source),
        "--out",
        str(out),
        "--sizes",
        "0.1,1",
        "--modes",
        "all",
        "--dtype",
        "float32",
        "--device",
        "cpu",
    ]
    assert main(args + ["--all-positions"]) == 0
    res = load_results(out)
    run_file = json.loads((out / "run.json").read_text())
    assert run_file["all_positions"] is True and run_file["settings"]["controls"] is False
    pos = res.positions
    assert pos["position"].tolist() == list(range(1, int(pos["n_tokens"].iloc[0])))
    assert pos["next_token_freq"].iloc[:-1].notna().all()  # counted over the source itself
    assert main(args) == 2  # the same folder without the flag: refused, with what differs
    assert main(args + ["--all-positions", "--ray"]) == 2


# the Corpus page -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def positions_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("positions") / "tiny-llama"
    run(tiny_loaded("llama")[0], folder, texts=TEXTS[:3])
    return folder


def datasets(element) -> list[pd.DataFrame]:
    import pyarrow as pa

    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]


def test_corpus_page_shows_an_all_positions_run(positions_folder):
    at = ok(page(CORPUS, {"results": [str(positions_folder)]}).run())
    assert [s.value for s in at.subheader] == [
        "Density along the context",
        "Density and the next token's frequency",
        "Per-position table",
    ]
    res = load_results(positions_folder)
    assert at.dataframe[0].value["rows"].tolist() == ["every position"]
    along, frequency = at.get("vega_lite_chart")
    want = res.positions[res.positions["mode"] == "all"].reset_index(drop=True)
    points = next(d for d in datasets(along) if "density" in d.columns)
    assert points["n_context"].tolist() == want["n_context"].tolist()
    assert points["density"].tolist() == pytest.approx(want["density"].tolist())
    means = next(d for d in datasets(along) if "mean" in d.columns)
    assert means["mean"].tolist() == pytest.approx(stats.density_by_position(res.positions, "all")["mean"].tolist())
    points = next(d for d in datasets(frequency) if "density" in d.columns)
    assert len(points) == want["next_token_freq"].notna().sum()
    spec = json.loads(frequency.proto.spec)
    layers = spec.get("layer", [spec])  # one chart per panel: a layered chart or a single one
    assert any(layer.get("encoding", {}).get("x", {}).get("field") == "freq_log" for layer in layers)
    rho_position, rho_frequency = at.dataframe[1].value, at.dataframe[2].value
    c = stats.density_position(res.positions, "all")
    assert (rho_position["rho"].iloc[0], rho_position["p"].iloc[0], rho_position["n"].iloc[0]) == (
        pytest.approx(c.rho),
        pytest.approx(c.p),
        c.n,
    )
    c = stats.density_next_frequency(res.positions, "all")
    assert (rho_frequency["rho"].iloc[0], rho_frequency["p"].iloc[0]) == (pytest.approx(c.rho), pytest.approx(c.p))
    at.radio(key="corpus_mode").set_value(ct.OVERLAY)
    ok(at.run())
    assert set(at.dataframe[1].value["mode"]) == set(at.dataframe[2].value["mode"]) == set(MODES)
    points = next(d for d in datasets(at.get("vega_lite_chart")[0]) if "density" in d.columns)
    assert points.groupby("mode").size().to_dict() == res.positions.groupby("mode").size().to_dict()
    # only the positions that evaluate the whole grid: the shortest contexts of the tiny model skip 0.01
    full = stats.full_grid(res.positions, len(SIZES))
    assert 0 < len(full) < len(res.positions)
    assert any(f"{len(full)} of {len(res.positions)} positions" in c.value for c in at.caption)
    at.checkbox(key="corpus_full_grid").set_value(True)
    ok(at.run())
    points = next(d for d in datasets(at.get("vega_lite_chart")[0]) if "density" in d.columns)
    assert sorted(points["n_context"]) == sorted(full["n_context"]) and points["n_context"].min() == 4
    table = at.dataframe[1].value
    assert table["rho"].tolist() == pytest.approx([stats.density_position(full, m).rho for m in MODES])


def test_the_compare_page_leaves_an_all_positions_run_out(positions_folder):
    at = page(COMPARE, {"results": [str(positions_folder)]}).run()
    assert not at.exception and not at.error
    assert any("all-positions run" in i.value for i in at.info)
