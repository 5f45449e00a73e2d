"""The look every chart of the explorer shares: one colour per variant, ablation mode, edge kind and
distribution, the log axis of the subgraph's size, the shading of the construction and refinement phases,
and the rule that marks the size being shown. The chart builders of :mod:`explorer.views` take them from
here, so that a thing has the same colour in every chart.

The app follows the browser's light or dark theme, and Streamlit draws the charts' axes and text in the
theme's colours; the colours here are mid-tones that read on a white and on a near-black background alike
(no near-white fills, no near-black marks), and shadings are saturated colours at a low opacity, which
tint either background instead of painting it."""

from __future__ import annotations

import altair as alt
import pandas as pd

from explorer.views.labels import size_expr

# ------------------------------------------------------------------------------------------ colours

TRACE_COLOUR = "#4c78a8"
VARIANT_COLOURS = {
    "trace": TRACE_COLOUR,
    "random": "#f58518",
    "inverse": "#b279a2",
    "other_mode": "#54a24b",
}
"""Per variant of a size (:data:`explorer.options.VARIANTS`): the s-trace, its controls, the trace in
the other ablation mode; the s-trace's and the other mode's as their modes' (:func:`variant_colour`)."""

MODE_COLOURS = {"all": TRACE_COLOUR, "attention-kept": VARIANT_COLOURS["other_mode"]}
"""Per ablation mode: ``all`` (the method) as the s-trace, ``attention-kept`` as its other mode."""
MODE_SHAPES = {"all": "circle", "attention-kept": "triangle-up"}
MODE_DASH = {"all": [1, 0], "attention-kept": [6, 3]}
"""Where both modes share a chart: ``attention-kept`` dashed, ``all`` solid."""

KIND_COLOURS = {"attention": "#e45756", "mlp": "#4c78a8", "residual": "#9d9d9d"}
"""Per edge kind, as :data:`explorer.edges.KIND_NAMES` names them."""
QUARTER_COLOURS = ["#a9cce3", "#6baed6", "#3182bd", "#2b5c9e"]
"""Per quarter of the model's depth, first to last."""

ENTRY_PALETTE = [
    "#440154",
    "#482878",
    "#3e4989",
    "#31688e",
    "#26828e",
    "#1f9e89",
    "#35b779",
    "#6ece58",
    "#b5de2b",
    "#fde725",
]
"""The size at which a component entered the trace, early (dark) to late (yellow): viridis."""

FULL_COLOUR, SUBGRAPH_COLOUR = "#9d9d9d", TRACE_COLOUR
"""The full model's distribution (grey) and the subgraph's (the s-trace's colour)."""
TARGET_COLOUR, FOIL_COLOUR = TRACE_COLOUR, "#e45756"
"""A trace's target token (the s-trace's colour) and its foil, across sizes."""
NOT_KEPT_COLOUR = "#9d9d9d"
REFERENCE_COLOUR = "#9d9d9d"  # reference lines, such as the diagonal y = x
FALLBACK_COLOUR = "#54a24b"
RULE_COLOUR = "#e03b3b"
LABEL_COLOUR = "#8c8c8c"  # text drawn on a chart: mid-grey, legible on light and dark backgrounds


def colour_range(domain, colours: dict[str, str], fallback: str = FALLBACK_COLOUR) -> list[str]:
    """The colours of ``domain`` (a list of keys of ``colours``), in order."""
    return [colours.get(k, fallback) for k in domain]


def variant_colour(variant: str, mode: str = "all", other_mode: str = "attention-kept") -> str:
    """The colour of one variant of a trace computed in ablation mode ``mode``: the s-trace and its pass in
    the other mode take their mode's colour (so ``attention-kept`` is green wherever it is drawn), the
    controls their own."""
    if variant in ("trace", "other_mode"):
        return MODE_COLOURS.get(mode if variant == "trace" else other_mode, VARIANT_COLOURS[variant])
    return VARIANT_COLOURS.get(variant, FALLBACK_COLOUR)


def kind_scale() -> alt.Scale:
    """A colour scale over the three edge kinds."""
    return alt.Scale(domain=list(KIND_COLOURS), range=list(KIND_COLOURS.values()))


def mode_scale(modes) -> alt.Scale:
    """A colour scale over the ablation modes shown."""
    modes = list(modes)
    return alt.Scale(domain=modes, range=colour_range(modes, MODE_COLOURS))


def mode_shapes(modes) -> alt.Scale:
    modes = list(modes)
    return alt.Scale(domain=modes, range=[MODE_SHAPES.get(m, "square") for m in modes])


def mode_dash(modes: list[str]) -> alt.StrokeDash:
    """``attention-kept`` dashed, ``all`` solid, without a legend (its symbols would be drawn in the colour
    of no series; pages say it in words)."""
    return alt.StrokeDash(
        "mode:N",
        title="ablation mode",
        legend=None,
        scale=alt.Scale(domain=modes, range=[MODE_DASH.get(m, [2, 2]) for m in modes]),
    )


