"""The layer x head node graph: one node per attention head and per MLP that has an edge in the trace,
placed on the model's layer x head grid (layers bottom to top, MLPs in the rightmost column), plus the
embeddings below and the output above. Nodes are sized by edge count or summed weight and coloured by the
size at which they first entered the trace. Arrows are the heaviest flows into each layer
(:mod:`explorer.views.stratum_data`): ``A -> B`` counts how often an edge of ``B`` reads a state that ``A``
wrote into, directly or through residual edges of the trace. A chosen component is highlighted, and drawn
as a dashed outline at sizes whose trace does not hold it.

Built with networkx from each stratum's numbers (computed once per trace); drawn by vis-network
(:mod:`explorer.views.graph_page`).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

from explorer.edges import KIND_NAMES
from explorer.results import Trace
from explorer.views import graph_page, style
from explorer.views.labels import count_label, first_entry, format_size, token_label
from explorer.views.stratum_data import component_edge_ids, strata_data

EMB, OUT = "emb", "out"
SIZE_BY = ("edges", "weight")
PALETTE = style.ENTRY_PALETTE
X_STEP, Y_STEP = graph_page.X_STEP, graph_page.Y_STEP


def entry_colour(size: float, smallest: float) -> str:
    """Colour of a size on a log scale from ``smallest`` (dark) to 1 (yellow)."""
    lo = math.log10(smallest)
    frac = 0.0 if lo >= 0 else (math.log10(size) - lo) / -lo
    return PALETTE[min(int(round(frac * (len(PALETTE) - 1))), len(PALETTE) - 1)]


def build(trace: Trace, index: int, size_by: str = "edges", selected: str | None = None) -> nx.DiGraph:
    """The node graph at stratum ``index``. Node attributes: ``label``, ``kind`` (head, mlp, emb, out; and
    ``absent`` for ``selected`` when the trace does not hold it here), ``layer``, ``head``, ``edges``,
    ``weight``, ``entered``, ``x``, ``y``, ``size``, ``color``, ``shape``, ``title``; edge attributes
    ``links`` (flow count), ``value``, ``width``, ``title``. Graph attributes: ``n_layers``, ``n_heads``
    (the grid, whatever is present), ``size`` (the stratum's), ``size_by``, ``smallest`` (the smallest size
    evaluated), ``top`` (the largest node value) and ``selected``."""
    lay = trace.layout
    L, H = lay.n_layers, lay.n_heads
    names = lay.component_names()
    n_comp = len(names)
    data = strata_data(trace)[index]
    counts, weights = data.counts, data.weights
    entered = first_entry(trace)
    smallest = trace.strata[0].size
    present = np.nonzero(counts)[0]
    big = (counts if size_by == "edges" else weights)[present]
    top = float(big.max()) if len(big) else 0.0

    g = nx.DiGraph(
        n_layers=L,
        n_heads=H,
        size=trace.strata[index].size,
        size_by=size_by,
        smallest=smallest,
        top=top,
        selected=selected,
    )
    middle = (graph_page.grid_x(0, H) + graph_page.grid_x(H - 1, H)) / 2
    box = dict(head=-1, edges=0, weight=0.0, entered=smallest, x=middle, size=10, color="#9e9e9e", shape="box")
    g.add_node(
        EMB,
        label="embeddings",
        kind="emb",
        layer=-1,
        y=graph_page.grid_y(-1, L) + 0.4 * Y_STEP,
        title="input embeddings (graph layer 0)",
        **box,
    )
    g.add_node(
        OUT,
        label="output",
        kind="out",
        layer=L,
        y=graph_page.grid_y(L, L),
        title=f"output node: the prediction after token {token_label(trace, lay.n_tokens - 1)}, after the last MLP",
        **box,
    )

    def place(c: int) -> dict:
        is_mlp = c >= L * H
        layer = c - L * H if is_mlp else c // H
        head = -1 if is_mlp else c % H
        return dict(layer=int(layer), head=int(head), x=graph_page.grid_x(head, H), y=graph_page.grid_y(layer, L))

    for c in present.tolist():
        name = names[c]
        value = float(counts[c] if size_by == "edges" else weights[c])
        when = entered.get(name, trace.strata[index].size)
        g.add_node(
            name,
            label=name,
            kind="mlp" if c >= L * H else "head",
            edges=int(counts[c]),
            weight=float(weights[c]),
            entered=when,
            size=3 + 9 * math.sqrt(value / top) if top > 0 else 3,
            color=entry_colour(when, smallest),
            shape="square" if c >= L * H else "dot",
            title=f"{name}: {count_label(int(counts[c]))}, summed weight {weights[c]:.3g}, "
            f"entered at s = {format_size(when)}",
            **place(c),
        )
    if selected in names and selected not in g:
        c = names.index(selected)
        when = entered.get(selected)
        g.add_node(
            selected,
            label=selected,
            kind="absent",
            edges=0,
            weight=0.0,
            entered=when,
            size=7,
            color="#ffffff",
            shape="square" if c >= L * H else "dot",
            title=f"{selected}: not in the trace at this size"
            + (f"; it enters at s = {format_size(when)}" if when is not None else "; in no trace evaluated"),
            **place(c),
        )
    node_of = {int(i): names[i] for i in present}
    rows = data.arrows
    top_flow = float(rows[:, 2].max()) if len(rows) else 1.0
    for writer, reader, links in rows.tolist():
        a = EMB if writer == n_comp else node_of.get(writer)
        b = OUT if reader == n_comp else node_of.get(reader)
        if a is None or b is None:
            continue
        g.add_edge(
            a,
            b,
            links=int(links),
            value=float(links),
            width=0.5 + 3.5 * links / top_flow,
            title=f"{a} -> {b}: {count_label(int(links), 'link')}",
        )
    return g


def to_html(graph: nx.DiGraph, height: int = 640) -> str:
    """A self-contained page of ``graph`` (vis-network in-lined, the grid's positions fixed)."""
    return graph_page.standalone(graph, height)


def node_edges(trace: Trace, index: int, name: str, limit: int | None = None) -> list[dict]:
    """The trace's edges of component ``name`` at stratum ``index``, heaviest first (the ``limit``
    heaviest): rank in the greedy order, kind, layer, head (none for an MLP), source and target tokens,
    weight."""
    ranks = component_edge_ids(trace, index, name)
    ranks = ranks[np.argsort(-np.asarray(trace.order_weights)[ranks], kind="stable")][:limit]
    edges = trace.layout.decode(np.asarray(trace.order)[ranks])
    weights = np.asarray(trace.order_weights)[ranks].astype(np.float64)  # the rows' only: the order is long
    return [
        {
            "rank": int(ranks[i]),
            "kind": KIND_NAMES[int(edges["kind"][i])],
            "layer": int(edges["layer"][i]),
            "head": int(edges["head"][i]) if edges["head"][i] >= 0 else None,
            "source": token_label(trace, int(edges["source"][i])),
            "target": token_label(trace, int(edges["target"][i])),
            "weight": float(weights[i]),
        }
        for i in range(len(ranks))
    ]
