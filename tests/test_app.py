"""The Trace page driven by Streamlit's AppTest: one sweep of an example prompt on the default model,
reused by every test; the views follow the slider and show the engine's numbers for that size; the
inspector keeps its component across sizes; a new prompt starts at its own default size; the prompt's
token count is shown against the cap. (The graph's side of the link with the inspector, and the views
in a real browser: tests/test_browser_trace.py.)"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL, Settings, load_model, trace_prompt
from explorer.views import labels, node_graph

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PROMPT = "The capital of France is"  # the page's first example prompt
TIMEOUT = 600
N_CHARTS = 6  # distribution, composition, three panels of "Error against size", token graph (the component
# panel, closed until a click or its button, adds the chosen head's pattern and token effects)


def new_app(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at


@pytest.fixture(scope="module")
def reference():
    """The engine's own trace of the prompt with the page's default settings."""
    return trace_prompt(load_model(DEFAULT_MODEL), PROMPT, Settings(controls=True))


@pytest.fixture(scope="module")
def app():
    at = new_app().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def chart_data(at: AppTest, n: int) -> list[pd.DataFrame]:
    """The data sets of the ``n``-th chart on the page (distribution, composition, the three panels of the
    curves, tokens)."""
    proto = at.get("vega_lite_chart")[n].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]


def move(at: AppTest, index: int) -> AppTest:
    at.select_slider[0].set_value(index)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def graph_data(at: AppTest) -> dict:
    """What the page sends its node graph's frame: ``page`` (the frame's document, sent with a full run of
    the script), ``graph`` (sent as JSON text), ``height``."""
    data = json.loads(at.get("bidi_component")[0].proto.json)
    return data | {"graph": json.loads(data["graph"])}


def test_page_shows_all_views(app):
    assert [s.value for s in app.subheader][:5] == [
        "Components",
        "Output distribution",
        "Composition",
        "Error against size",
        "Token graph",
    ]
    assert len(app.get("vega_lite_chart")) == N_CHARTS
    data = graph_data(app)
    assert "new vis.Network" in data["page"]
    assert "cdn.jsdelivr" not in data["page"] and "bootstrap" not in data["page"]
    assert data["graph"]["clickable"] and data["graph"]["selected"] == app.selectbox(key="node").value
    assert app.text_area(key="prompt").value == PROMPT


def test_slider_lists_the_engine_strata(app, reference):
    slider = app.select_slider[0]
    assert len(slider.options) == len(reference.strata)
    for option, s in zip(slider.options, reference.strata):
        assert option == f"s = {labels.format_size(s.size)} · {s.n_edges:,} edge" + ("" if s.n_edges == 1 else "s")


@pytest.mark.parametrize("index", [-1, -5])
def test_views_follow_slider_and_match_engine(app, reference, index):
    i = index % len(reference.strata)
    stratum = reference.strata[i]
    move(app, i)
    m = metrics(app)
    assert m["TV"] == f"{stratum.trace.tv:.3f}"
    assert m["Shared nucleus"] == f"{stratum.trace.shared_nucleus}%"
    assert m["Top-1 here"] == repr(stratum.trace.top[0].token)
    # distribution: the subgraph's own top tokens and probabilities
    dist = pd.concat(chart_data(app, 0))
    sub = dist[(dist["panel"] == "subgraph's top tokens") & (dist["source"] == "subgraph")].sort_values("rank")
    assert sub["prob"].tolist() == pytest.approx([tp.prob for tp in stratum.trace.top], rel=1e-4, abs=1e-6)
    # composition: kind counts
    comp = pd.concat(chart_data(app, 1))
    kinds = comp[comp["group"] == "by kind"].set_index("part")["edges"].to_dict()
    assert kinds == stratum.kinds
    # curves: the red rule sits at this size
    curve_sets = chart_data(app, 2)
    rule = [d for d in curve_sets if list(d.columns) == ["size"]]
    assert rule and rule[0]["size"].iloc[0] == pytest.approx(stratum.size)
    # node table: the chosen component's edges, as the engine's order gives them
    name = app.selectbox(key="node").value
    table = app.dataframe[0].value
    expected = node_graph.node_edges(reference, i, name)
    assert len(table) == len(expected) == stratum.components[name]
    assert table["rank"].tolist() == [e["rank"] for e in expected]
    # the URL follows
    assert float(app.query_params["size"]) == pytest.approx(stratum.size, rel=0.05)


def test_views_change_with_slider(app, reference):
    n = len(reference.strata)
    move(app, n - 1)
    big = (metrics(app)["TV"], pd.concat(chart_data(app, 1))["edges"].tolist())
    move(app, n // 2)
    small = (metrics(app)["TV"], pd.concat(chart_data(app, 1))["edges"].tolist())
    assert big != small


def test_downloads_hold_the_trace(app, reference):
    buttons = app.get("download_button")
    assert sorted(b.proto.label for b in buttons) == [
        "Edge list (CSV)",
        "Graph (Neuronpedia JSON)",
        "Per-size table (CSV)",
        "Report (HTML)",
        "Trace (JSON)",
    ]


def test_empty_prompt_shows_error_and_page_recovers(app):
    app.text_area(key="prompt").set_value("   ")
    app.run()
    assert not app.exception
    assert any("prompt is empty" in e.value for e in app.error)
    app.text_area(key="prompt").set_value(PROMPT)
    app.run()
    assert not app.error and not app.exception
    assert len(app.get("vega_lite_chart")) == N_CHARTS


def test_bad_model_id_shows_error():
    at = new_app(model="no-such-org/no-such-model-xyz").run()
    assert not at.exception
    assert any("no-such-org/no-such-model-xyz" in e.value for e in at.error)
    assert at.selectbox(key="preset").value.startswith("other")


def test_link_reproduces_the_view(reference):
    i = len(reference.strata) - 3
    size = reference.strata[i].size
    at = new_app(model=DEFAULT_MODEL, prompt=PROMPT, size=str(size)).run()
    assert not at.exception and not at.error
    assert at.select_slider[0].value == i
    assert metrics(at)["TV"] == f"{reference.strata[i].trace.tv:.3f}"
    assert math.isclose(float(at.query_params["size"]), size, rel_tol=0.05)


def test_a_chart_keeps_its_spec_across_sizes(app, reference):
    """Only the rows change with the size: the browser updates the data of the chart it shows."""
    specs, rows = [], []
    for i in (1, len(reference.strata) - 1):
        move(app, i)
        specs.append([c.proto.spec for c in app.get("vega_lite_chart")][:6])  # the component panel's follow the size
        rows.append(pd.concat(chart_data(app, 1)))  # the composition's
    assert specs[0] == specs[1]
    assert not rows[0].equals(rows[1])


def test_the_inspector_keeps_its_component_across_sizes(reference):
    at = new_app().run()
    names = reference.layout.component_names()
    entered = labels.first_entry(reference)
    later = sorted((s, n) for n, s in entered.items() if s > reference.strata[2].size)
    size, name = later[len(later) // 2]  # a component that enters the trace at a middle size
    first = [s.size for s in reference.strata].index(size)
    assert name in names
    at.selectbox(key="node").set_value(name).run()
    for i in list(range(len(reference.strata) - 1, -1, -1)):
        move(at, i)
        assert at.selectbox(key="node").value == name, (i, at.selectbox(key="node").value)
        assert graph_data(at)["graph"]["selected"] == (name if i >= first else None)
        notes = [m.value for m in at.info if name in m.value]
        if i >= first:
            assert not notes and bool(at.dataframe[0].value["layer"].notna().all())
            assert len(at.dataframe[0].value) == reference.strata[i].components[name]
        else:
            assert notes == [
                f"{name} is not in the trace at s = {labels.format_size(reference.strata[i].size)}: "
                f"it enters at s = {labels.format_size(size)}."
            ]
    assert at.query_params["component"] == name


def test_a_new_prompt_starts_at_its_own_default_size(reference):
    at = new_app().run()
    move(at, len(reference.strata) - 1)
    other = "Two plus two is"
    at.text_area(key="prompt").set_value(other).run()
    assert not at.exception and not at.error
    fresh = trace_prompt(load_model(DEFAULT_MODEL), other, Settings(controls=True))
    assert at.select_slider[0].value == labels.default_stratum(fresh) != len(fresh.strata) - 1


def test_the_top1_metric_says_where_it_is_first_kept(app, reference):
    kept = reference.recovery[1]
    assert metrics(app)["Top-1 first kept at"] == (f"s = {labels.format_size(kept)}" if kept else "never")
    assert "Top-1 kept from" not in metrics(app)


def test_the_prompt_shows_its_token_count_against_the_cap():
    at = new_app().run()
    counts = [c.value for c in at.sidebar.caption if "at most" in c.value]
    from explorer.cost import estimate_cost

    lm = load_model(DEFAULT_MODEL)
    est = estimate_cost(lm.model.config, 5, Settings(controls=True), lm.device, lm.dtype)
    assert counts == [
        f"5 tokens of at most 256 here. Estimate: {est.n_edges:,} edges, peak {est.peak_bytes / 2**30:.1f} GiB, "
        f"about {est.seconds:.1f} s."
    ]
    long = "word " * 300
    n = len(load_model(DEFAULT_MODEL).tokenizer(long)["input_ids"])
    at.text_area(key="prompt").set_value(long).run()
    counts = [c.value for c in at.sidebar.caption if "cap" in c.value]
    assert counts == [f":red[**{n} tokens**]: over the cap of 256 here; shorten the prompt."]


def test_the_estimate_says_when_a_trace_runs_in_smaller_batches_or_would_not_fit(monkeypatch):
    import explorer.models.limits as limits
    from explorer.cost import estimate_cost

    lm = load_model(DEFAULT_MODEL)
    at = lambda b: estimate_cost(lm.model.config, 5, Settings(controls=True, batch_size=b), lm.device, lm.dtype)
    monkeypatch.setattr(limits, "available_bytes", lambda device: at(8).peak_bytes - at(8).weights_bytes)
    captions = [c.value for c in new_app().run().sidebar.caption if "Estimate:" in c.value]
    assert len(captions) == 1 and captions[0].endswith(" Masked passes in batches of 8 to fit."), captions
    monkeypatch.setattr(limits, "available_bytes", lambda device: 1024)
    captions = [c.value for c in new_app().run().sidebar.caption if "Estimate:" in c.value]
    refused = ":red[**Would not fit**] in the 0.0 GiB free: the trace will be refused."
    assert len(captions) == 1 and captions[0].endswith(refused), captions


def test_the_component_panel_opens_from_its_button():
    """Closed by default (a slider move then re-draws only the views above it); its button opens it."""
    at = new_app().run()
    assert len(at.get("vega_lite_chart")) == N_CHARTS and "Component" not in [h.value for h in at.subheader]
    at.button(key="open_panel").click().run()
    assert not at.exception, at.exception
    assert "Component" in [h.value for h in at.subheader] and "What if" in [h.value for h in at.subheader]
    assert len(at.get("vega_lite_chart")) > N_CHARTS
