"""Corpus-level curves against the subgraph's size (log axis), one panel per model:

- :func:`mean_curves`: the mean TV over the prompts with its inter-quartile band, for the s-trace and the
  random and inverse controls;
- :func:`recovery`: per nucleus level k, the share of prompts whose shared nucleus reaches k by
  ``s = 0.01``, ``0.1`` and ``0.4``, and the smallest size that does (median and inter-quartile range);
- :func:`frequency`: the mean log frequency of the subgraph's top-1 token against the full model's, per
  size ("small subgraphs predict frequent tokens", METHOD.md section 7).

Each returns a list of panels (one per model, or per measure) without a width, for the page to lay out
side by side at the width it has (each panel fills its column). Where both ablation modes are shown,
``attention-kept`` is dashed. Frames come from :mod:`explorer.views.corpus_tables`; sizes in tooltips are
written as everywhere else (:func:`explorer.views.labels.format_size`).
"""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import pandas as pd

from explorer.views import style
from explorer.views.labels import VARIANT_LABELS, format_size, size_texts

TOP1_COLOURS = {"subgraph's top-1": style.SUBGRAPH_COLOUR, "full model's top-1": style.FULL_COLOUR}
DASH_NOTE = "Solid lines: all edges removed; dashed: attention kept."
PANEL_HEIGHT = 240
Panel = style.Panel


def _lo(df: pd.DataFrame) -> float:
    """The left end of the size axis for the sizes of ``df``."""
    return style.size_floor(float(cast(pd.Series, df["size"]).min()) if len(df) else None)


def _panels(df: pd.DataFrame, draw) -> list[Panel]:
    """One panel per model, titled with the model (its width left to the page)."""
    models = list(dict.fromkeys(df["model"])) or [""]
    return [style.fit_width(draw(df[df["model"] == m]).properties(title=m, height=PANEL_HEIGHT)) for m in models]


def _with_size_text(df: pd.DataFrame, column: str = "size") -> pd.DataFrame:
    """``df`` with ``s``: ``column`` written as a size (``1e-3``, ``0.04``), for tooltips."""
    out = df.copy()
    out["s"] = size_texts(out[column]) if len(out) else []
    return out


