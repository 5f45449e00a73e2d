"""The look every chart of the explorer shares: one colour per variant, ablation mode, edge kind and
distribution, the log axis of the subgraph's size, the shading of the construction and refinement phases,
and the rule that marks the size being shown. The chart builders of :mod:`explorer.views` take them from
here, so that a thing has the same colour in every chart."""

from __future__ import annotations

import altair as alt
import pandas as pd

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
QUARTER_COLOURS = ["#c6dbef", "#6baed6", "#2171b5", "#08306b"]
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
RULE_COLOUR = "#d62728"
LABEL_COLOUR = "#6b6b6b"


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


# ------------------------------------------------------------------------------------------ size axis

SIZE_TITLE = "relative size s (log)"
SMALLEST_SHOWN = 1e-4  # the axis always reaches down to the construction phase


def size_floor(smallest: float | None) -> float:
    """The left end of the size axis: the smallest size shown, and at most :data:`SMALLEST_SHOWN`."""
    return min(smallest, SMALLEST_SHOWN) if smallest is not None else SMALLEST_SHOWN


def size_scale(lo: float) -> alt.Scale:
    """The log scale of the size axis, from ``lo`` (see :func:`size_floor`) to 1."""
    return alt.Scale(type="log", domain=[lo, 1])


def size_x(lo: float, title: str = SIZE_TITLE, field: str = "size") -> alt.X:
    """The size axis: ``field`` on a log scale from ``lo`` to 1, ticks as ``1e-3``."""
    return alt.X(f"{field}:Q", title=title, scale=size_scale(lo), axis=alt.Axis(format="~e"))


# ------------------------------------------------------------------------------------------ phases

PHASES = [("construction", 1e-4, 1e-2, "#f2e6d0"), ("refinement", 1e-2, 1.0, "#dde8f3")]
"""The papers' two phases of growing size (name, start, end, shade)."""


def phase_frame(lo: float) -> pd.DataFrame:
    return pd.DataFrame([(n, max(a, lo), b, c) for n, a, b, c in PHASES], columns=["phase", "start", "end", "colour"])


def phase_shading(lo: float, labels: bool = True) -> alt.Chart | alt.LayerChart | alt.FacetChart:
    """The construction and refinement phases shaded across the size axis (from ``lo``), named at the top
    when ``labels``."""
    phases = phase_frame(lo)
    scale = size_scale(lo)
    shade = (
        alt.Chart(phases)
        .mark_rect(opacity=0.6)
        .encode(x=alt.X("start:Q", scale=scale), x2="end:Q", color=alt.Color("colour:N", scale=None), tooltip=["phase"])
    )
    if not labels:
        return shade
    names = (
        alt.Chart(phases)
        .mark_text(align="left", dx=3, dy=8, baseline="top", color=LABEL_COLOUR, fontSize=10)
        .encode(x=alt.X("start:Q", scale=scale), y=alt.value(0), text="phase")
    )
    return shade + names


# ------------------------------------------------------------------------------------------ size rule


def size_rule(size: float, lo: float) -> alt.Chart:
    """The dashed red rule at the size being shown (the slider's), on the size axis from ``lo``."""
    return (
        alt.Chart(pd.DataFrame({"size": [size]}))
        .mark_rule(color=RULE_COLOUR, strokeDash=[4, 3], strokeWidth=1.5)
        .encode(x=alt.X("size:Q", scale=size_scale(lo)))
    )
