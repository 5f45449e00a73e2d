"""The Trace page driven by Streamlit's AppTest: one sweep of an example prompt on the default model,
reused by every test; the views follow the slider and show the engine's numbers for that size."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL, Settings, load_model, trace_prompt
from explorer.views import node_graph

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PROMPT = "The capital of France is"  # the page's first example prompt
TIMEOUT = 600


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
    """The data sets of the ``n``-th Altair chart on the page (distribution, composition, curves, tokens)."""
    proto = at.get("vega_lite_chart")[n].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]


def move(at: AppTest, index: int) -> AppTest:
    at.select_slider[0].set_value(index)
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def test_page_shows_all_views(app):
    assert [s.value for s in app.subheader][:5] == [
        "Components",
        "Output distribution",
        "Composition",
        "Error against size",
        "Token graph",
    ]
    assert len(app.get("vega_lite_chart")) == 4
    html = app.get("iframe")[0].proto.srcdoc
    assert "vis.Network" in html or "vis-network" in html
    assert "cdn.jsdelivr" not in html and "bootstrap" not in html
    assert app.text_area(key="prompt").value == PROMPT


def test_slider_lists_the_engine_strata(app, reference):
    slider = app.select_slider[0]
    assert len(slider.options) == len(reference.strata)
    assert slider.options[0].startswith("s = ") and "edges" in slider.options[0]


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
    assert len(buttons) == 2
    assert sorted(b.proto.label for b in buttons) == ["Per-size CSV", "Trace JSON"]


def test_empty_prompt_shows_error_and_page_recovers(app):
    app.text_area(key="prompt").set_value("   ")
    app.run()
    assert not app.exception
    assert any("prompt is empty" in e.value for e in app.error)
    app.text_area(key="prompt").set_value(PROMPT)
    app.run()
    assert not app.error and not app.exception
    assert len(app.get("vega_lite_chart")) == 4


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
