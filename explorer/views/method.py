"""Figures of the Method page, each computed from a :class:`explorer.results.Trace`: the graph's make-up and
a sketch of its first layers, the weights into one node, the first edges of the greedy order, the nested
sizes, the two ablation modes, the nucleus lists behind the shared nucleus, the area behind density, and
the composition by phase."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from explorer.density import recovery_sizes
from explorer.edges import ATTENTION, KIND_NAMES
from explorer.options import MODES, NUCLEUS_LEVELS
from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import VARIANT_LABELS, layer_quarter, token_label

CONTROLS = ("trace", "random", "inverse")


def _lo(trace: Trace) -> float:
    return style.size_floor(trace.strata[0].size)


def _x_log(trace: Trace) -> alt.X:
    return style.size_x(_lo(trace))


def _rule(trace: Trace, index: int) -> alt.Chart:
    return style.size_rule(trace.strata[index].size, _lo(trace))


# 3. greedy search and nested sizes


def first_edges(trace: Trace, n: int = 12) -> pd.DataFrame:
    """The first ``n`` edges of the greedy order: rank, kind, component (``a{l}.h{h}``, ``m{l}`` or empty
    for residual edges), from, to, weight."""
    ids = np.asarray(trace.order[:n])
    e = trace.layout.decode(ids)
    names = trace.layout.component_names()
    comp = trace.layout.component(ids)
    T = trace.layout.n_tokens

    def node(node_id: int) -> str:
        g, t = divmod(int(node_id), T)
        where = "embedding" if g == 0 else f"L{(g - 1) // 2} {'attention' if g % 2 else 'MLP'}"
        return f"{token_label(trace, t)} @ {where}"

    return pd.DataFrame(
        {
            "rank": np.arange(len(ids)),
            "kind": [KIND_NAMES[int(k)] for k in e["kind"]],
            "component": [names[c] if c >= 0 else "" for c in comp],
            "from": [node(i) for i in e["src_node"]],
            "to": [node(i) for i in e["dst_node"]],
            "weight": np.asarray(trace.order_weights[:n], dtype=np.float64),
        }
    )


def first_of_kind(trace: Trace, kind: str) -> dict | None:
    """The first edge of ``kind`` (``attention``, ``mlp``, ``residual``) in the greedy order: its ``rank``,
    ``component``, ``source`` and ``target`` token labels; ``None`` if there is none."""
    codes = [code for code, name in KIND_NAMES.items() if name == kind]
    hits = np.nonzero(np.isin(trace.layout.kind(np.asarray(trace.order)), codes))[0]
    if len(hits) == 0:
        return None
    rank = int(hits[0])
    edge_id = np.asarray(trace.order[rank : rank + 1])
    e = trace.layout.decode(edge_id)
    comp = int(trace.layout.component(edge_id)[0])
    return {
        "rank": rank,
        "component": trace.layout.component_names()[comp] if comp >= 0 else "",
        "source": token_label(trace, int(e["source"][0])),
        "target": token_label(trace, int(e["target"][0])),
    }


def sizes_frame(trace: Trace) -> pd.DataFrame:
    """One row per evaluated size: ``size``, ``edges``, the subgraph's ``top1`` token, ``tv``, and
    ``top1_kept`` (shared nucleus at least 1)."""
    return pd.DataFrame(
        [
            (
                s.size,
                s.n_edges,
                s.trace.top[0].token,
                s.trace.tv,
                "top-1 kept" if s.trace.shared_nucleus >= 1 else "top-1 not kept",
            )
            for s in trace.strata
        ],
        columns=["size", "edges", "top1", "tv", "top1_kept"],
    )


def sizes_chart(trace: Trace, index: int) -> alt.LayerChart | alt.FacetChart:
    """The nested sizes: edges against size (both log), coloured by whether the top-1 token is kept."""
    df = sizes_frame(trace)
    dots = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=50, filled=True), color="#bbbbbb")
        .encode(
            x=_x_log(trace),
            y=alt.Y("edges:Q", scale=alt.Scale(type="log"), title="edges (log)"),
            tooltip=[alt.Tooltip("size:Q", format=".1e"), "edges", "top1", alt.Tooltip("tv:Q", format=".3f")],
        )
    )
    kept = (
        alt.Chart(df)
        .mark_point(size=60, filled=True)
        .encode(
            x=_x_log(trace),
            y=alt.Y("edges:Q", scale=alt.Scale(type="log")),
            color=alt.Color(
                "top1_kept:N",
                title=None,
                scale=alt.Scale(
                    domain=["top-1 not kept", "top-1 kept"], range=[style.NOT_KEPT_COLOUR, style.TRACE_COLOUR]
                ),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[alt.Tooltip("size:Q", format=".1e"), "edges", "top1", alt.Tooltip("tv:Q", format=".3f")],
        )
    )
    return (dots + kept + _rule(trace, index)).properties(height=240)


# 4. two ablation modes


def modes_frame(trace: Trace) -> pd.DataFrame:
    """TV of the trace against size in its own mode and, where evaluated, the other mode: ``size``,
    ``mode``, ``tv``, ``shared_nucleus``, ``top1``."""
    rows = []
    for s in trace.strata:
        for variant, mode in (("trace", trace.settings.mode), ("other_mode", trace.settings.other_mode)):
            if variant in s.outputs:
                out = s.outputs[variant]
                rows.append((s.size, mode, out.tv, out.shared_nucleus, out.top[0].token))
    return pd.DataFrame(rows, columns=["size", "mode", "tv", "shared_nucleus", "top1"])


def mode_recovery(trace: Trace) -> dict[str, float | None]:
    """Per ablation mode evaluated: the smallest size whose subgraph keeps the top-1 token."""
    df = modes_frame(trace)
    return {
        str(mode): recovery_sizes(part["size"].tolist(), part["shared_nucleus"].tolist())[1]
        for mode, part in df.groupby("mode", sort=False)
    }


def modes_chart(trace: Trace, index: int) -> alt.LayerChart | alt.FacetChart:
    df = modes_frame(trace)
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=2)
        .encode(
            x=_x_log(trace),
            y=alt.Y("tv:Q", title="total variation", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "mode:N", title="ablation mode", scale=style.mode_scale(MODES), legend=alt.Legend(orient="bottom")
            ),
            tooltip=["mode", alt.Tooltip("size:Q", format=".1e"), alt.Tooltip("tv:Q", format=".3f"), "top1"],
        )
    )
    return (lines + _rule(trace, index)).properties(height=240)


# 5. TV and shared nucleus


def _nucleus_list(top, level: int) -> list[str] | None:
    mass = 0.0
    for j, tp in enumerate(top):
        mass += tp.prob
        if mass >= level / 100:
            return [t.token for t in top[: j + 1]]
    return None


def _show(tokens: list[str] | None, stored: int) -> str:
    return " ".join(repr(t) for t in tokens) if tokens is not None else f"(more than {stored} tokens)"


def nucleus_frame(trace: Trace, index: int) -> pd.DataFrame:
    """For each nucleus level k: the full model's and the subgraph's shortest lists of top tokens reaching
    k% (from the stored top tokens; ``None`` where more tokens than stored are needed) and whether they
    are the same. The engine's shared nucleus is the largest k with the same lists."""
    out = trace.strata[index].trace
    rows = []
    for k in NUCLEUS_LEVELS:
        p, q = _nucleus_list(trace.full.top, k), _nucleus_list(out.top, k)
        same = None if p is None or q is None else p == q
        verdict = {None: "?", True: "yes", False: "no"}[same]
        rows.append((k, _show(p, len(trace.full.top)), _show(q, len(out.top)), verdict))
    return pd.DataFrame(rows, columns=["k %", "full model", "subgraph", "same list"])


