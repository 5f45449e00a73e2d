"""The Text strip page and the Trace page's position, target and foil, driven by Streamlit's AppTest on the
embedded model: the strip shows the engine's numbers for every token, a click on a token opens the Trace
page traced after it, and the Trace page's numbers equal :func:`explorer.trace_prompt` at that position with
that target and foil; the URL's query parameters reproduce both pages.

AppTest has no interaction for charts, so a click on a chip is sent as the browser sends it (see
:mod:`tests.test_corpus_pages`): the chart's widget state ``{"selection": {"strip_pick": [{"position": t}]}}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL, Settings, load_model, trace_prompt
from explorer.text import generate, trace_text
from explorer.views import labels, strip
from ui import state as app_state

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
STRIP = "ui/pages/strip.py"
TEXT = "The capital of France is Paris."
PROMPT = "The capital of France is"  # the Trace page's first example
TIMEOUT = 600


@pytest.fixture(scope="module")
def lm():
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def text_trace(lm):
    return trace_text(lm, TEXT, Settings())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def strip_page(**query) -> AppTest:
    """The app about to open the Text strip page with ``query`` in the URL, as a first visit to it (the app
    runs once first, on the Trace page, so that ``st.navigation`` has registered its pages)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params.clear()
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(STRIP)
    return at


def strip_chart(at: AppTest):
    found = [c for c in at.get("vega_lite_chart") if c.proto.id.endswith("strip_chart")]
    assert found, [c.proto.id for c in at.get("vega_lite_chart")]
    return found[0]


def chips(at: AppTest) -> pd.DataFrame:
    """The strip's rows (one per token) as the page sent them to the chart."""
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in strip_chart(at).proto.datasets]
    frames = [f for f in frames if "chip" in f.columns]
    assert frames
    return frames[0].sort_values("position").reset_index(drop=True)


def click_chip(at: AppTest, position: int) -> AppTest:
    states = at._tree.get_widget_states()
    states.widgets.append(
        WidgetState(
            id=strip_chart(at).proto.id,
            string_value=json.dumps({"selection": {strip.SELECTION: [{"position": position}]}}),
        )
    )
    return at._run(states)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_the_strip_shows_the_engines_numbers_and_a_click_opens_the_trace_page(lm, text_trace):
    at = ok(strip_page().run())
    assert any("Trace every token" in i.value for i in at.info)  # nothing traced before asked
    at.text_area(key="strip_text").set_value(TEXT)
    ok(at.button[0].click().run())
    df = chips(at)
    assert df["chip"].tolist() == [strip.chip_text(t) for t in text_trace.tokens]
    by_position = {p.position: p for p in text_trace.positions}
    for t, value in zip(df["position"], df["value"]):
        if t in by_position:
            assert value == pytest.approx(by_position[t].density, rel=1e-6)
        else:
            assert pd.isna(value)
    assert dict(at.query_params) == {"model": DEFAULT_MODEL, "text": TEXT, "colour": "density"}

    # the other quantities: entropy, and TV at a chosen size
    at.radio(key="strip_colour").set_value("entropy")
    ok(at.run())
    assert chips(at).set_index("position")["value"].dropna().tolist() == pytest.approx(
        [p.entropy for p in text_trace.positions], rel=1e-6
    )
    at.radio(key="strip_colour").set_value("tv")
    ok(at.run())
    size = at.select_slider(key="strip_size").value
    assert size == 0.01 and at.query_params["tv_size"] == "0.01"
    tv = chips(at).set_index("position")["value"]
    for t, tr in text_trace.traces.items():
        want = {s.size: s.trace.tv for s in tr.strata}.get(size)
        assert pd.isna(tv[t]) if want is None else tv[t] == pytest.approx(want, rel=1e-5, abs=1e-7)

    # a click on " France" (position 3) opens the Trace page on the prediction after it
    ok(click_chip(at, 3))
    assert at.text_area(key="prompt").value == TEXT
    assert at.button_group(key="position").value == 3
    assert "Traced: the prediction after token 3, ' France'; the text's next token: ' is'" in markdown(at)
    assert at.query_params["position"] == "3" and at.query_params["prompt"] == TEXT
    reference = trace_prompt(lm, TEXT, Settings(controls=True), position=3)
    i = labels.default_stratum(reference)
    assert at.select_slider[0].value == i
    m = metrics(at)
    assert m["TV"] == f"{reference.strata[i].trace.tv:.3f}"
    assert m["P(target) here"] == f"{reference.strata[i].trace.target_prob:.3f}"
    assert reference.target == " is"