# ------------------------------------------------------------------------------------------ panels


def line_legend(**kwargs) -> alt.Legend:
    """The legend of a chart of lines, under it: each series a solid stroke in its colour (not the faint
    symbol a layered chart would otherwise draw)."""
    return alt.Legend(orient="bottom", symbolOpacity=1, symbolType="stroke", symbolStrokeWidth=3, **kwargs)


Panel = alt.Chart | alt.LayerChart | alt.FacetChart
"""One panel of a view drawn as several (what :func:`fit_width` takes and gives)."""


def fit_width(chart):
    """A panel that takes the width the page gives it (its axes and legend included) and keeps its own
    height for the plot: ``autosize`` ``fit-x``. (Under the default ``fit``, a long axis title shrinks
    the plot to a sliver.)"""
    return chart.properties(autosize=alt.AutoSizeParams(type="fit-x", contains="padding"))


# ------------------------------------------------------------------------------------------ size axis

SIZE_TITLE = "relative size s (log)"
SMALLEST_SHOWN = 1e-4  # the axis always reaches down to the construction phase


def size_floor(smallest: float | None) -> float:
    """The left end of the size axis: the smallest size shown, and at most :data:`SMALLEST_SHOWN`."""
    return min(smallest, SMALLEST_SHOWN) if smallest is not None else SMALLEST_SHOWN


def size_scale(lo: float) -> alt.Scale:
    """The log scale of the size axis, from ``lo`` (see :func:`size_floor`) to 1."""
    return alt.Scale(type="log", domain=[lo, 1])


def size_axis(**kwargs) -> alt.Axis:
    """An axis of sizes, its ticks written as everywhere else (:func:`explorer.views.labels.format_size`:
    ``1e-3``, ``0.1``, ``1``); the ticks a log axis leaves unlabelled stay so."""
    return alt.Axis(format="~e", labelExpr=f"datum.label == '' ? '' : ({size_expr()})", **kwargs)


def size_x(lo: float, title: str = SIZE_TITLE, field: str = "size") -> alt.X:
    """The size axis: ``field`` on a log scale from ``lo`` to 1, ticks as ``1e-3`` and ``0.1``."""
    return alt.X(f"{field}:Q", title=title, scale=size_scale(lo), axis=size_axis())


# ------------------------------------------------------------------------------------------ phases

PHASES = [("construction", 1e-4, 1e-2, "#e8a33d"), ("refinement", 1e-2, 1.0, "#4c8fd6")]
"""The papers' two phases of growing size (name, start, end, shade at :data:`PHASE_OPACITY`)."""
PHASE_OPACITY = 0.16


def phase_frame(lo: float) -> pd.DataFrame:
    return pd.DataFrame([(n, max(a, lo), b, c) for n, a, b, c in PHASES], columns=["phase", "start", "end", "colour"])


def phase_shading(lo: float, labels: bool = True) -> alt.Chart | alt.LayerChart | alt.FacetChart:
    """The construction and refinement phases shaded across the size axis (from ``lo``), named when
    ``labels`` above the plot (outside it, where no line runs)."""
    phases = phase_frame(lo)
    scale = size_scale(lo)
    shade = (
        alt.Chart(phases)
        .mark_rect(fillOpacity=PHASE_OPACITY)  # not opacity: a layered legend takes the first mark's
        .encode(x=alt.X("start:Q", scale=scale), x2="end:Q", color=alt.Color("colour:N", scale=None), tooltip=["phase"])
    )
    if not labels:
        return shade
    names = (
        alt.Chart(phases)
        .mark_text(align="left", dx=2, dy=-3, baseline="bottom", color=LABEL_COLOUR, fontSize=10)
        .encode(x=alt.X("start:Q", scale=scale), y=alt.value(0), text="phase")
    )
    return shade + names


# ------------------------------------------------------------------------------------------ size rule


SHOWN_SIZE = "shown_size"
"""The named dataset a chart's size rule reads when it is drawn for every size (one row ``size``)."""


def shown_size(size: float) -> pd.DataFrame:
    """The rows of :data:`SHOWN_SIZE` for ``size``."""
    return pd.DataFrame({"size": [size]})


def size_rule(size: float | None, lo: float) -> alt.Chart:
    """The dashed red rule at the size being shown (the slider's), on the size axis from ``lo``;
    ``size=None``: at the size of the named dataset :data:`SHOWN_SIZE`."""
    return (
        alt.Chart(alt.Data(name=SHOWN_SIZE) if size is None else shown_size(size))
        .mark_rule(color=RULE_COLOUR, strokeDash=[4, 3], strokeWidth=1.5)
        .encode(x=alt.X("size:Q", scale=size_scale(lo)))
    )
