"""The Trace page's views on tiny models: token texts with incomplete UTF-8 bytes, each stratum's numbers
computed once (against a plain reference), the node graph's grid, arrows and chosen component, the
composition's two bars, the token graph's note and axes, and chart specs that do not change with the size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer import Settings, trace_prompt
from explorer.token_text import show_bytes, token_text
from explorer.views import composition, graph_page, labels, node_graph, stratum_data, sweep_views, token_graph
from tests.helpers import tiny_loaded

PROMPT = "Tiny > text, one byte a token."


@pytest.fixture(scope="module", params=["llama", "pythia"])
def trace(request):
    lm, _ = tiny_loaded(request.param)
    return trace_prompt(lm, PROMPT, Settings())


# ------------------------------------------------------------------------------------------ token texts


class BytePieces:
    """A tokenizer whose vocabulary is byte-level BPE pieces (GPT-2's byte alphabet)."""

    pieces = {0: "Ġæ", 1: "Ŀ", 2: "ĠðŁĻĤ", 3: "<0xF0>", 4: "é"}

    def decode(self, ids):
        raw = {0: b" \xe6", 1: b"\x9d", 2: " 🙂".encode(), 3: b"\xf0", 4: b"\xc3"}[ids[0]]
        return raw.decode("utf-8", errors="replace")

    def convert_ids_to_tokens(self, i):
        return self.pieces[i]


def test_incomplete_utf8_bytes_are_written_as_bytes():
    tok = BytePieces()
    assert token_text(tok, 0) == " <0xE6>"  # a space, then the first byte of a CJK character
    assert token_text(tok, 1) == "<0x9D>"
    assert token_text(tok, 2) == " 🙂"  # whole characters stay themselves
    assert token_text(tok, 3) == "<0xF0>"  # SentencePiece's byte fallback
    assert show_bytes("a🙂".encode()[:3]) == "a<0xF0><0x9F>"


def test_a_tokenizer_without_pieces_keeps_its_text():
    class Plain:
        def decode(self, ids):
            return "\ufffd"

    assert token_text(Plain(), 7) == "\ufffd"


# ------------------------------------------------------------------------------------------ stratum data


def reference_flows(trace, index) -> np.ndarray:
    """``[C + 1, C + 1]`` flows, the plain way: writers through the residual edges level by level."""
    lay = trace.layout
    T, C = lay.n_tokens, lay.n_components
    e = labels.trace_edges(trace, index)
    writers = np.zeros((lay.n_nodes, C + 1), dtype=bool)
    writers[:T, C] = True
    for g in range(1, 2 * lay.n_layers + 1):
        for i in np.nonzero(e["dst_node"] // T == g)[0]:
            if e["component"][i] < 0:
                writers[e["dst_node"][i]] |= writers[e["src_node"][i]]
            else:
                writers[e["dst_node"][i], e["component"][i]] = True
    reads = np.zeros((lay.n_nodes, C + 1))
    for i in np.nonzero(e["component"] >= 0)[0]:
        reads[e["src_node"][i], e["component"][i]] += 1
    reads[lay.output_node, C] += 1
    return writers.T.astype(float) @ reads


def test_each_stratum_counts_what_the_engine_counts(trace):
    data = stratum_data.strata_data(trace)
    names = trace.layout.component_names()
    assert len(data) == len(trace.strata)
    for s, d in zip(trace.strata, data):
        assert {names[c]: int(v) for c, v in enumerate(d.counts) if v} == s.components
        e = labels.trace_edges(trace, trace.strata.index(s))
        assert d.quarters.tolist() == np.bincount(labels.layer_quarter(e["layer"], 3), minlength=4).tolist()
        assert d.weights.sum() == pytest.approx(e["weight"][e["component"] >= 0].sum())


@pytest.mark.parametrize("most", [stratum_data.MAX_ARROWS, 8])
def test_arrows_are_the_heaviest_flows_into_each_layer(trace, most, monkeypatch):
    monkeypatch.setattr(stratum_data, "MAX_ARROWS", most)  # 8: two into each of 3 layers and the output
    lay = trace.layout
    L, H, C = lay.n_layers, lay.n_heads, lay.n_components
    k = stratum_data.arrows_per_layer(L)
    data = stratum_data.compute(trace)
    for index in range(len(trace.strata)):
        flow = reference_flows(trace, index)
        arrows = data[index].arrows
        readers = [list(range(l * H, (l + 1) * H)) + [L * H + l] for l in range(L)] + [[C]]
        for group in readers:
            want = sorted(
                (flow[w, c] for w in range(C + 1) for c in group if flow[w, c] > 0 and (w != c or c == C)),
                reverse=True,
            )[:k]
            got = [row for row in arrows.tolist() if row[1] in group]
            assert sorted((links for _, _, links in got), reverse=True) == want, (index, group)
            for w, c, links in got:
                assert flow[w, c] == links


def test_arrows_reach_the_top_of_the_model(trace):
    lay = trace.layout
    full = stratum_data.strata_data(trace)[-1]
    layers = stratum_data.component_layers(lay.n_layers, lay.n_heads)
    reached = {int(layers[r]) if r < lay.n_components else "output" for r in full.arrows[:, 1]}
    assert reached == set(range(lay.n_layers)) | {"output"}


def test_a_component_s_edges_are_found_by_their_ids(trace):
    names = trace.layout.component_names()
    e = labels.trace_edges(trace, len(trace.strata) - 1)
    for c in (0, len(names) - 1, trace.layout.n_layers * trace.layout.n_heads):
        got = stratum_data.component_edge_ids(trace, len(trace.strata) - 1, names[c])
        assert got.tolist() == np.nonzero(e["component"] == c)[0].tolist()
    rows = node_graph.node_edges(trace, len(trace.strata) - 1, names[0], limit=3)
    assert len(rows) == min(3, trace.strata[-1].components.get(names[0], 0))
    assert [r["weight"] for r in rows] == sorted((r["weight"] for r in rows), reverse=True)


@pytest.mark.parametrize("kept,kept_bytes", [(3, 32 << 20), (16, 1)])
def test_a_component_s_edges_at_every_size_from_positions_found_once(trace, monkeypatch, kept, kept_bytes):
    """Each stratum takes the first of the component's positions in the order (found once, kept for a
    few components, in a few bytes): the same edges as the stratum's own, for more than are kept."""
    monkeypatch.setattr(stratum_data, "POSITIONS_KEPT", kept)
    monkeypatch.setattr(stratum_data, "POSITIONS_BYTES", kept_bytes)
    names = trace.layout.component_names()
    asked = names[:5] + names[:2] + names[-3:]
    for index in range(len(trace.strata)):
        e = labels.trace_edges(trace, index)
        for name in asked:
            got = stratum_data.component_edge_ids(trace, index, name)
            assert got.tolist() == np.nonzero(e["component"] == names.index(name))[0].tolist(), (index, name)
            assert len(got) == trace.strata[index].components.get(name, 0)


# ------------------------------------------------------------------------------------------ node graph


def axis(graph) -> list:
    return [n for n in graph_page.graph_data(graph)["nodes"] if n.get("axis")]


def test_the_node_graph_s_axes_are_the_model_s_grid(trace):
    lay = trace.layout
    first = axis(node_graph.build(trace, 0))
    labels_shown = [n["label"] for n in first]
    assert [f"h{h}" for h in range(lay.n_heads)] + ["MLP"] == [n for n in labels_shown if not n.startswith("L")]
    assert "L0" in labels_shown
    mlp = next(n for n in first if n["label"] == "MLP")
    assert mlp["x"] > max(n["x"] for n in first if n["label"].startswith("h"))
    for index in range(len(trace.strata)):
        graph = node_graph.build(trace, index)
        assert axis(graph) == first
        for _, a in graph.nodes(data=True):
            if a["kind"] in ("head", "mlp"):
                assert (a["x"], a["y"]) == (graph_page.grid_x(a["head"], lay.n_heads), graph_page.grid_y(a["layer"], 3))


def test_the_node_graph_keeps_the_chosen_component(trace):
    entered = labels.first_entry(trace)
    name, size = max(entered.items(), key=lambda kv: kv[1])
    first = [s.size for s in trace.strata].index(size)
    assert first > 0
    before = node_graph.build(trace, first - 1, selected=name)
    assert before.nodes[name]["kind"] == "absent"
    assert f"not in the trace at this size; it enters at s = {labels.format_size(size)}" in before.nodes[name]["title"]
    assert graph_page.graph_data(before)["selected"] is None
    assert name not in graph_page.graph_data(before)["clickable"]
    after = graph_page.graph_data(node_graph.build(trace, first, selected=name))
    assert after["selected"] == name
    node = next(n for n in after["nodes"] if n["id"] == name)
    assert node["borderWidth"] == 3 and node["color"]["border"] == graph_page.SELECTED_COLOUR


def test_the_output_tooltip_is_written_once(trace):
    graph = node_graph.build(trace, len(trace.strata) - 1)
    title = graph.nodes[node_graph.OUT]["title"]
    assert title.endswith("after the last MLP") and "&gt;" not in title and "&amp;" not in title
    page = node_graph.to_html(graph)
    assert "\\u003e" in page  # the tooltip's text, escaped for the script it sits in
    script = page.rsplit("\ndraw(", 1)[1].split(");\n", 1)[0]
    assert json.loads(script)["nodes"]


def test_a_prompt_cannot_end_the_page_s_script():
    lm, _ = tiny_loaded("llama")
    tr = trace_prompt(lm, "a</script><img src=x>", Settings())
    page = node_graph.to_html(node_graph.build(tr, len(tr.strata) - 1))
    assert "</script><img" not in page and "<img src=x>" not in page


# ------------------------------------------------------------------------------------------ charts


def test_composition_draws_two_bars_with_their_legends(trace):
    spec = composition.chart(trace, len(trace.strata) // 2).to_dict()
    bars = spec["vconcat"]
    assert len(bars) == 2
    for bar, group in zip(bars, composition.GROUPS):
        assert bar["mark"]["type"] == "bar" and bar["title"]["text"] == group
        assert bar["encoding"]["color"]["legend"] is not None
        assert {t["field"] for t in bar["encoding"]["tooltip"]} == {"group", "part", "edges", "share"}
        assert bar["transform"] == [{"filter": f"(datum.group === '{group}')"}]
    assert spec["resolve"]["scale"]["color"] == "independent"
    for index in range(len(trace.strata)):
        df = composition.frame(trace, index)
        for group in composition.GROUPS:
            assert int(df.loc[df["group"] == group, "edges"].sum()) == trace.strata[index].n_edges


def test_the_token_graph_says_when_it_is_capped(trace):
    last = len(trace.strata) - 1
    n = trace.strata[last].n_edges
    capped = token_graph.note_frame(trace, last, max_edges=n - 1)["note"].tolist()
    assert capped == [f"the first {n - 1:,} of {n:,} edges in greedy order: the others are not drawn"]
    whole = token_graph.note_frame(trace, last, max_edges=n)["note"].tolist()
    assert whole == [f"all {n:,} edges of the trace at this size"]
    df = token_graph.edges_frame(trace, last)
    assert df["y2"].max() <= trace.layout.n_layers and "head" not in df.columns
    assert set(df["component"]) <= set(trace.layout.component_names()) | {"residual"}
    spec = token_graph.chart(trace, last).to_dict()
    x_axis = spec["layer"][0]["encoding"]["x"]["axis"]
    assert x_axis["labelOverlap"] is False and x_axis["values"] == list(range(trace.layout.n_tokens))
    assert spec["layer"][0]["encoding"]["y"]["title"].startswith("model layer")
    assert [layer["mark"]["type"] for layer in spec["layer"]] == ["rule", "circle", "circle", "text"]


def test_a_chart_s_spec_does_not_change_with_the_size(trace):
    names = list(sweep_views.templates(trace))
    assert {"distribution", "composition", "token_graph"} <= set(names)
    assert sweep_views.curve_panels(trace) and all(n.startswith("curves/") for n in sweep_views.curve_panels(trace))
    for name in names:
        specs = [sweep_views.chart_spec(trace, name, i) for i in range(len(trace.strata))]
        bare = [{k: v for k, v in s.items() if k != "datasets"} for s in specs]
        assert all(b == bare[0] for b in bare), name
        assert len({json.dumps(s["datasets"], default=str, sort_keys=True) for s in specs}) > 1, name
    rows = sweep_views.chart_spec(trace, "composition", 2)["datasets"][composition.DATA]
    assert rows.equals(composition.frame(trace, 2))
    for template in (composition.template(), token_graph.template(trace)):
        template.to_dict()  # a valid Vega-Lite spec


def test_counts_are_written_with_their_number():
    assert labels.count_label(1) == "1 edge"
    assert labels.count_label(0) == "0 edges"
    assert labels.count_label(1234, "token") == "1,234 tokens"