# 6. controls

CONTROL_COLOURS = {VARIANT_LABELS[v]: style.VARIANT_COLOURS[v] for v in CONTROLS}


def controls_frame(trace: Trace) -> pd.DataFrame:
    """TV and shared nucleus against size of the trace and its two controls (``size``, ``variant``,
    ``tv``, ``shared_nucleus``)."""
    rows = [
        (s.size, VARIANT_LABELS[v], s.outputs[v].tv, s.outputs[v].shared_nucleus)
        for s in trace.strata
        for v in CONTROLS
        if v in s.outputs
    ]
    return pd.DataFrame(rows, columns=["size", "variant", "tv", "shared_nucleus"])


def controls_chart(trace: Trace, index: int) -> alt.LayerChart | alt.FacetChart:
    df = controls_frame(trace)
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=2)
        .encode(
            x=_x_log(trace),
            y=alt.Y("tv:Q", title="total variation", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "variant:N",
                title=None,
                scale=alt.Scale(domain=list(CONTROL_COLOURS), range=list(CONTROL_COLOURS.values())),
                legend=alt.Legend(orient="bottom"),
            ),
            tooltip=[
                "variant",
                alt.Tooltip("size:Q", format=".1e"),
                alt.Tooltip("tv:Q", format=".3f"),
                "shared_nucleus",
            ],
        )
    )
    return (lines + _rule(trace, index)).properties(height=240)


