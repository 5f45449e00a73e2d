"""Portable and reopenable traces: the trace JSON read back (explorer.trace_file), the Neuronpedia graph
JSON (explorer.neuronpedia) with its typed model, the component edge list (explorer.edge_list), and the
``trace`` command's flags that write them."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest

from explorer import edge_list
from explorer.__main__ import main
from explorer.errors import BadTraceFile
from explorer.neuronpedia import AttributionGraph, read_graph, to_graph
from explorer.results import Settings
from explorer.text import trace_text
from explorer.trace import trace_prompt
from explorer.trace_file import loads_trace, read_trace
from explorer.views import charts, labels
from tests.helpers import random_model, tiny_loaded

SIZES = (0.01, 0.05, 0.2, 0.5, 1.0)


@pytest.fixture(scope="module")
def traced():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, "hello world, again", Settings(sizes=SIZES, controls=True), target="x", foil="y")
    return lm, trace


# --- the trace JSON, read back -------------------------------------------------------------------------


def test_a_saved_trace_reads_back_whole(traced, tmp_path):
    _, trace = traced
    path = tmp_path / "trace.json"
    path.write_text(trace.to_json(), encoding="utf-8")
    back = read_trace(path)
    assert back.to_dict() == trace.to_dict()
    assert np.array_equal(back.order, trace.order) and back.order.dtype == np.int64
    assert np.array_equal(back.order_weights, trace.order_weights)
    assert back.order_weights.dtype == trace.order_weights.dtype
    assert back.layout == trace.layout and back.settings == trace.settings
    # every view draws the same from the file, without the model
    for size in (0.01, 0.2, 1.0):
        assert dict(charts.node_graph(back, size).graph.nodes(data=True)) == dict(
            charts.node_graph(trace, size).graph.nodes(data=True)
        )
        assert charts.curves(back, size).to_dict() == charts.curves(trace, size).to_dict()
        assert charts.token_graph(back, size).to_dict() == charts.token_graph(trace, size).to_dict()
    assert loads_trace(trace.to_json(indent=None).encode("utf-8")).to_dict() == trace.to_dict()


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.97, 0.9999])
def test_a_truncated_trace_says_so(traced, fraction):
    text = traced[1].to_json()
    with pytest.raises(BadTraceFile, match="the trace JSON is truncated"):
        loads_trace(text[: int(len(text) * fraction)])


@pytest.mark.parametrize("inside", ["null", "0.", "e-"])
def test_a_trace_cut_inside_a_literal_or_a_number_is_truncated(traced, inside):
    """Cut just after ``nu`` of a ``null``, the ``.`` of a number or the ``e-`` of an exponent: the
    parser sees a bad value or a missing comma there, but the file is only cut short."""
    text = traced[1].to_json() if inside != "e-" else '{"schema": 1, "tiny": 1.5e-07}'
    at = text.index(inside) + (2 if inside == "null" else len(inside))
    with pytest.raises(BadTraceFile, match="the trace JSON is truncated"):
        loads_trace(text[:at])


def _edited(trace, **changes) -> str:
    data = json.loads(trace.to_json())
    for key, value in changes.items():
        if value is None:
            del data[key]
        else:
            data[key] = value
    return json.dumps(data)


def test_what_is_not_a_trace_gets_one_clear_message(traced, tmp_path):
    lm, trace = traced
    strip = trace_text(lm, "hello world", Settings(sizes=SIZES), "3,5")
    cases = [
        ("", "the file is empty"),
        ("{'a': 1}", "not a trace JSON: Expecting property name"),
        ("[1, 2]", "holds a JSON list, not an object"),
        ('{"a": 1}', "it has no 'schema' field"),
        (strip.to_json(), "a text strip"),
        (to_graph(trace).to_json(), "an attribution graph"),
        (_edited(trace, schema=None, schema_version=None), "saved before trace files had a schema version"),
        (_edited(trace, schema="someone/else"), "its schema is 'someone/else'"),
        (_edited(trace, schema_version=2), "schema version 2; this version of the explorer reads version 1"),
        (_edited(trace, order=None), "trace.order: missing"),
        (_edited(trace, graph={**trace.to_dict()["graph"], "heads": 5}), "trace.graph.edges"),
        (_edited(trace, tokens=trace.tokens[:-1]), "trace.tokens"),
        (_edited(trace, full={"top": []}), "trace.full.entropy: missing"),
        (_edited(trace, settings={**trace.to_dict()["settings"], "mode": "sideways"}), "unknown ablation mode"),
        (b"\xff\xfe{}", "not UTF-8 text"),
    ]
    for text, message in cases:
        with pytest.raises(BadTraceFile, match=re.escape(message)):
            loads_trace(text)
    order = trace.to_dict()["order"]
    for change, message in [
        ({"ids": order["ids"][:-8] + "AAAAAAAA"}, "order: 'ids'"),
        ({"length": order["length"] + 1}, "order: "),
        ({"encoding": "raw"}, "unknown encoding"),
    ]:
        with pytest.raises(BadTraceFile, match=re.escape(message)):
            loads_trace(_edited(trace, order={**order, **change}))
    strata = trace.to_dict()["strata"]
    strata[2]["n_edges"] = "many"
    with pytest.raises(BadTraceFile, match=re.escape("trace.strata[2].n_edges: expected int, got str")):
        loads_trace(_edited(trace, strata=strata))


def test_the_size_cap_is_checked_before_reading(traced, tmp_path):
    text = traced[1].to_json()
    path = tmp_path / "big.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadTraceFile, match="over the cap of"):
        read_trace(path, max_bytes=len(text) // 2)
    with pytest.raises(BadTraceFile, match="over the cap of"):
        loads_trace(text, max_bytes=100)
    with pytest.raises(BadTraceFile, match="no trace file at"):
        read_trace(tmp_path / "missing.json")
    with pytest.raises(BadTraceFile, match="is not a file"):
        read_trace(tmp_path)


# --- the Neuronpedia graph ------------------------------------------------------------------------------

REQUIRED_NODE = {"node_id", "feature", "layer", "ctx_idx", "feature_type", "jsNodeId", "clerp"}


@pytest.mark.parametrize("size", [0.01, 0.2, "full"])
def test_the_neuronpedia_export_validates_and_reads_back(traced, size):
    _, trace = traced
    graph = to_graph(trace, size)
    data = json.loads(graph.to_json())
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    assert {"slug", "scan", "prompt_tokens", "prompt"} <= set(data["metadata"])
    assert data["metadata"]["scan"] == trace.model_id and data["metadata"]["prompt_tokens"] == trace.tokens
    assert all(REQUIRED_NODE <= set(n) for n in data["nodes"])
    assert all(set(x) == {"source", "target", "weight"} for x in data["links"])
    back = read_graph(graph.to_json())
    assert back == AttributionGraph.from_dict(data) and back.to_dict() == data
    # the links are the subgraph's edges between residual states, their weights summed
    i = None if size == "full" else labels.closest_stratum(trace, size)
    n = trace.n_edges if i is None else trace.strata[i].n_edges
    assert sum(x["weight"] for x in data["links"]) == pytest.approx(float(trace.order_weights[:n].sum()))
    ends = trace.layout.decode(trace.order[:n])
    states = set(ends["src_node"].tolist()) | set(ends["dst_node"].tolist())
    assert len(data["nodes"]) == len(states)
    types = {n["feature_type"] for n in data["nodes"]}
    assert {"embedding", "logit"} <= types
    logit = next(n for n in data["nodes"] if n["feature_type"] == "logit")
    assert logit["is_target_logit"] and logit["feature"] == trace.full.top[0].id
    shown = 1.0 if i is None else trace.strata[i].size
    assert all(n["influence"] <= shown for n in data["nodes"])
    assert data["metadata"]["pruning_settings"]["edges"] == n


def test_an_invalid_graph_is_refused_with_the_field(traced):
    data = to_graph(traced[1], 0.2).to_dict()
    broken = json.loads(json.dumps(data))
    del broken["nodes"][0]["ctx_idx"]
    with pytest.raises(BadTraceFile, match=re.escape("nodes[0].ctx_idx: missing")):
        AttributionGraph.from_dict(broken)
    broken = json.loads(json.dumps(data))
    broken["links"][0]["target"] = "nowhere"
    with pytest.raises(BadTraceFile, match="not both nodes of the graph"):
        AttributionGraph.from_dict(broken)
    broken = json.loads(json.dumps(data))
    broken["nodes"][1]["ctx_idx"] = True
    with pytest.raises(BadTraceFile, match=re.escape("nodes[1].ctx_idx: expected int, got bool")):
        AttributionGraph.from_dict(broken)
    with pytest.raises(BadTraceFile, match=re.escape("qParams: missing")):
        AttributionGraph.from_dict({k: v for k, v in data.items() if k != "qParams"})


# --- the component edge list ----------------------------------------------------------------------------

NAME = re.compile(r"input|logits|m\d+|a\d+\.h\d+(<v>)?")


def _reference_links(trace, i) -> dict[str, tuple[int, float]]:
    """The component links of stratum ``i`` edge by edge: a state's writers found by walking down the kept
    residual edges (plain recursion over nodes, not the module's layer-by-layer propagation)."""
    lay = trace.layout
    e = labels.trace_edges(trace, i)
    names = lay.component_names()
    into: dict[int, list[tuple[int, int]]] = {}
    for c, u, v in zip(e["component"].tolist(), e["src_node"].tolist(), e["dst_node"].tolist()):
        into.setdefault(v, []).append((c, u))
    memo: dict[int, set[str]] = {}

    def writers(node: int) -> set[str]:
        if node not in memo:
            found = {"input"} if node < lay.n_tokens else set()
            for c, u in into.get(node, []):
                found |= writers(u) if c < 0 else {names[c]}
            memo[node] = found
        return memo[node]

    out: dict[str, tuple[int, float]] = {}
    for c, u, w in zip(e["component"].tolist(), e["src_node"].tolist(), e["weight"].tolist()):
        if c >= 0:
            reader = names[c] + ("<v>" if names[c].startswith("a") else "")
            for a in writers(u):
                n, total = out.get(f"{a}->{reader}", (0, 0.0))
                out[f"{a}->{reader}"] = (n + 1, total + w)
    for a in writers(lay.output_node):
        out[f"{a}->logits"] = (1, 1.0)
    return out


@pytest.mark.parametrize("family", ["llama", "pythia"])
def test_the_edge_list_follows_the_residual_stream(family):
    lm, _ = tiny_loaded(family)
    trace = trace_prompt(lm, "hello world, again", Settings(sizes=SIZES))
    for i, s in enumerate(trace.strata):
        links = edge_list.component_links(trace, s.size)
        reference = _reference_links(trace, i)
        assert {x.name for x in links} == set(reference)
        for x in links:
            assert x.links == reference[x.name][0] and x.weight == pytest.approx(reference[x.name][1])
        assert all(NAME.fullmatch(x.source) and NAME.fullmatch(x.target) for x in links)
        assert all(x.target.endswith("<v>") == x.target.startswith("a") for x in links)
        assert [x.weight for x in links] == sorted((x.weight for x in links), reverse=True)
    rows = list(csv.DictReader(io.StringIO(edge_list.to_csv(links))))
    assert [r["edge"] for r in rows] == [x.name for x in links]
    data = json.loads(edge_list.to_eap_json(trace, links))
    assert set(data["edges"]) == {x.name for x in links}
    assert data["nodes"]["logits"]["in_graph"] and len(data["nodes"]) == trace.layout.n_components + 2


# --- the command line -----------------------------------------------------------------------------------


def test_the_trace_command_writes_every_format(tmp_path, capsys):
    model = random_model(tmp_path)
    files = {k: tmp_path / f"{k}" for k in ("trace.json", "np.json", "edges.json", "edges.csv")}
    code = main(
        ["trace", "--model", model, "--prompt", "The capital of France is", "--sizes", "0.05,0.2,1"]
        + ["--json", str(files["trace.json"]), "--neuronpedia", str(files["np.json"]), "--export-size", "0.2"]
        + ["--edge-list", str(files["edges.json"])]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    trace = read_trace(files["trace.json"])
    assert read_graph(files["np.json"].read_text()).to_dict() == to_graph(trace, 0.2).to_dict()
    assert "(Neuronpedia graph, s = 0.2)" in out
    links = edge_list.component_links(trace, 0.2)
    assert (
        json.loads(files["edges.json"].read_text())["edges"] == json.loads(edge_list.to_eap_json(trace, links))["edges"]
    )
    code = main(
        ["trace", "--model", model, "--prompt", "The capital of France is", "--sizes", "0.05,0.2,1"]
        + ["--edge-list", str(files["edges.csv"]), "--export-size", "full"]
    )
    assert code == 0
    assert files["edges.csv"].read_text().startswith("source,target,edge,links,weight\n")
    code = main(["trace", "--prompt", "x y", "--export-size", "2"])
    assert code == 2 and "--export-size must be a size" in capsys.readouterr().err


def test_the_formats_and_the_report_load_without_torch():
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, explorer.trace_file, explorer.neuronpedia, explorer.edge_list, explorer.components,"
        " explorer.views.report; assert 'torch' not in sys.modules, 'torch loaded'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, check=True)
