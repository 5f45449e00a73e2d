"""The Corpus and Compare pages driven by Streamlit's AppTest.

They show the shipped results (``explorer/data/results/<model>/``) when there are any; otherwise two
results folders built here from quick runs of two tiny random-weight models on the same prompts. Every
number the pages draw is checked against the results and :mod:`explorer.corpus.stats`.

AppTest has no interaction for charts, so a click on a scatter point is sent as the browser sends it: the
chart's widget state, a JSON string ``{"selection": {"pick": [{field: value, ...}]}}`` (Streamlit's
frontend sends the point selection's ``vlPoint.or`` list of the selection's fields).
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL
from explorer.corpus import stats
from explorer.corpus.frequency import count_tokens
from explorer.corpus.local import run_corpus
from explorer.corpus.sources import Corpus, Prompt, prompt_id
from explorer.corpus.store import RunInfo, find_results, load_results
from explorer.errors import OtherRun
from explorer.models.loading import cache_dir
from explorer.results import Settings
from explorer.views import corpus_tables as cf
from explorer.views.scatter import SELECTION
from tests.helpers import VOCAB, ByteTokenizer, tiny_loaded
from ui import state as app_state
from ui.results import DEFAULT_RESULTS

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
CORPUS, COMPARE = "ui/pages/corpus.py", "ui/pages/compare.py"
TIMEOUT = 600
FIXTURE_PROMPTS = [
    "The capital of France is",
    "1, 2, 3, 4, 5,",
    "The opposite of hot is",
    "When Mary and John went to the store, John gave a drink to",
    "Once upon a time",
]
FIXTURE_SIZES = (1e-2, 3e-2, 0.1, 0.3, 1.0)
PREFERRED = "The capital of France is"  # the Trace page's first example: its sweep is often cached


class _Batch:
    """The byte tokenizer of the tiny models, taking a batch as :func:`count_tokens` does."""

    def __call__(self, batch, add_special_tokens=False):
        return {"input_ids": [ByteTokenizer()(t)["input_ids"] for t in batch]}


@functools.lru_cache(maxsize=1)
def fixture_results() -> tuple[Path, ...]:
    """Two results folders (tiny Llama and tiny Qwen2, random weights) on the same prompts, both modes,
    with controls and token frequencies; built once per test process."""
    root = Path(tempfile.mkdtemp(prefix="s-trace-corpus-"))
    corpus = Corpus("fixture prompts", [Prompt(prompt_id(i, t, None), t) for i, t in enumerate(FIXTURE_PROMPTS)])
    folders = []
    for family, seed in (("llama", 0), ("qwen2", 1)):
        lm, _ = tiny_loaded(family, seed)
        freq = count_tokens(
            _Batch(), FIXTURE_PROMPTS * 3 + ["the the the of of and"], VOCAB, "fixture prompts", lm.model_id
        )
        folder = root / lm.model_id
        run_corpus(lm, corpus, folder, Settings(controls=True, sizes=FIXTURE_SIZES), frequencies=freq)
        folders.append(folder)
    return tuple(folders)


def result_folders() -> tuple[list[Path], bool]:
    """The shipped results folders if there are any (and whether they are), else the fixture's."""
    shipped = find_results()
    return (shipped, True) if shipped else (list(fixture_results()), False)


def first_shown(paths: list[Path], shipped: bool) -> Path:
    """The folder the Corpus page shows first: the default model's shipped forty-word windows (else its
    project-set run, else the first shipped), or the fixture's first folder (given in the URL)."""
    if shipped:
        for name in (DEFAULT_RESULTS, DEFAULT_MODEL):
            if any(p.name == name for p in paths):
                return next(p for p in paths if p.name == name)
        return paths[0]
    return paths[0]


@pytest.fixture(scope="module")
def folders():
    return result_folders()