# 7. density


def density_frame(trace: Trace) -> pd.DataFrame:
    """TV against each stratum's actual size ``n_edges / E`` (what density integrates over) for the trace
    and, where computed, the random control (``size``, ``grid_size``, ``variant``, ``tv``)."""
    rows = [
        (s.n_edges / trace.n_edges, s.size, VARIANT_LABELS[v], s.outputs[v].tv)
        for s in trace.strata
        for v in ("trace", "random")
        if v in s.outputs
    ]
    return pd.DataFrame(rows, columns=["size", "grid_size", "variant", "tv"])


def density_chart(trace: Trace) -> alt.LayerChart | alt.FacetChart:
    """The trace's TV curve with the area under it (the density) shaded, and the random control's line."""
    df = density_frame(trace)
    x = _x_log(trace)
    area = (
        alt.Chart(df[df.variant == "s-trace"])
        .mark_area(opacity=0.35, color=style.TRACE_COLOUR, line=True)
        .encode(
            x=x,
            y=alt.Y("tv:Q", title="total variation", scale=alt.Scale(domain=[0, 1])),
            tooltip=[
                alt.Tooltip("size:Q", format=".2e", title="actual size"),
                alt.Tooltip("grid_size:Q", format=".1e", title="grid size"),
                alt.Tooltip("tv:Q", format=".3f"),
            ],
        )
    )
    ctrl = (
        alt.Chart(df[df.variant != "s-trace"])
        .mark_line(color=style.VARIANT_COLOURS["random"], strokeDash=[5, 3])
        .encode(
            x=x, y="tv:Q", tooltip=["variant", alt.Tooltip("size:Q", format=".1e"), alt.Tooltip("tv:Q", format=".3f")]
        )
    )
    return (area + ctrl).properties(height=220)


# 8. construction and refinement phases


def phase_frame(trace: Trace) -> pd.DataFrame:
    """Per size: the share of the trace's edges that are attention edges, and that sit in the last
    quarter of the layers (``size``, ``measure``, ``share``)."""
    ids = np.asarray(trace.order)
    e = trace.layout.decode(ids)
    late = np.cumsum(layer_quarter(e["layer"], trace.layout.n_layers) == 3)
    attn = np.cumsum(e["kind"] == ATTENTION)
    rows = []
    for s in trace.strata:
        n = s.n_edges
        rows.append((s.size, "attention edges", attn[n - 1] / n))
        rows.append((s.size, "edges in the last quarter of layers", late[n - 1] / n))
    return pd.DataFrame(rows, columns=["size", "measure", "share"])


MEASURE_COLOURS = {
    "attention edges": style.KIND_COLOURS["attention"],
    "edges in the last quarter of layers": style.QUARTER_COLOURS[-1],
}


def phase_chart(trace: Trace, index: int) -> alt.LayerChart | alt.FacetChart:
    df = phase_frame(trace)
    measures = list(MEASURE_COLOURS)
    lines = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=2)
        .encode(
            x=_x_log(trace),
            y=alt.Y("share:Q", title="share of edges", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "measure:N",
                title=None,
                legend=alt.Legend(orient="bottom", labelLimit=400),
                scale=alt.Scale(domain=measures, range=style.colour_range(measures, MEASURE_COLOURS)),
            ),
            tooltip=["measure", alt.Tooltip("size:Q", format=".1e"), alt.Tooltip("share:Q", format=".1%")],
        )
    )
    return (style.phase_shading(_lo(trace)) + lines + _rule(trace, index)).properties(height=240)


def phase_label(size: float) -> str:
    """Which phase a size falls in (below 1e-4: before construction)."""
    if size < 1e-4:
        return "before the construction phase"
    return "construction phase" if size < 1e-2 else "refinement phase"
