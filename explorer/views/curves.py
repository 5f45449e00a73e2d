"""TV and shared nucleus against size (log axis) for the trace, its controls and, when computed, the
other ablation mode; the slider's size marked; construction (1e-4..1e-2) and refinement (1e-2..1) phases
shaded."""

from __future__ import annotations

import altair as alt
import pandas as pd

from explorer.trace import Trace
from explorer.views.common import VARIANT_LABELS

METRICS = {"tv": "total variation (lower is better)", "shared_nucleus": "shared nucleus % (higher is better)"}
PHASES = [("construction", 1e-4, 1e-2, "#f2e6d0"), ("refinement", 1e-2, 1.0, "#dde8f3")]
COLOURS = {"s-trace": "#4c78a8", "random control": "#f58518", "inverse control": "#b279a2"}
OTHER_MODE_COLOUR = "#54a24b"


def frame(trace: Trace) -> pd.DataFrame:
    """Long table: ``size``, ``edges``, ``variant`` (label), ``metric``, ``value``."""
    rows = []
    for s in trace.strata:
        for variant, out in s.outputs.items():
            label = VARIANT_LABELS.get(variant, variant)
            if variant == "other_mode":
                label = f"s-trace, {trace.settings.other_mode}"
            for metric in METRICS:
                rows.append((s.size, s.n_edges, label, metric, float(getattr(out, metric))))
    return pd.DataFrame(rows, columns=["size", "edges", "variant", "metric", "value"])


def chart(trace: Trace, index: int) -> alt.Chart:
    """Two panels (TV, shared nucleus), shared log x axis, a rule at the current size."""
    df = frame(trace)
    lo = min(trace.strata[0].size, 1e-4)
    x_scale = alt.Scale(type="log", domain=[lo, 1])
    phases = pd.DataFrame([(n, max(a, lo), b, c) for n, a, b, c in PHASES], columns=["phase", "start", "end", "colour"])
    variants = list(dict.fromkeys(df["variant"]))
    colours = [COLOURS.get(v, OTHER_MODE_COLOUR) for v in variants]  # "s-trace, <other mode>" is green
    current = pd.DataFrame({"size": [trace.strata[index].size]})
    panels = []
    for metric, title in METRICS.items():
        part = df[df["metric"] == metric]
        y_dom = [0, 1] if metric == "tv" else [0, 100]
        shade = alt.Chart(phases).mark_rect(opacity=0.6).encode(
            x=alt.X("start:Q", scale=x_scale), x2="end:Q",
            color=alt.Color("colour:N", scale=None), tooltip=["phase"])
        label = alt.Chart(phases).mark_text(align="left", dx=3, dy=8, baseline="top", color="#6b6b6b", fontSize=10).encode(
            x=alt.X("start:Q", scale=x_scale), y=alt.value(0), text="phase")
        lines = alt.Chart(part).mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.8).encode(
            x=alt.X("size:Q", scale=x_scale, title="relative size s (log)", axis=alt.Axis(format="~e")),
            y=alt.Y("value:Q", title=title, scale=alt.Scale(domain=y_dom)),
            color=alt.Color("variant:N", title=None, scale=alt.Scale(domain=variants, range=colours),
                            legend=alt.Legend(orient="bottom")),
            tooltip=["variant", alt.Tooltip("size:Q", format=".1e"), "edges", alt.Tooltip("value:Q", format=".3f")],
        )
        rule = alt.Chart(current).mark_rule(color="#d62728", strokeDash=[4, 3], strokeWidth=1.5).encode(
            x=alt.X("size:Q", scale=x_scale))
        panels.append((shade + label + lines + rule).properties(width=300, height=220))
    return alt.hconcat(*panels)