def page(path: str, query: dict | None = None) -> AppTest:
    """The app about to open the page at ``path`` with ``query`` in the URL, as a first visit to it: the
    app runs once first (on the Trace page), so that ``st.navigation`` has registered its pages."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params.clear()
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.switch_page(path)
    return at


def corpus_app(folders) -> tuple[AppTest, Path]:
    """The Corpus page as a first visit shows it: the first shipped results, or the fixture's first folder
    given in the URL. Returns the app and the folder it shows."""
    paths, shipped = folders
    folder = first_shown(paths, shipped)
    at = page(CORPUS, None if shipped else {"results": [str(folder)]})
    return ok(at.run()), folder


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def chart(at: AppTest, key: str):
    """The chart whose element id ends with ``key`` (selection charts carry their key in their id)."""
    found = [c for c in at.get("vega_lite_chart") if c.proto.id.endswith(key)]
    assert found, [c.proto.id for c in at.get("vega_lite_chart")]
    return found[0]


def data(element, column: str = "text") -> pd.DataFrame:
    """The rows of a chart's data sets that have ``column`` (the points, not the diagonal)."""
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]
    frames = [f for f in frames if column in f.columns]
    assert frames, f"no data set with a {column} column"
    return pd.concat(frames, ignore_index=True)


def charts_with(at: AppTest, column: str) -> pd.DataFrame:
    """The rows of every chart data set that has ``column``."""
    frames = []
    for element in at.get("vega_lite_chart"):
        for d in element.proto.datasets:
            df = pa.ipc.open_stream(d.data.data).read_all().to_pandas()
            if column in df.columns:
                frames.append(df)
    assert frames, f"no chart data with a {column} column"
    return pd.concat(frames, ignore_index=True)


def select(at: AppTest, key: str, point: dict) -> AppTest:
    """Click a point of a selection chart, as the browser reports it, and rerun."""
    states = at._tree.get_widget_states()
    states.widgets.append(
        WidgetState(id=chart(at, key).proto.id, string_value=json.dumps({"selection": {SELECTION: [point]}}))
    )
    return at._run(states)


def expected_points(folder: Path, mode: str) -> pd.DataFrame:
    p = load_results(folder).prompts
    return p[p["mode"] == mode].sort_values("prompt_id").reset_index(drop=True)


