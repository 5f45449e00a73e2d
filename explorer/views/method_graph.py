"""The Method page's first two figures, from a :class:`explorer.results.Trace`: the graph's make-up by edge
kind with a sketch of its first layers, and the weights into one node (the rest are in
:mod:`explorer.views.method`)."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from explorer.edges import RESIDUAL_ATTN
from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import token_label

SHIFT = 0.12  # sideways shift of the sketch's MLP edges and self-attention edges


# 1. the graph


def graph_counts(trace: Trace) -> pd.DataFrame:
    """Edges of the whole graph by kind (``kind``, ``edges``, ``share``), from its shape alone: ``H`` per
    source token into every attention node, one residual edge into every node, one MLP edge into every
    MLP node; in the last layer, only the output token's nodes."""
    counts = trace.layout.counts_by_kind()
    total = sum(counts.values())
    return pd.DataFrame([(k, v, v / total) for k, v in counts.items()], columns=["kind", "edges", "share"])


def graph_nodes(trace: Trace) -> int:
    """Nodes that reach the output: every token's states below the last layer, and the output token's two
    states in the last layer."""
    return trace.layout.n_reachable_nodes


def sketch_frame(trace: Trace, layers: int = 2) -> pd.DataFrame:
    """Every edge of the first ``layers`` layers: ``x``/``x2`` source and target token, ``y``/``y2`` graph
    layers, ``kind``, ``heads`` (attention edges drawn once per token pair stand for one edge per head).
    MLP edges and a token's attention to itself are drawn beside the residual edge (``x`` shifted)."""
    H, T = trace.layout.n_heads, trace.layout.n_tokens
    rows = []
    for l in range(min(layers, trace.layout.n_layers)):
        for t in range(T):
            rows.append((t, t, 2 * l, 2 * l + 1, "residual", 1))
            rows += [
                (s if s < t else t - SHIFT, t if s < t else t - SHIFT, 2 * l, 2 * l + 1, "attention", H)
                for s in range(t + 1)
            ]
            rows.append((t, t, 2 * l + 1, 2 * l + 2, "residual", 1))
            src = 2 * l if trace.layout.parallel else 2 * l + 1
            rows.append((t + SHIFT, t + SHIFT, src, 2 * l + 2, "mlp", 1))
    df = pd.DataFrame(rows, columns=["x", "x2", "y", "y2", "kind", "heads"])
    df["edge"] = [
        f"{k}: {token_label(trace, round(a))} (graph layer {b}) -> {token_label(trace, round(c))} "
        f"(graph layer {d})" + (f", one edge per head ({h})" if h > 1 else "")
        for a, b, c, d, k, h in zip(df.x, df.y, df.x2, df.y2, df.kind, df.heads)
    ]
    return df


def sketch_chart(trace: Trace, layers: int = 2) -> alt.LayerChart | alt.FacetChart:
    """Nodes (tokens x graph layers) and all edges of the first ``layers`` layers."""
    df = sketch_frame(trace, layers)
    T = trace.layout.n_tokens
    top = 2 * min(layers, trace.layout.n_layers)
    nodes = pd.DataFrame(
        [(t, g, token_label(trace, t)) for g in range(top + 1) for t in range(T)], columns=["x", "y", "token"]
    )
    x = alt.X(
        "x:Q",
        title=None,
        scale=alt.Scale(domain=[-0.5, T - 0.5]),
        axis=alt.Axis(values=list(range(T)), labelExpr=_labels(trace), labelAngle=-30, grid=False),
    )
    y = alt.Y(
        "y:Q",
        title="graph layer",
        scale=alt.Scale(domain=[-0.3, top + 0.3]),
        axis=alt.Axis(values=list(range(top + 1)), labelExpr=_layer_names(top)),
    )
    colour = alt.Color("kind:N", title="edge kind", scale=style.kind_scale())
    edges = (
        alt.Chart(df)
        .mark_rule(strokeWidth=1.4, opacity=0.7)
        .encode(x=x, x2="x2:Q", y=y, y2="y2:Q", color=colour, tooltip=["edge"])
    )
    dots = alt.Chart(nodes).mark_circle(size=70, color="#333333").encode(x="x:Q", y="y:Q", tooltip=["token", "y"])
    return (edges + dots).properties(height=260)


def _labels(trace: Trace) -> str:
    return f"{json.dumps([token_label(trace, t) for t in range(trace.layout.n_tokens)])}[round(datum.value)]"


def _layer_names(top: int) -> str:
    names = ["embedding"] + [f"L{(g - 1) // 2} {'attention' if g % 2 else 'MLP'}" for g in range(1, top + 1)]
    return f"{json.dumps(names)}[round(datum.value)]"


# 2. edge weights


def edge_weight_lookup(trace: Trace) -> np.ndarray:
    """Weight of every edge id (NaN for ids that are not edges), from the trace's order and weights."""
    w = np.full(trace.layout.n_ids, np.nan)
    w[np.asarray(trace.order)] = np.asarray(trace.order_weights, dtype=np.float64)
    return w


def node_weights_frame(trace: Trace, layer: int) -> pd.DataFrame:
    """The weights into the last token's state after ``layer``'s attention: one row per in-edge with
    ``edge`` (``residual`` or ``h{h}``), ``source`` (token label), ``weight``. They sum to 1."""
    lay = trace.layout
    H, T = lay.n_heads, lay.n_tokens
    t = T - 1
    w = edge_weight_lookup(trace)
    rows = [("residual", token_label(trace, t), float(w[lay.block_id(RESIDUAL_ATTN, layer, t)]))]
    for h in range(H):
        for s in range(t + 1):
            rows.append((f"h{h}", token_label(trace, s), float(w[lay.attention_id(layer, h, t, s)])))
    return pd.DataFrame(rows, columns=["edge", "source", "weight"])


def node_weights_chart(trace: Trace, layer: int) -> alt.LayerChart | alt.FacetChart:
    """A heat map: heads (and the residual edge) by source token, coloured by weight."""
    df = node_weights_frame(trace, layer)
    order = ["residual"] + [f"h{h}" for h in range(trace.layout.n_heads)]
    tokens = [token_label(trace, s) for s in range(trace.layout.n_tokens)]
    base = alt.Chart(df).encode(
        x=alt.X("source:N", sort=tokens, title="source token", axis=alt.Axis(labelAngle=-30)),
        y=alt.Y("edge:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("weight:Q", scale=alt.Scale(scheme="blues"), title="weight"),
        tooltip=["edge", "source", alt.Tooltip("weight:Q", format=".4f")],
    )
    text = base.mark_text(fontSize=9).encode(
        text=alt.Text("weight:Q", format=".2f"),
        color=alt.condition("datum.weight > 0.3", alt.value("white"), alt.value("#333333")),
    )
    return (cells + text).properties(height=alt.Step(20))
