"""TV and shared nucleus against size (log axis) for the trace, its controls and, when computed, the
other ablation mode; the slider's size marked; construction (1e-4..1e-2) and refinement (1e-2..1) phases
shaded."""

from __future__ import annotations

import altair as alt
import pandas as pd

from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import size_texts, variant_label

METRICS = {"tv": "total variation (lower is better)", "shared_nucleus": "shared nucleus % (higher is better)"}


def frame(trace: Trace) -> pd.DataFrame:
    """Long table: ``size``, ``edges``, ``variant`` (label), ``metric``, ``value``."""
    rows = []
    for s in trace.strata:
        for variant, out in s.outputs.items():
            label = variant_label(trace, variant)
            for metric in METRICS:
                rows.append((s.size, s.n_edges, label, metric, float(getattr(out, metric))))
    return pd.DataFrame(rows, columns=["size", "edges", "variant", "metric", "value"])


def variant_colours(trace: Trace) -> dict[str, str]:
    """Each variant's label in ``trace`` -> its colour (:func:`style.variant_colour`)."""
    variants = dict.fromkeys(v for s in trace.strata for v in s.outputs)
    mode, other = trace.settings.mode, trace.settings.other_mode
    return {variant_label(trace, v): style.variant_colour(v, mode, other) for v in variants}


def panels(trace: Trace, index: int | None, fit: bool = True) -> list[style.Panel]:
    """The TV and shared-nucleus panels on the log size axis, a rule at the current size (``index=None``:
    at the size of the named dataset :data:`style.SHOWN_SIZE`), each taking the width the page gives it
    (:func:`style.fit_width`; ``fit=False``: no width, for a fixed layout); sizes in tooltips written as
    everywhere else."""
    df = frame(trace)
    df["s"] = size_texts(df["size"])
    lo = style.size_floor(trace.strata[0].size)
    colours = variant_colours(trace)
    variants = list(dict.fromkeys(df["variant"]))
    out = []
    for metric, title in METRICS.items():
        part = df[df["metric"] == metric]
        y_dom = [0, 1] if metric == "tv" else [0, 100]
        lines = (
            alt.Chart(part)
            .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.8)
            .encode(
                x=style.size_x(lo),
                y=alt.Y("value:Q", title=title, scale=alt.Scale(domain=y_dom)),
                color=alt.Color(
                    "variant:N",
                    title=None,
                    scale=alt.Scale(domain=variants, range=style.colour_range(variants, colours)),
                    legend=style.line_legend(),
                ),
                tooltip=["variant", alt.Tooltip("s:N", title="size s"), "edges", alt.Tooltip("value:Q", format=".3f")],
            )
        )
        rule = style.size_rule(None if index is None else trace.strata[index].size, lo)
        panel = alt.layer(style.phase_shading(lo), lines, rule).properties(height=220)
        out.append(style.fit_width(panel) if fit else panel)
    return out


def chart(trace: Trace, index: int) -> alt.HConcatChart:
    """Two panels (TV, shared nucleus) of :func:`panels` side by side, 300 pixels wide each."""
    return alt.hconcat(*[p.properties(width=300) for p in panels(trace, index, fit=False)])
