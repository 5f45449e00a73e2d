"""The Trace page's views at the slider's size, drawn from what is computed once per sweep
(:mod:`explorer.views.stratum_data`, :mod:`explorer.views.sweep_views`): the size slider with its steps,
the node graph linked both ways with the component inspector, the output distribution, the composition
bars, the token graph and the "Error against size" panels.

Session keys: ``node`` (the inspector's choice, a widget), ``inspect`` (the same choice, kept while the
inspector is not drawn), ``node_graph`` (the graph's frame), ``size_request`` (a size asked for by the URL,
an example or another page, for the next trace shown), ``shown_size`` (the trace and size last shown,
to come back to after a visit to another page) and ``shown_now`` (the index shown, for the downloads).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Literal

import pandas as pd
import streamlit as st
from streamlit import dataframe_util

from explorer.results import Trace
from explorer.sweep_cache import Sweep
from explorer.views import graph_page, labels, node_graph, sweep_views, token_graph
from explorer.views.labels import count_label, first_entry, format_size
from explorer.views.stratum_data import per_trace, strata_data
from ui import view_sync
from ui.graph_frame import node_graph_frame
from ui.panels import panel_columns
from ui.state import view

NODE, INSPECT, GRAPH = "node", "inspect", "node_graph"
SIZE_REQUEST, SHOWN, NOW = "size_request", "shown_size", "shown_now"
MAX_ROWS = 1000  # the inspector's table shows a component's heaviest edges, at most this many


# ------------------------------------------------------------------------------------------ the size


def slider_key(trace: Trace) -> str:
    """The slider's key: one per traced prompt, model, settings and position."""
    return f"size-{abs(hash((trace.model_id, trace.prompt, trace.settings, trace.position)))}"


def starting_index(trace: Trace, key: str) -> int:
    """Where a trace's slider starts: the size the URL, an example or another page asked for; the size
    last shown of this same trace (back from another page); else the trace's own default size (the first
    that keeps the full model's top-1)."""
    state = st.session_state
    asked = state.pop(SIZE_REQUEST, None)
    shown = state.get(SHOWN)
    if asked is not None:
        return labels.closest_stratum(trace, asked)
    if shown and shown[0] == key:
        return labels.closest_stratum(trace, shown[1])
    return labels.default_stratum(trace)


def _step(key: str, by: int, n: int) -> None:
    st.session_state[key] = min(max(st.session_state.get(key, 0) + by, 0), n - 1)


def size_slider(trace: Trace) -> int:
    """The slider over the evaluated sizes, with a step down and a step up beside it; the index shown."""
    key = slider_key(trace)
    n = len(trace.strata)
    state = st.session_state
    if key not in state or SIZE_REQUEST in state:
        state[key] = starting_index(trace, key)
    down, middle, up = st.columns([1, 14, 1], vertical_alignment="bottom")
    down.button("\u25c0", key="size_down", help="one size smaller", on_click=_step, args=(key, -1, n))
    up.button("\u25b6", key="size_up", help="one size larger", on_click=_step, args=(key, 1, n))
    index = middle.select_slider(
        "Size of the subgraph",
        options=list(range(n)),
        key=key,
        format_func=lambda i: labels.size_label(trace, i),
        help="relative size s = kept edges / all edges, on a log scale. With the slider focused, the arrow "
        "keys step through the sizes, Home and End go to the smallest and the full graph.",
    )
    state[SHOWN] = (key, trace.strata[index].size)
    state.setdefault(NOW, {})["index"] = index
    return index


def shown_index(trace: Trace) -> int:
    """The index the size slider shows (for the views drawn apart from it)."""
    index = st.session_state.get(slider_key(trace))
    return index if isinstance(index, int) and 0 <= index < len(trace.strata) else labels.default_stratum(trace)


def index_now(trace: Trace) -> Callable[[], int]:
    """A function giving the index the slider shows when it is called (a download's, when pressed: it runs
    without the session's state, so it reads a box the slider fills)."""
    box = st.session_state.setdefault(NOW, {"index": shown_index(trace)})
    return lambda: min(max(int(box.get("index", 0)), 0), len(trace.strata) - 1)


def view_key(trace: Trace, index: int) -> str:
    """The view on show, for :mod:`ui.view_sync`: the trace's slider and its index."""
    return view_sync.view_key(slider_key(trace), index)


# ------------------------------------------------------------------------------------------ charts


def arrow_spec(trace: Trace, name: str, index: int) -> dict:
    """:func:`explorer.views.sweep_views.chart_spec` with its datasets as the Arrow bytes Streamlit sends,
    each converted once per trace (and per size for the size's rows)."""
    spec = sweep_views.chart_spec(trace, name, index)
    per_size = set(sweep_views.rows(trace, name, index))
    datasets = {
        key: per_trace(
            trace,
            f"arrow/{key}/{index}" if key in per_size else f"arrow/{key}",
            lambda rows=rows: dataframe_util.convert_anything_to_arrow_bytes(rows),
        )
        for key, rows in spec["datasets"].items()
    }
    return spec | {"datasets": datasets}


def draw_chart(trace: Trace, name: str, index: int, width: Literal["stretch", "content"] = "stretch") -> None:
    """One chart of :mod:`explorer.views.sweep_views` at stratum ``index``."""
    st.vega_lite_chart(arrow_spec(trace, name, index), width=width, key=f"chart_{name}")


def draw_curves(trace: Trace, index: int, most: int = 2) -> None:
    """The "Error against size" panels in rows of columns (:func:`ui.panels.panel_columns`)."""
    names = sweep_views.curve_panels(trace)
    per_row = panel_columns(len(names), most)
    for start in range(0, len(names), per_row):
        for column, name in zip(st.columns(per_row), names[start : start + per_row]):
            with column:
                draw_chart(trace, name, index)