def test_the_trace_page_reads_position_target_and_foil_from_the_url(lm):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in {"prompt": PROMPT, "position": "2", "target": " the", "foil": " France"}.items():
        at.query_params[k] = v
    ok(at.run())
    reference = trace_prompt(lm, PROMPT, Settings(controls=True), position=2, target=" the", foil=" France")
    i = labels.default_stratum(reference)
    out = reference.strata[i].trace
    assert at.button_group(key="position").value == 2
    assert at.text_input(key="target").value == " the" and at.text_input(key="foil").value == " France"
    m = metrics(at)
    assert m["TV"] == f"{out.tv:.3f}"
    assert m["P(target) here"] == f"{out.target_prob:.3f}"
    assert m["P(foil) here"] == f"{out.foil_prob:.3f}"
    assert m["Logit difference here"] == f"{out.target_logit_diff:+.2f}"
    assert "target: ' the', foil: ' France'" in markdown(at)
    qp = dict(at.query_params)
    assert (qp["position"], qp["target"], qp["foil"]) == ("2", " the", " France")
    # the curves' panels hold the target's and foil's probabilities across sizes
    frames = [
        pa.ipc.open_stream(d.data.data).read_all().to_pandas()
        for chart in at.get("vega_lite_chart")
        for d in chart.proto.datasets
        if d.data.data
    ]
    data = pd.concat([f for f in frames if {"series", "panel", "size"} <= set(f.columns)], ignore_index=True)
    data = data.drop_duplicates(subset=["panel", "series", "size"])
    target_rows = data[(data["series"] == "target ' the'") & (data["panel"] == "prob") & data["size"].notna()]
    assert target_rows.sort_values("size")["value"].tolist() == pytest.approx(
        [s.trace.target_prob for s in reference.strata], rel=1e-5
    )


def test_the_trace_page_chooses_a_position_and_a_target_from_the_top_tokens(lm):
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["prompt"] = PROMPT
    ok(at.run())
    pills = at.button_group(key="position")
    assert pills.value == 4 and pills.options == ["capital", "of", "France", "is"]
    assert at.query_params["position"] == "4"
    pills.set_value(1)
    ok(at.run())
    reference = trace_prompt(lm, PROMPT, Settings(controls=True), position=1)
    assert "Traced: the prediction after token 1, ' capital'" in markdown(at)
    assert at.query_params["position"] == "1" and "target" not in at.query_params
    i = at.select_slider[0].value
    assert metrics(at)["TV"] == f"{reference.strata[i].trace.tv:.3f}"
    # pick the full model's second token as the target: the text input takes it, the URL too
    second = reference.full.top[1].token
    at.selectbox(key="target_pick").set_value(second)
    ok(at.run())
    assert at.text_input(key="target").value == second and at.query_params["target"] == second
    picked = trace_prompt(lm, PROMPT, Settings(controls=True), position=1, target=second)
    i = at.select_slider[0].value
    assert metrics(at)["P(target) here"] == f"{picked.strata[i].trace.target_prob:.3f}"
    # the target does not change the order, only the measurement
    assert (picked.order == reference.order).all()
    # a new prompt goes back to its last token, and the default target
    at.text_input(key="target").set_value("")
    at.text_area(key="prompt").set_value("The opposite of hot is")
    ok(at.run())
    assert at.button_group(key="position").value == len(at.button_group(key="position").options)


def test_a_generated_continuation_is_traced_token_by_token(lm):
    at = ok(strip_page().run())
    at.radio(key="strip_source").set_value("generate")
    ok(at.run())
    at.text_area(key="strip_prompt").set_value("Once upon a time")
    at.number_input(key="strip_n").set_value(3)
    at.radio(key="strip_decoding").set_value("greedy")
    ok(at.button[0].click().run())
    ids = generate(lm, "Once upon a time", 3, greedy=True)
    df = chips(at)
    n_prompt = len(lm.tokenizer("Once upon a time")["input_ids"])
    assert df["chip"].tolist() == [strip.chip_text(lm.tokenizer.decode([i])) for i in ids]
    assert df["generated"].tolist() == [t >= n_prompt for t in range(len(ids))]
    assert df.loc[df["traced"], "position"].tolist() == list(range(n_prompt - 1, len(ids) - 1))
    qp = dict(at.query_params)
    assert qp["continue"] == "Once upon a time" and qp["decoding"] == "greedy" and qp["tokens"] == "3"


def test_a_strip_link_reproduces_the_view(text_trace):
    at = ok(strip_page(text=TEXT, colour="next_token_prob").run())
    assert at.radio(key="strip_colour").value == "next_token_prob"
    values = chips(at).set_index("position")["value"]
    for p in text_trace.positions:  # after the last token there is no next token
        want = p.next_token_prob
        assert pd.isna(values[p.position]) if want is None else values[p.position] == pytest.approx(want, rel=1e-5)


@pytest.fixture
def demo(monkeypatch):
    monkeypatch.setenv("STRACE_CONFIG", str(ROOT / "config" / "demo.toml"))
    app_state._config_or_error.clear()
    app_state.strip_store.clear()
    yield
    monkeypatch.delenv("STRACE_CONFIG", raising=False)
    app_state._config_or_error.clear()
    app_state.strip_store.clear()


def test_the_demo_limits_the_strips_text_and_models(demo):
    long_text = " ".join(["word"] * 80)
    at = strip_page(text=long_text).run()
    assert not at.exception
    assert any("the limit is 64" in e.value for e in at.error)
    assert at.selectbox(key="strip_preset").options == ["smollm2-135m · embedded", "gemma3-270m · embedded"]
    at.radio(key="strip_source").set_value("generate")
    at.run()
    assert at.number_input(key="strip_n").max == 63
