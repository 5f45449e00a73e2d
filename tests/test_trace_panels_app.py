"""The Trace page's component panel, what-if, URL settings and saved traces (AppTest, embedded model): the
panel's pattern is the engine's, the what-if's TV is evaluate_subgraph's, a link's settings come back, and
a trace opened from a file shows every view without tracing."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL, Settings, load_model, trace_prompt
from explorer.export import write_json
from explorer.inspection import inspect_component
from explorer.views import labels
from explorer.whatif import evaluate_subgraph
from tests.test_app import PROMPT, new_app


@pytest.fixture(scope="module")
def lm():
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference(lm):
    return trace_prompt(lm, PROMPT, Settings(controls=True))


@pytest.fixture(scope="module")
def app():
    at = new_app(component="a3.h2").run()
    assert not at.exception, at.exception
    return at


def _datasets(at: AppTest, title: str):
    for chart in at.get("vega_lite_chart"):
        if title in chart.proto.spec:
            return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]
    raise AssertionError(f"no chart titled {title!r}")


def test_the_panel_shows_the_engines_pattern_of_the_chosen_head(app, lm, reference):
    assert "Component" in [h.value for h in app.subheader]
    index = labels.default_stratum(reference)
    ins = inspect_component(lm, reference, "a3.h2", reference.strata[index].size)
    cells = next(d for d in _datasets(app, "a3.h2: attention pattern") if "prob" in d.columns)
    assert np.allclose(cells["prob"], ins.pattern[cells["query"], cells["key"]], atol=1e-6)  # type: ignore[index]
    assert any("of their summed weight" in m.value for m in app.markdown)


def test_whatif_removes_the_chosen_head_in_one_pass(app, lm, reference):
    at = app
    at.multiselect(key="whatif_remove").set_value(["a3"]).run()
    at.button(key="whatif_run").click().run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in at.metric}
    index = labels.default_stratum(reference)
    want = evaluate_subgraph(lm, reference, size=reference.strata[index].size, remove=["a3"])
    assert shown["TV, changed"] == f"{want.output.tv:.3f}" and shown["TV, unchanged"] == f"{want.base.tv:.3f}"


def test_the_url_holds_and_restores_the_methods_settings():
    at = new_app(prompt="Two plus two is", weights="l2", mode="attention-kept", controls="false").run()
    assert not at.exception, at.exception
    assert at.radio(key="weighting").value == "l2" and at.radio(key="mode").value == "attention-kept"
    assert at.toggle(key="controls").value is False
    qp = dict(at.query_params)
    assert qp["weights"] == ["l2"] or qp["weights"] == "l2"
    assert "attention-kept" in str(qp["mode"]) and "false" in str(qp["controls"])


def test_a_saved_trace_reopens_without_the_model(reference, tmp_path):
    path = tmp_path / "t.json"
    write_json(reference, path)
    at = new_app().run()
    at.text_input(key="trace_path").input(str(path)).run()
    at.button(key="trace_path_open").click().run()
    assert not at.exception, at.exception
    assert any("Showing the saved trace" in i.value for i in at.info)
    at.button(key="open_panel").click().run()
    assert any("need the model" in i.value or "needs the model" in i.value for i in at.info)
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema": "s-trace-explorer/trace", "schema_version": 99}')
    at.text_input(key="trace_path").input(str(bad)).run()
    at.button(key="trace_path_open").click().run()
    assert not at.exception and any("version" in e.value for e in at.error)
