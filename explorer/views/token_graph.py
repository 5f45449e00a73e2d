"""The token-level graph: the trace's edges between residual-stream states, tokens along x and graph
layers along y (0 = input embeddings, 2l+1 after layer l's attention, 2l+2 after its MLP). Attention edges
run diagonally from a source token to a later target token; residual and MLP edges are vertical (MLP
edges drawn slightly to the right)."""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from explorer.edges import KIND_NAMES
from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import token_label, trace_edges

MAX_TOKENS = 40
MAX_EDGES = 600


def readable(trace: Trace) -> bool:
    """Whether the prompt is short enough for a token-level drawing."""
    return trace.layout.n_tokens <= MAX_TOKENS


def edges_frame(trace: Trace, index: int, max_edges: int = MAX_EDGES) -> pd.DataFrame:
    """The first ``max_edges`` edges of the trace at stratum ``index`` in greedy order (the whole trace
    when it is smaller): source/target token, source/target graph layer, kind, weight."""
    e = trace_edges(trace, index)
    n = min(len(e["id"]), max_edges)
    T = trace.layout.n_tokens
    kind = [KIND_NAMES[int(k)] for k in e["kind"][:n]]
    shift = np.where(np.array(kind) == "mlp", 0.18, 0.0) if n else np.zeros(0)
    return pd.DataFrame(
        {
            "x": e["source"][:n] + shift,
            "x2": e["target"][:n] + shift,
            "y": e["src_node"][:n] // T,
            "y2": e["dst_node"][:n] // T,
            "kind": kind,
            "weight": e["weight"][:n],
            "rank": e["rank"][:n],
            "layer": e["layer"][:n],
            "head": e["head"][:n],
            "edge": [
                f"{token_label(trace, int(s))} -> {token_label(trace, int(t))}"
                for s, t in zip(e["source"][:n], e["target"][:n])
            ],
        }
    )


def chart(trace: Trace, index: int, max_edges: int = MAX_EDGES) -> alt.Chart:
    """Rules from (source token, source layer) to (target token, target layer), coloured by kind,
    opacity by weight."""
    df = edges_frame(trace, index, max_edges)
    T = trace.layout.n_tokens
    labels = json.dumps([token_label(trace, t) for t in range(T)])
    x = alt.X(
        "x:Q",
        title=None,
        scale=alt.Scale(domain=[-0.5, T - 0.5]),
        axis=alt.Axis(values=list(range(T)), labelExpr=f"{labels}[round(datum.value)]", labelAngle=-40, grid=False),
    )
    y = alt.Y("y:Q", title="graph layer", scale=alt.Scale(domain=[0, 2 * trace.layout.n_layers]))
    colour = alt.Color("kind:N", title="edge kind", scale=style.kind_scale())
    rules = (
        alt.Chart(df)
        .mark_rule(strokeWidth=1.6)
        .encode(
            x=x,
            x2="x2:Q",
            y=y,
            y2="y2:Q",
            color=colour,
            opacity=alt.Opacity("weight:Q", scale=alt.Scale(range=[0.25, 1]), legend=None),
            tooltip=["edge", "kind", "layer", "head", alt.Tooltip("weight:Q", format=".3f"), "rank"],
        )
    )
    return rules.properties(height=420)
