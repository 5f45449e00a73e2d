"""A trace's target and foil tokens across sizes, beside TV: each subgraph's probability of the target
(and foil) and the target-minus-foil logit difference, with the full model's values as dotted lines and
the slider's size marked; :func:`beside_curves` sets them under the TV and shared-nucleus curves. The
greedy order does not depend on the target or the foil (the method is target-free); only this measurement
does."""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import pandas as pd

from explorer.results import Trace
from explorer.views import curves, style
from explorer.views.labels import size_texts

PANELS = {
    "tv": "total variation (s-trace)",
    "prob": "probability under the subgraph",
    "logit_diff": "logit difference, target - foil",
}
"""The panels of :func:`frame` (``tv`` is drawn by :mod:`explorer.views.curves`)."""


def token_name(token: str | None) -> str:
    return "none" if token is None else repr(token)


def frame(trace: Trace) -> pd.DataFrame:
    """Long table of the s-trace's measurements: ``size``, ``edges``, ``panel`` (a key of :data:`PANELS`),
    ``series`` (``TV``, ``target '...'``, ``foil '...'``, ``target - foil``), ``value``; the full model's
    values as rows of ``size`` NaN."""
    target, foil = f"target {token_name(trace.target)}", f"foil {token_name(trace.foil)}"
    rows: list[tuple[Any, ...]] = []

    def add(size, edges, out, with_tv: bool) -> None:
        if with_tv:
            rows.append((size, edges, "tv", "TV", out.tv))
        if out.target_prob is not None:
            rows.append((size, edges, "prob", target, out.target_prob))
        if out.foil_prob is not None:
            rows.append((size, edges, "prob", foil, out.foil_prob))
        if out.target_logit_diff is not None:
            rows.append((size, edges, "logit_diff", "target - foil", out.target_logit_diff))

    for s in trace.strata:
        add(s.size, s.n_edges, s.trace, True)
    add(float("nan"), trace.n_edges, trace.full, False)
    return pd.DataFrame(rows, columns=["size", "edges", "panel", "series", "value"])


def panels(trace: Trace, index: int | None, fit: bool = True) -> list[style.Panel]:
    """The probability panel (target solid, foil dashed) and, with a foil, the logit-difference panel, on the
    log size axis; the full model's value of each series as a dotted line, the slider's size as the red
    rule (``index=None``: the size of the named dataset :data:`style.SHOWN_SIZE`). Each takes the width the
    page gives it (:func:`style.fit_width`; ``fit=False``: no width, for a fixed layout)."""
    df = frame(trace)
    df["s"] = size_texts(df["size"])
    lo = style.size_floor(trace.strata[0].size)
    series = [s for s in dict.fromkeys(df["series"]) if s != "TV"]
    colours = {s: style.FOIL_COLOUR if s.startswith("foil ") else style.TARGET_COLOUR for s in series}
    colour = alt.Color(
        "series:N",
        title=None,
        scale=alt.Scale(domain=series, range=style.colour_range(series, colours)),
        legend=style.line_legend(labelLimit=300),
    )
    dash = alt.StrokeDash(
        "series:N",
        legend=None,
        scale=alt.Scale(domain=series, range=[[5, 3] if s.startswith("foil ") else [1, 0] for s in series]),
    )
    rule = style.size_rule(None if index is None else trace.strata[index].size, lo)
    out: list[style.Panel] = []
    for panel in ("prob", "logit_diff"):
        part = cast(pd.DataFrame, df[df["panel"] == panel])
        if part.empty:
            continue
        known = part["size"].notna()
        sized, full = cast(pd.DataFrame, part[known]), cast(pd.DataFrame, part[~known])
        y_scale = alt.Scale(domain=[0, 1]) if panel == "prob" else alt.Scale(zero=True)
        lines = (
            alt.Chart(sized)
            .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.8)
            .encode(
                x=style.size_x(lo),
                y=alt.Y("value:Q", title=PANELS[panel], scale=y_scale),
                color=colour,
                strokeDash=dash,
                tooltip=[
                    "series:N",
                    alt.Tooltip("s:N", title="size s"),
                    "edges:Q",
                    alt.Tooltip("value:Q", format=".4f"),
                ],
            )
        )
        layers: list[Any] = [style.phase_shading(lo, labels=False), lines]
        if panel == "logit_diff":
            layers.append(
                alt.Chart(pd.DataFrame({"zero": [0.0]}))
                .mark_rule(color=style.REFERENCE_COLOUR)
                .encode(y=alt.Y("zero:Q", scale=y_scale))
            )
        if len(full):
            layers.append(
                alt.Chart(full.assign(note="full model"))
                .mark_rule(strokeDash=[1, 3], strokeWidth=1.5)
                .encode(
                    y=alt.Y("value:Q", scale=y_scale),
                    color=colour,
                    tooltip=["note:N", "series:N", alt.Tooltip("value:Q", format=".4f")],
                )
            )
        layers.append(rule)
        panel = alt.layer(*layers).properties(height=200)
        out.append(style.fit_width(panel) if fit else panel)
    return out


def chart(trace: Trace, index: int) -> alt.HConcatChart:
    """The panels of :func:`panels` side by side, 300 pixels wide each."""
    return alt.hconcat(*[p.properties(width=300) for p in panels(trace, index, fit=False)])


def panels_beside_curves(trace: Trace, index: int | None) -> list[style.Panel]:
    """The Trace page's "Error against size" panels, for the page to lay out at its width: TV and shared
    nucleus (:func:`explorer.views.curves.panels`), then the target's (:func:`panels`)."""
    return curves.panels(trace, index) + panels(trace, index)


def beside_curves(trace: Trace, index: int) -> alt.VConcatChart:
    """The Trace page's "Error against size" figure: the TV and shared-nucleus panels
    (:func:`explorer.views.curves.chart`) above the target's panels (:func:`chart`), on the same size axis."""
    return alt.vconcat(curves.chart(trace, index), chart(trace, index)).resolve_scale(
        color="independent", strokeDash="independent"
    )