def curve_long(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`corpus_tables.curve_frame` with the variant's display label in ``variant``."""
    out = df.copy()
    out["variant"] = out["variant"].map(lambda v: VARIANT_LABELS.get(v, v))
    return out


def mean_curves(df: pd.DataFrame) -> list[Panel]:
    """Mean TV (line) and its inter-quartile band (area) against size, per variant; one panel per model.
    The s-trace takes its mode's colour where one mode is shown; with both, the modes differ by dash."""
    modes = list(dict.fromkeys(df["mode"]))
    mode = modes[0] if len(modes) == 1 else "all"
    raw_variants: list[str] = list(dict.fromkeys(df["variant"]))
    colours = {VARIANT_LABELS.get(v, v): style.variant_colour(v, mode) for v in raw_variants}
    data = _with_size_text(curve_long(df))
    variants = list(dict.fromkeys(data["variant"]))
    variant_scale = alt.Scale(domain=variants, range=style.colour_range(variants, colours))
    colour = alt.Color(
        "variant:N",
        title=None,
        scale=variant_scale,
        legend=style.line_legend(),
    )
    lo = _lo(data)
    x = style.size_x(lo)

    def draw(part: pd.DataFrame) -> Panel:
        base = alt.Chart(part).encode(x=x, detail="mode:N")
        # the band fills in the variant's colour without a legend of its own: the legend is the lines'
        band = base.mark_area(opacity=0.16 if len(modes) > 1 else 0.25).encode(
            y=alt.Y("q25:Q", title="total variation (mean, IQR band)", scale=alt.Scale(domain=[0, 1])),
            y2="q75:Q",
            fill=alt.Fill("variant:N", scale=variant_scale, legend=None),
        )
        enc: dict[str, Any] = dict(
            y="mean:Q",
            tooltip=[
                "variant:N",
                alt.Tooltip("mode:N", title="ablation mode"),
                alt.Tooltip("s:N", title="size s"),
                alt.Tooltip("mean:Q", format=".3f"),
                alt.Tooltip("q25:Q", format=".3f"),
                alt.Tooltip("q75:Q", format=".3f"),
                alt.Tooltip("n:Q", title="prompts"),
            ],
        )
        if len(modes) > 1:
            enc["strokeDash"] = style.mode_dash(modes)
        line = base.mark_line(point=alt.OverlayMarkDef(size=16), strokeWidth=1.8).encode(color=colour, **enc)
        return alt.layer(style.phase_shading(lo, labels=False), band, line)

    return _panels(data, draw)


def recovery(shares: pd.DataFrame, sizes: pd.DataFrame) -> list[Panel]:
    """Panels over the nucleus levels k: the share of prompts whose shared nucleus reaches k by each size
    of ``shares`` (:func:`corpus_tables.recovery_by_frame`: by ``s = 0.01``, ``0.1``, ``0.4``; bars), then
    and the smallest size reaching k (``sizes``, :func:`corpus_tables.recovery_frame`: median dot,
    inter-quartile rule, log axis); colour: model and mode."""
    shares, sizes = shares.copy(), sizes.copy()
    for d in (shares, sizes):
        d["k_label"] = d["k"].map(lambda k: f"{k}%")
        d["series"] = _series(d)
    order = [f"{k}%" for k in sorted(sizes["k"].unique())]
    series = list(dict.fromkeys(sizes["series"]))
    colour = alt.Color(
        "series:N",
        title=None,
        sort=series,
        scale=alt.Scale(domain=series, scheme="tableau10"),
        legend=alt.Legend(orient="bottom", labelLimit=320, columns=2),
    )
    x = alt.X("k_label:N", title="shared nucleus k", sort=order, axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("series:N", sort=series)
    panels: list[Panel] = []
    for by in sorted(shares["by"].unique()):
        part = shares[shares["by"] == by].assign(by_s=format_size(float(by)))
        panels.append(
            alt.Chart(part)
            .mark_bar()
            .encode(
                x=x,
                xOffset=offset,
                color=colour,
                y=alt.Y(
                    "share:Q",
                    title="share of prompts",
                    scale=alt.Scale(domain=[0, 1]),
                    axis=alt.Axis(format="%"),
                ),
                tooltip=[
                    "series:N",
                    alt.Tooltip("k:Q", title="k (%)"),
                    alt.Tooltip("by_s:N", title="by size s"),
                    alt.Tooltip("share:Q", title="share of prompts", format=".0%"),
                    alt.Tooltip("n:Q", title="prompts"),
                ],
            )
            .properties(title=f"reaching k by s = {format_size(float(by))}", height=PANEL_HEIGHT)
        )
    sized = sizes.dropna(subset=["median"])
    for c in ("q25", "median", "q75"):
        sized[f"{c}_s"] = size_texts(sized[c]) if len(sized) else []
    lo = float(cast(pd.Series, sized["q25"]).min()) if len(sized) else 1e-4
    ticks = [10.0**e for e in range(-8, 1) if 10.0**e >= lo / 10]
    y = alt.Y(
        "q25:Q",
        title="smallest size reaching k (median, IQR)",
        scale=alt.Scale(type="log", domain=[min(lo, 1e-3), 1]),
        axis=style.size_axis(values=ticks),
    )
    tooltip = [
        "series:N",
        alt.Tooltip("k:Q", title="k (%)"),
        alt.Tooltip("median_s:N", title="median size"),
        alt.Tooltip("q25_s:N", title="first quartile"),
        alt.Tooltip("q75_s:N", title="third quartile"),
    ]
    rule = (
        alt.Chart(sized)
        .mark_rule(strokeWidth=2)
        .encode(x=x, xOffset=offset, color=colour, y=y, y2="q75:Q", tooltip=tooltip)
    )
    dots = (
        alt.Chart(sized)
        .mark_point(filled=True, size=60)
        .encode(x=x, xOffset=offset, color=colour, y="median:Q", tooltip=tooltip)
    )
    panels.append(alt.layer(rule, dots).properties(title="smallest size reaching k", height=PANEL_HEIGHT))
    return [style.fit_width(p) for p in panels]


def _series(df: pd.DataFrame) -> pd.Series:
    """A label per row telling apart what varies among the rows: the model, the mode, or both."""
    model, mode = cast(pd.Series, df["model"]), cast(pd.Series, df["mode"])
    many_models = model.nunique() > 1
    many_modes = mode.nunique() > 1
    if many_models and many_modes:
        return model + " · " + mode
    return mode if many_modes else model


def frequency(df: pd.DataFrame) -> list[Panel]:
    """From :func:`corpus_tables.frequency_frame`: the mean log10(1 + frequency per million) of the
    subgraph's top-1 token and of the full model's top-1, against size; one panel per model."""
    modes = list(dict.fromkeys(df["mode"]))
    whos = list(TOP1_COLOURS)
    colour = alt.Color(
        "top1:N",
        title=None,
        scale=alt.Scale(domain=whos, range=[TOP1_COLOURS[w] for w in whos]),
        legend=style.line_legend(),
    )
    x = style.size_x(_lo(df))
    df = _with_size_text(df)

    def draw(part: pd.DataFrame) -> alt.Chart:
        enc: dict[str, Any] = dict(
            x=x,
            color=colour,
            detail="mode:N",
            y=alt.Y("mean_log:Q", title="mean log10(1 + frequency per million)"),
            tooltip=[
                "top1:N",
                alt.Tooltip("mode:N", title="ablation mode"),
                alt.Tooltip("s:N", title="size s"),
                alt.Tooltip("mean_log:Q", format=".2f"),
                alt.Tooltip("mean:Q", title="mean per million", format=".1f"),
                alt.Tooltip("same_top1:Q", title="keeps the full model's top-1", format=".0%"),
            ],
        )
        if len(modes) > 1:
            enc["strokeDash"] = style.mode_dash(modes)
        return alt.Chart(part).mark_line(point=alt.OverlayMarkDef(size=16), strokeWidth=1.8).encode(**enc)

    return _panels(df, draw)
