"""The Python API for notebooks: the README's example runs as written, and what it returns agrees with the
trace and with the builders the app calls."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import altair as alt
import networkx as nx
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import EXAMPLES, Example, Settings, Trace
from explorer.examples import BY_KEY
from explorer.results import table_rows
from explorer.views import charts, curves, distribution, labels, node_graph, token_graph

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_example() -> str:
    """The first Python code block of the README's "## Python" section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python section has no python code block"
    return blocks[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The README example run as written, in a fresh folder; its variables and printed output."""
    folder = tmp_path_factory.mktemp("notebook")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        import contextlib
        import io

        out = io.StringIO()
        namespace: dict = {"__name__": "__notebook__"}
        with contextlib.redirect_stdout(out):
            exec(compile(readme_example(), "README.md", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace, out.getvalue(), folder


def test_readme_example_runs_and_returns_the_trace(run):
    ns, printed, folder = run
    trace = ns["trace"]
    assert isinstance(trace, Trace)
    assert trace.prompt == "The capital of France is" and trace.settings.controls
    assert f"density {trace.density:.2f}" in printed
    written = json.loads((folder / "trace.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(trace.to_dict()))


def test_to_frame_is_the_per_size_table(run):
    trace = run[0]["trace"]
    df = trace.to_frame()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == len(trace.strata)
    assert df["tv"].tolist() == [s.trace.tv for s in trace.strata]
    assert df["edges"].tolist() == [s.n_edges for s in trace.strata]
    assert df["tv_random"].tolist() == [s.outputs["random"].tv for s in trace.strata]
    assert list(df.columns) == list(table_rows(trace)[0])


def test_to_json_holds_the_trace(run):
    trace = run[0]["trace"]
    data = json.loads(trace.to_json(indent=None))
    assert data["prompt"] == trace.prompt and data["density"] == trace.density
    assert [s["n_edges"] for s in data["strata"]] == [s.n_edges for s in trace.strata]
    assert "\n" not in trace.to_json(indent=None) and "\n" in trace.to_json()


def test_charts_are_the_app_charts(run):
    trace = run[0]["trace"]
    i = labels.closest_stratum(trace, 0.4)
    assert isinstance(run[0]["table"], pd.DataFrame)
    pairs = [
        (charts.curves(trace, 0.4), curves.chart(trace, i)),
        (charts.distribution(trace, 0.4), distribution.chart(trace, i)),
        (charts.token_graph(trace, 0.4), token_graph.chart(trace, i)),
    ]
    for mine, app in pairs:
        assert isinstance(mine, alt.TopLevelMixin)
        assert mine.to_dict() == app.to_dict()
    # default size: the first one keeping the top-1, as the app's slider starts
    assert charts.index_of(trace) == labels.default_stratum(trace)
    assert charts.curves(trace).to_dict() == curves.chart(trace, labels.default_stratum(trace)).to_dict()
    assert charts.composition(trace, 1e-3).to_dict() != charts.composition(trace, 1.0).to_dict()


def test_node_graph_is_the_app_graph(run, tmp_path):
    ns = run[0]
    trace, graph = ns["trace"], ns["graph"]
    i = labels.closest_stratum(trace, 0.4)
    app = node_graph.build(trace, i)
    assert isinstance(graph, charts.NodeGraph) and isinstance(graph.graph, nx.DiGraph)
    assert dict(graph.graph.nodes(data=True)) == dict(app.nodes(data=True))
    assert graph.html == node_graph.to_html(app, height=620)
    frame = graph._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and "vis-network" in graph.html
    assert graph.save(tmp_path / "g.html").read_text(encoding="utf-8") == graph.html
    rows = charts.component_edges(trace, "a23.h4", 0.4)
    assert len(rows) == trace.strata[i].components["a23.h4"]


def test_examples_are_well_formed():
    assert EXAMPLES[0].prompt == "The capital of France is"
    assert len({ex.key for ex in EXAMPLES}) == len(EXAMPLES) == 5
    for ex in EXAMPLES:
        assert isinstance(ex, Example) and BY_KEY[ex.key] is ex
        assert isinstance(ex.settings, Settings) and ex.settings.mode == ex.mode
        assert ex.look_for and ex.top1 and ex.top1_kept_from
        assert repr(ex.prompt) in ex.label
        assert (ex.component is None) == (ex.component_reads is None) == (ex.component_from is None)


def test_example_traces_with_its_settings(run):
    ex = EXAMPLES[0]
    trace = ex.trace(run[0]["lm"], controls=False, compare_modes=False)
    assert trace.prompt == ex.prompt and trace.settings.weighting == ex.weighting and not trace.settings.controls
    assert trace.gold == ex.gold and trace.full.gold_ce is not None
    assert trace.full.top[0].token == ex.top1
    assert trace.recovery[1] == ex.top1_kept_from