def shown_points(at: AppTest) -> pd.DataFrame:
    return data(chart(at, "corpus_scatter")).sort_values(["mode", "prompt_id"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- Corpus page


def test_corpus_page_draws_the_results(folders):
    at, folder = corpus_app(folders)
    assert [s.value for s in at.subheader] == [
        "Density and entropy",
        "Error against size over the corpus",
        "Nucleus recovery",
        "Do small subgraphs predict frequent tokens?",
        "Per-prompt table",
    ]
    res = load_results(folder)
    # the scatter: one point per prompt in mode "all", at its density and the full model's entropy
    shown, want = shown_points(at), expected_points(folder, "all")
    assert set(shown["mode"]) == {"all"}
    assert shown["prompt_id"].tolist() == want["prompt_id"].tolist()
    assert shown["text"].tolist() == want["text"].tolist()
    assert shown["density"].tolist() == pytest.approx(want["density"].tolist())
    assert shown["entropy"].tolist() == pytest.approx(want["entropy"].tolist())
    assert set(shown["model_id"]) == {res.model_id}
    # Spearman's rho and its p-value, as the statistics module computes them
    table = at.dataframe[1].value
    c = stats.density_entropy(res, "all")
    row = table.iloc[0]
    assert (row["mode"], row["n"]) == ("all", c.n)
    assert row["rho"] == pytest.approx(c.rho, nan_ok=True) and row["p"] == pytest.approx(c.p, nan_ok=True)
    # the mean curve over the corpus: trace and controls, mean and quartiles per size
    curve = charts_with(at, "q75").query("variant == 's-trace'").sort_values("size")
    mc = stats.mean_curve(res, "all").query("variant == 'trace'").sort_values("size")
    assert curve["mean"].tolist() == pytest.approx(mc["mean"].tolist())
    assert curve["q25"].tolist() == pytest.approx(mc["q25"].tolist())
    if res.run.settings.get("controls"):
        assert {"random control", "inverse control"} <= set(charts_with(at, "q75")["variant"])
    # nucleus recovery per k
    rec = charts_with(at, "recovered").sort_values("k")
    nr = stats.nucleus_recovery(res, "all")
    assert rec["recovered"].tolist() == pytest.approx(nr["recovered"].tolist())
    # top-1 token frequency per size, subgraph against full model
    if cf.has_frequencies(res):
        freq = charts_with(at, "mean_log")
        fb = stats.frequency_by_size(res, "all").sort_values("size")
        sub = freq[freq["top1"] == "subgraph's top-1"].sort_values("size")
        assert sub["mean_log"].tolist() == pytest.approx(fb["trace_mean_log"].tolist())
    # the per-prompt table, offered as CSV and Parquet
    labels = sorted(b.proto.label for b in at.get("download_button"))
    assert labels == ["Per-prompt CSV", "Per-prompt Parquet"]
    assert at.query_params["mode"] == "all"


def test_downloads_hold_the_per_prompt_table(folders):
    res = [load_results(f) for f in folders[0]]
    table = cf.prompt_table(res, ["all", "attention-kept"])
    assert len(table) == sum(len(r.prompts) for r in res)
    back = pd.read_parquet(pa.BufferReader(cf.to_parquet(table)))
    pd.testing.assert_frame_equal(back, table, check_dtype=False)
    csv = pd.read_csv(pa.BufferReader(cf.to_csv(table)))
    assert csv["density"].tolist() == pytest.approx(table["density"].tolist())
    assert csv["prompt_id"].tolist() == table["prompt_id"].tolist()


def test_mode_switch_and_overlay(folders):
    at, folder = corpus_app(folders)
    res = load_results(folder)
    if "attention-kept" not in res.modes:
        pytest.skip("these results hold one ablation mode")
    at.radio(key="corpus_mode").set_value("attention-kept")
    ok(at.run())
    shown, want = shown_points(at), expected_points(folder, "attention-kept")
    assert set(shown["mode"]) == {"attention-kept"}
    assert shown["density"].tolist() == pytest.approx(want["density"].tolist())
    table = at.dataframe[1].value
    assert table["rho"].iloc[0] == pytest.approx(stats.density_entropy(res, "attention-kept").rho, nan_ok=True)
    at.radio(key="corpus_mode").set_value(cf.OVERLAY)
    ok(at.run())
    shown = shown_points(at)
    assert shown.groupby("mode").size().to_dict() == {"all": len(want), "attention-kept": len(want)}
    assert set(at.dataframe[1].value["mode"]) == {"all", "attention-kept"}
    assert set(charts_with(at, "q75")["mode"]) == {"all", "attention-kept"}
    spec = json.loads(chart(at, "corpus_scatter").proto.spec)
    assert spec["encoding"]["shape"]["field"] == "mode"
    assert at.query_params["mode"] == cf.OVERLAY


def test_colour_and_density_axis(folders):
    at, folder = corpus_app(folders)
    res = load_results(folder)
    at.radio(key="corpus_colour").set_value("frequency")
    at.radio(key="corpus_axis").set_value("linear")
    ok(at.run())
    spec = json.loads(chart(at, "corpus_scatter").proto.spec)
    want = expected_points(folder, "all")
    shown = shown_points(at)
    assert shown["density"].tolist() == pytest.approx(want["density_linear"].tolist())
    assert at.dataframe[1].value["rho"].iloc[0] == pytest.approx(
        stats.density_entropy(res, "all", "linear").rho, nan_ok=True
    )
    if cf.has_frequencies(res):
        assert spec["encoding"]["color"]["field"] == "freq_log"
    else:
        assert any("no token frequencies" in i.value for i in at.info)


def test_bad_folders_show_errors_and_the_page_keeps_working(folders, tmp_path):
    at, folder = corpus_app(folders)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "run.json").write_text("{not json")
    missing = tmp_path / "nowhere"
    at.text_area(key="corpus_folders").set_value(f"{at.text_area(key='corpus_folders').value}\n{missing}\n{corrupt}")
    at.run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(f"no results folder at {missing}" in e for e in errors), errors
    assert any("corrupt or not an s-Trace run file" in e for e in errors), errors
    # the good results are still drawn
    assert shown_points(at)["density"].tolist() == pytest.approx(expected_points(folder, "all")["density"].tolist())
    at.text_area(key="corpus_folders").set_value(str(missing))
    at.multiselect(key="corpus_results").set_value([])
    at.run()
    assert not at.exception
    assert any(str(missing) in e.value for e in at.error)


def pick_point(points: pd.DataFrame) -> pd.Series:
    """The point of the Trace page's first example prompt if shown (its sweep may be cached already), else
    the shortest prompt's (the cheapest sweep when the Trace page opens it)."""
    preferred = points[points["text"] == PREFERRED]
    if len(preferred):
        return preferred.iloc[0]
    if "n_tokens" in points:
        return points.sort_values(["n_tokens", "prompt_id"]).iloc[0]
    return points.sort_values("text", key=lambda t: t.str.len()).iloc[0]


def test_selecting_a_point_opens_it_on_the_trace_page(folders):
    at, folder = corpus_app(folders)
    res = load_results(folder)
    shown = shown_points(at)
    point = pick_point(shown)
    # a selection the chart no longer shows selects nothing
    ok(select(at, "corpus_scatter", {"model": "no-such-model", "mode": "all", "prompt_id": point["prompt_id"]}))
    assert not [b for b in at.button if b.label == "Open on the Trace page"]
    ok(select(at, "corpus_scatter", {f: point[f] for f in cf.SELECTION_FIELDS}))
    assert [t.value for t in at.text] == [point["text"]]
    assert any(m.label == "Density" and m.value == f"{point['density']:.2f}" for m in at.metric)
    at.button(key="corpus_open").click()
    at.run()
    # now on the Trace page, with the prompt, the results' model, mode and edge weighting
    assert at.text_area(key="prompt").value == point["text"]
    assert at.radio(key="mode").value == "all"
    assert at.radio(key="weighting").value == res.run.settings["weighting"]
    preset = at.selectbox(key="preset").value
    model = at.text_input(key="model_text").value if preset.startswith("other") else preset
    assert model == res.model_id
    assert not at.exception


@pytest.fixture
def no_uploads_left():
    """Remove what the run test's upload leaves in the cache folder."""
    yield
    for upload in (cache_dir() / "uploads").glob("one-prompt-*.txt"):
        upload.unlink()


def test_run_a_corpus_on_the_page(folders, tmp_path, no_uploads_left):
    """A real run of the embedded model: one uploaded prompt, five sizes, one mode, no controls; token
    frequencies counted over the uploaded file."""
    at, _ = corpus_app(folders)
    at.radio(key="run_source").set_value("upload")
    submit = [b for b in at.button if b.label == "Run"][0]
    submit.click()
    at.run()
    assert any("choose a file to upload" in e.value for e in at.error)  # no file yet
    at.radio(key="run_source").set_value("upload")
    at.file_uploader(key="run_upload").set_value(("one prompt.txt", f"{PREFERRED}\n".encode(), "text/plain"))
    at.number_input(key="run_limit").set_value(1)
    at.radio(key="run_grid").set_value("quick")
    at.multiselect(key="run_modes").set_value(["all"])
    at.checkbox(key="run_controls").set_value(False)
    out = tmp_path / "run"
    at.text_input(key="run_out").set_value(str(out))
    [b for b in at.button if b.label == "Run"][0].click()
    ok(at.run())
    assert any("Traced 1 prompts" in s.value for s in at.success), [s.value for s in at.success]
    assert str(out) in at.multiselect(key="corpus_results").value
    res = load_results(out)
    assert res.model_id == "smollm2-135m" and res.modes == ["all"] and len(res.prompts) == 1
    assert res.frequencies is not None and res.frequencies.total > 0
    assert res.prompts["full_top1_freq"].notna().all()
    assert res.run.settings["sizes"] == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert set(res.strata["size"]) <= set(res.run.settings["sizes"]) and 1.0 in set(res.strata["size"])
    shown = shown_points(at)
    mine = shown[shown["model_id"] == "smollm2-135m"]
    mine = mine[mine["text"] == PREFERRED]
    assert res.prompts["density"].iloc[0] in mine["density"].tolist()


@pytest.fixture
def demo_config(monkeypatch, tmp_path):
    """Run the pages under a hosted demo's configuration; restore the defaults afterwards."""
    config = tmp_path / "demo.toml"
    config.write_text(
        'models = ["smollm2-135m", "gemma3-270m"]\ndefault_model = "smollm2-135m"\ndemo = true\n'
        "allow_other_models = false\nallow_local_paths = false\nallow_uploads = false\n"
        "corpus_max_prompts = 3\ntrust_remote_code = false\n"
    )
    monkeypatch.setenv("STRACE_CONFIG", str(config))
    app_state._config_or_error.clear()
    yield
    monkeypatch.delenv("STRACE_CONFIG", raising=False)
    app_state._config_or_error.clear()


def test_the_page_opens_on_forty_word_windows_and_says_why(folders):
    paths, shipped = folders
    if not shipped or not any(p.name == DEFAULT_RESULTS for p in paths):
        pytest.skip("needs the shipped forty-word windows")
    at, folder = corpus_app(folders)
    assert at.multiselect(key="corpus_results").value == [DEFAULT_RESULTS] and folder.name == DEFAULT_RESULTS
    project = load_results(next(p for p in paths if p.name == DEFAULT_MODEL))
    rho = cf.length_correlation(project).rho
    assert rho > 0.8  # on the project's prompts density follows the prompt's length
    why = [c.value for c in at.caption if "forty-word windows" in c.value]
    assert len(why) == 1 and f"{rho:+.2f}" in why[0], [c.value for c in at.caption]
    windows = load_results(folder)
    assert f"rho {cf.length_correlation(windows).rho:+.2f})" in why[0]
    assert f"({windows.prompts['n_tokens'].min()} to {windows.prompts['n_tokens'].max()} tokens" in why[0]
    # another choice of results drops the line
    at.multiselect(key="corpus_results").set_value([DEFAULT_MODEL])
    ok(at.run())
    assert not [c for c in at.caption if "forty-word windows" in c.value]


def test_nucleus_recovery_shows_shares_by_size(folders):
    at, folder = corpus_app(folders)
    res = load_results(folder)
    shown = charts_with(at, "share").sort_values(["k", "by"]).reset_index(drop=True)
    want = stats.recovery_by(res, "all").sort_values(["k", "by"]).reset_index(drop=True)
    assert shown["share"].tolist() == pytest.approx(want["share"].tolist())
    assert sorted(set(shown["by"])) == list(stats.RECOVERY_BY)
    titles = [json.loads(c.proto.spec).get("title") for c in at.get("vega_lite_chart")]
    assert "reaching k by s = 0.01" in titles and "reaching k by s = 0.1" in titles
    # no chart of the page has a fixed width: each fills its column
    assert not [c for c in at.get("vega_lite_chart") if "width" in json.loads(c.proto.spec)]


@pytest.fixture
def no_run(monkeypatch):
    """The run form's calls into the engine, recorded (no model is loaded, nothing is traced)."""
    started = []
    monkeypatch.setattr("ui.corpus_run.cached_model", lambda *args, **kwargs: (None, 0.0))
    monkeypatch.setattr("ui.corpus_run.start_corpus_run", lambda request: started.append(request))
    return started


def press_run(at: AppTest, **values) -> AppTest:
    for key, value in values.items():
        at.number_input(key=key).set_value(value)
    [b for b in at.button if b.label == "Run"][0].click()
    at.run()
    assert not at.exception, at.exception
    return at


def test_a_number_over_the_limit_is_refused_in_words(folders, demo_config, no_run):
    at = corpus_app_demo()
    assert "at most 3" in at.number_input(key="run_limit").help
    errors = [e.value for e in press_run(at, run_limit=1000).error]
    assert errors == ["Prompts: runs here take at most 3 prompts, not 1,000; give a smaller number"], errors
    errors = [e.value for e in press_run(at, run_limit=2, run_window=1000).error]
    assert (
        len(errors) == 1 and errors[0].startswith("Word window: windows here are at most") and "not 1,000" in errors[0]
    )
    assert not no_run


def corpus_app_demo() -> AppTest:
    at = page(CORPUS)
    at.run()
    assert not at.exception
    return at


def test_a_folder_holding_another_run_is_said_in_the_pages_words(folders, tmp_path, monkeypatch):
    """The engine's refusal (a real one: the same folder, another edge weight) in the form's words: what
    differs as the form names it, and what to do on the page, not on the command line."""
    lm, _ = tiny_loaded("llama", 0)
    corpus = Corpus("two", [Prompt(prompt_id(i, t, None), t) for i, t in enumerate(FIXTURE_PROMPTS[:2])])
    folder = tmp_path / "run"
    run_corpus(lm, corpus, folder, Settings(sizes=FIXTURE_SIZES))
    with pytest.raises(OtherRun) as refused:
        run_corpus(lm, corpus, folder, Settings(weighting="l2", sizes=FIXTURE_SIZES))
    assert "--overwrite" in str(refused.value) and "weighting: l1 → l2" in refused.value.reason

    def refuse(request):
        raise refused.value

    monkeypatch.setattr("ui.corpus_run.cached_model", lambda *args, **kwargs: (None, 0.0))
    monkeypatch.setattr("ui.corpus_run.start_corpus_run", refuse)
    at, _ = corpus_app(folders)
    at.radio(key="run_source").set_value("project")
    errors = [e.value for e in press_run(at, run_limit=1).error]
    assert len(errors) == 1, errors
    assert "edge weight: l1 → l2" in errors[0] and "Replace a different run in that folder" in errors[0]
    assert "--overwrite" not in errors[0] and "weighting" not in errors[0]


def test_demo_configuration_allows_no_local_files(folders, tmp_path, demo_config):
    """A hosted demo's configuration: no typed results folders (not even from the URL), no uploads, no
    output folder, short runs of the configured models only."""
    paths, shipped = folders
    local = str(paths[0]) if not shipped else str(tmp_path)
    at = page(CORPUS, {"results": [local]})
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Demo" in i.value for i in at.info)
    assert not [t for t in at.text_area if t.key == "corpus_folders"]
    assert not [t for t in at.text_input if t.key in ("run_out", "run_model_other")]
    assert not at.get("file_uploader")
    assert "upload" not in at.radio(key="run_source").options
    assert at.selectbox(key="run_model").options == ["smollm2-135m · embedded", "gemma3-270m · embedded"]
    assert local not in at.multiselect(key="corpus_results").value
    if not shipped:
        assert any("Choose results" in i.value for i in at.info)
    at = page(COMPARE, {"results": [local]})
    at.run()
    assert not at.exception and not [t for t in at.text_area if t.key == "compare_folders"]


# ------------------------------------------------------------------------------------------ Compare page


@pytest.fixture(scope="module")
def compare_paths(folders):
    """The results the Compare page shows first: the shipped ones on the corpus of the Corpus page's
    first results (they share their prompts), or the fixture's folders."""
    paths, shipped = folders
    if shipped:
        corpus = {p: (RunInfo.read(p).source, RunInfo.read(p).window) for p in paths}
        ref = corpus[first_shown(paths, shipped)]
        paths = [p for p in paths if ref is None or corpus[p] == ref]
    if len(paths) < 2:
        pytest.skip("needs results of two models")
    return paths, shipped


def compare_app(compare_paths) -> AppTest:
    paths, shipped = compare_paths
    at = page(COMPARE, None if shipped else {"results": [str(p) for p in paths]})
    return ok(at.run())


def test_compare_page_draws_both_models(compare_paths):
    at = compare_app(compare_paths)
    res = [load_results(p) for p in compare_paths[0]]
    assert [s.value for s in at.subheader] == [
        "Density across models",
        "Spearman's rho across models",
        "Error against size, model by model",
    ]
    # the pair scatter: each shared prompt at its density under the first and the second model
    shown = data(chart(at, "compare_scatter")).sort_values("text").reset_index(drop=True)
    want = stats.paired_density(res[0], res[1], "all").sort_values("text").reset_index(drop=True)
    assert shown["text"].tolist() == want["text"].tolist()
    assert shown["density_a"].tolist() == pytest.approx(want["density_a"].tolist())
    assert shown["density_b"].tolist() == pytest.approx(want["density_b"].tolist())
    # the Spearman table: every pair of models
    table = at.dataframe[1].value
    cm = stats.cross_model(res, "all")
    assert len(table) == len(cm) == len(res) * (len(res) - 1) // 2
    assert table["rho"].tolist() == pytest.approx(cm["rho"].tolist(), nan_ok=True)
    assert table["n"].tolist() == cm["n"].tolist()
    # the mean curves of every model, side by side
    curves = charts_with(at, "q75")
    assert set(curves["model"]) == set(cf.labels(res))
    # overlay: both modes in the scatter and the table
    at.radio(key="compare_mode").set_value(cf.OVERLAY)
    ok(at.run())
    assert set(data(chart(at, "compare_scatter"))["mode"]) == {"all", "attention-kept"}
    assert set(at.dataframe[1].value["mode"]) == {"all", "attention-kept"}


def test_compare_selection_shows_the_prompt(compare_paths):
    at = compare_app(compare_paths)
    shown = data(chart(at, "compare_scatter"))
    point = pick_point(shown)
    ok(select(at, "compare_scatter", {"mode": point["mode"], "text": point["text"]}))
    assert [t.value for t in at.text] == [point["text"]]
    labels = [b.label for b in at.button]
    assert f"Open with {point['model_a']} on the Trace page" in labels
    assert f"Open with {point['model_b']} on the Trace page" in labels


def test_compare_needs_two_results(compare_paths):
    paths, shipped = compare_paths
    at = page(COMPARE, {"results": [paths[0].name if shipped else str(paths[0])]})
    ok(at.run())
    assert any("two or more" in i.value for i in at.info)
