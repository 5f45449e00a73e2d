"""The token-level graph: the trace's edges between residual-stream states, tokens along x and the
model's layers along y (the embeddings at 0; layer ``l``'s attention reads the states at ``l`` and writes
at ``l + 1/2``, its MLP writes at ``l + 1``). Attention edges run diagonally from a source token to a
later target token; residual and MLP edges are vertical (MLP edges drawn slightly to the right); a dot
marks each end. Above :data:`MAX_EDGES` edges the drawing keeps the first ones in greedy order, and says
so at its top. :func:`template` reads its rows (:func:`edges_frame`, :func:`note_frame`) from named
datasets, so that the app sends each size's rows to one spec.
"""

from __future__ import annotations

import json

import altair as alt
import numpy as np
import pandas as pd

from explorer.edges import KIND_NAMES
from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import count_label, token_label, trace_edges

MAX_TOKENS = 40
MAX_EDGES = 600


def readable(trace: Trace) -> bool:
    """Whether the prompt is short enough for a token-level drawing."""
    return trace.layout.n_tokens <= MAX_TOKENS


DATA, NOTE = "token_graph", "token_graph_note"
PX_PER_LAYER = 20


def edges_frame(trace: Trace, index: int, max_edges: int = MAX_EDGES) -> pd.DataFrame:
    """The first ``max_edges`` edges of the trace at stratum ``index`` in greedy order (the whole trace
    when it is smaller): source/target token ``x``/``x2`` and height ``y``/``y2`` in model layers, kind,
    component (``a3.h2``, ``m3``, residual), weight, rank."""
    e = trace_edges(trace, index)
    n = min(len(e["id"]), max_edges)
    T = trace.layout.n_tokens
    kind = [KIND_NAMES[int(k)] for k in e["kind"][:n]]
    shift = np.where(np.array(kind) == "mlp", 0.18, 0.0) if n else np.zeros(0)
    names = trace.layout.component_names()
    return pd.DataFrame(
        {
            "x": e["source"][:n] + shift,
            "x2": e["target"][:n] + shift,
            "y": (e["src_node"][:n] // T) / 2,
            "y2": (e["dst_node"][:n] // T) / 2,
            "kind": kind,
            "component": [names[c] if c >= 0 else "residual" for c in e["component"][:n].tolist()],
            "weight": e["weight"][:n],
            "rank": e["rank"][:n],
            "edge": [
                f"{token_label(trace, int(s))} -> {token_label(trace, int(t))}"
                for s, t in zip(e["source"][:n], e["target"][:n])
            ],
        }
    )


def note_frame(trace: Trace, index: int, max_edges: int = MAX_EDGES) -> pd.DataFrame:
    """One row ``note``: how many of the size's edges are drawn."""
    n = trace.strata[index].n_edges
    note = (
        f"the first {max_edges:,} of {count_label(n)} in greedy order: the others are not drawn"
        if n > max_edges
        else f"all {count_label(n)} of the trace at this size"
    )
    return pd.DataFrame({"note": [note]})


def layout(trace: Trace, data: pd.DataFrame | alt.Data, note: pd.DataFrame | alt.Data) -> alt.LayerChart:
    """Rules from (source token, source height) to (target token, target height), coloured by kind,
    opacity by weight, a dot at each end, and the note above."""
    T, L = trace.layout.n_tokens, trace.layout.n_layers
    labels = json.dumps([token_label(trace, t) for t in range(T)])
    x_scale = alt.Scale(domain=[-0.5, T - 0.5], nice=False, zero=False)
    x_axis = alt.Axis(
        values=list(range(T)),
        labelExpr=f"{labels}[round(datum.value)]",
        labelAngle=-50,
        labelOverlap=False,
        labelFontSize=10,
        labelLimit=110,
        grid=False,
    )
    x = alt.X("x:Q", title=None, scale=x_scale, axis=x_axis)
    step = max(1, L // 15)  # a label every few layers, at the middle of each layer's band
    y_scale = alt.Scale(domain=[0, L], nice=False, zero=False)
    y_title = "model layer (attention, then MLP)"
    y_axis = alt.Axis(
        values=[l + 0.5 for l in range(0, L, step)], labelExpr="floor(datum.value)", labelOverlap=False, grid=False
    )
    y = alt.Y("y:Q", title=y_title, scale=y_scale, axis=y_axis)
    colour = alt.Color("kind:N", title="edge kind", scale=style.kind_scale(), legend=alt.Legend(orient="top"))
    tooltip = [
        alt.Tooltip("edge:N"),
        alt.Tooltip("kind:N"),
        alt.Tooltip("component:N"),
        alt.Tooltip("weight:Q", format=".3f"),
        alt.Tooltip("rank:Q"),
    ]
    base = alt.Chart(data)
    rules = base.mark_rule(strokeWidth=1.6).encode(
        x=x,
        x2="x2:Q",
        y=y,
        y2="y2:Q",
        color=colour,
        opacity=alt.Opacity("weight:Q", scale=alt.Scale(range=[0.3, 1]), legend=None),
        tooltip=tooltip,
    )
    ends = [  # one dot per state an edge starts (ends) at, however many edges share it
        base.transform_aggregate(edges="count()", groupby=[a, b])
        .mark_circle(size=14, color="#555555", opacity=0.7)
        .encode(  # the rules' axes, so that the layers' axes merge into one
            x=alt.X(f"{a}:Q", title=None, scale=x_scale, axis=x_axis),
            y=alt.Y(f"{b}:Q", title=y_title, scale=y_scale, axis=y_axis),
        )
        for a, b in (("x", "y"), ("x2", "y2"))
    ]
    text = (
        alt.Chart(note)
        .mark_text(align="left", baseline="bottom", dy=-4, fontSize=11, color=style.LABEL_COLOUR)
        .encode(x=alt.value(0), y=alt.value(0), text=alt.Text("note:N"))
    )
    return alt.LayerChart(layer=[rules, *ends, text], height=max(300, PX_PER_LAYER * L))


def chart(trace: Trace, index: int, max_edges: int = MAX_EDGES) -> alt.LayerChart:
    """The token graph at stratum ``index``."""
    return layout(trace, edges_frame(trace, index, max_edges), note_frame(trace, index, max_edges))


def template(trace: Trace) -> alt.LayerChart:
    """:func:`chart` of ``trace`` reading its rows from the named datasets :data:`DATA` and :data:`NOTE`."""
    return layout(trace, alt.Data(name=DATA), alt.Data(name=NOTE))