@view(
    "Output distribution",
    "Grey: the full model; blue: the subgraph at this size. Left: the full model's top "
    "tokens; right: the subgraph's own top tokens.",
)
def draw_distribution(sweep: Sweep, index: int) -> None:
    out = sweep.trace.strata[index].trace
    with st.container(horizontal=True, gap="medium"):
        st.metric(
            "TV",
            f"{out.tv:.3f}",
            help="total variation from the full model's distribution (0 = identical)",
            width="content",
        )
        st.metric(
            "Shared nucleus",
            f"{out.shared_nucleus}%",
            help="largest nucleus with the same ordered tokens",
            width="content",
        )
        st.metric("Entropy (nats)", f"{out.entropy:.2f}", width="content")
    draw_chart(sweep.trace, "distribution", index, width="content")


@view("Composition", "Share of this size's edges by kind and by quarter of the model's depth.")
def draw_composition(sweep: Sweep, index: int) -> None:
    draw_chart(sweep.trace, "composition", index)


@view(
    "Token graph",
    "Tokens along x, the model's layers up y; lines are the trace's edges (attention diagonal, residual and "
    f"MLP vertical), a dot at each end; at most the first {token_graph.MAX_EDGES} in greedy order.",
)
def draw_token_graph(sweep: Sweep, index: int) -> None:
    if not token_graph.readable(sweep.trace):
        st.info(f"The prompt has more than {token_graph.MAX_TOKENS} tokens: too long to draw token by token.")
        return
    draw_chart(sweep.trace, "token_graph", index)


# ------------------------------------------------------------------------------------------ graph, inspector


def chosen_component() -> str | None:
    """The component chosen in the inspector or the graph (kept across sizes and while not drawn)."""
    state = st.session_state
    return state.get(NODE) or state.get(INSPECT)


def heaviest(trace: Trace, index: int) -> str | None:
    """The component with the most edges at stratum ``index`` (the inspector's first choice)."""
    counts = strata_data(trace)[index].counts
    return trace.layout.component_names()[int(counts.argmax())] if counts.any() else None


PANEL = "component_panel_open"
"""Session state: the component panel and what-if are shown (a click, the URL's or an example's component,
or their button open them; closed, a slider move re-draws only the views above them)."""


def choose(name: str | None) -> None:
    """Make ``name`` the inspector's choice (an example's component, the URL's, a click's) and open the
    component panel."""
    st.session_state[INSPECT] = name
    st.session_state[NODE] = name
    st.session_state[PANEL] = name is not None


def _clicked() -> None:
    """A click on a component in the graph: it becomes the inspector's choice."""
    result = st.session_state.get(GRAPH)
    name = getattr(result, "clicked", None)
    if isinstance(name, str) and name:
        choose(name)


@view(
    "Components",
    "Heads (dots) and MLPs (squares) on the model's layer x head grid, first layer at the bottom; size: "
    "edges or summed weight in the trace; colour: the size at which they entered (dark early, yellow late); "
    "arrows: the heaviest flows into each layer. Click a component to inspect it below.",
)
def draw_node_graph(sweep: Sweep, index: int) -> None:
    size_by = st.radio(
        "Node size",
        node_graph.SIZE_BY,
        horizontal=True,
        key="size_by",
        format_func=lambda s: "edge count" if s == "edges" else "summed weight",
    )
    trace = sweep.trace
    chosen = chosen_component()
    if chosen not in trace.layout.component_names():
        chosen = heaviest(trace, index)
    graph = node_graph.build(trace, index, size_by, selected=chosen)
    node_graph_frame(json.dumps(graph_page.graph_data(graph)), key=GRAPH, on_click=_clicked)
    inspector(trace, index, graph, chosen)


def inspector(trace: Trace, index: int, graph, chosen: str | None) -> None:
    """The chosen component's edges at this size; it stays chosen across sizes, and where this size's
    trace does not hold it, the inspector says so."""
    present = sorted(
        (n for n, a in graph.nodes(data=True) if a["kind"] in ("head", "mlp")), key=lambda n: -graph.nodes[n]["edges"]
    )
    if not present and chosen is None:
        st.caption("Only residual edges at this size: no head or MLP is in the trace yet.")
        return
    first: str = present[0] if chosen is None else chosen
    options = present + ([first] if first not in present else [])
    st.session_state[NODE] = first

    def label(n: str) -> str:
        edges = graph.nodes[n]["edges"] if n in present else 0
        return f"{n} · {count_label(edges)}" if n in present else f"{n} · not in the trace at this size"

    picked = st.selectbox("Inspect a component (or click one in the graph)", options, key=NODE, format_func=label)
    name: str = picked or first
    st.session_state[INSPECT] = name
    entered = first_entry(trace).get(name)
    size = format_size(trace.strata[index].size)
    if name not in present:
        st.info(
            f"{name} is not in the trace at s = {size}: "
            + (f"it enters at s = {format_size(entered)}." if entered is not None else "it is in no trace evaluated.")
        )
        return
    n = int(graph.nodes[name]["edges"])
    rows = node_graph.node_edges(trace, index, name, limit=MAX_ROWS)
    shown = f"the {MAX_ROWS:,} heaviest of its {count_label(n)}" if n > MAX_ROWS else f"its {count_label(n)}"
    st.caption(
        f"{name} entered the trace at s = {format_size(entered or trace.strata[index].size)}; at s = {size}, {shown}:"
    )
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        height=220,
        width="stretch",
        column_config={"weight": st.column_config.NumberColumn(format="%.4f")},
    )
