"""Corpus-level curves against the subgraph's size (log axis), one panel per model:

- :func:`mean_curves`: the mean TV over the prompts with its inter-quartile band, for the s-trace and the
  random and inverse controls;
- :func:`recovery`: per nucleus level k, the share of prompts whose shared nucleus reaches k, and the
  smallest size that does (median and inter-quartile range);
- :func:`frequency`: the mean log frequency of the subgraph's top-1 token against the full model's, per
  size ("small subgraphs predict frequent tokens", METHOD.md section 7).

Where both ablation modes are shown, ``attention-kept`` is dashed. Frames come from
:mod:`explorer.views.corpus_tables`.
"""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import pandas as pd

from explorer.views import style
from explorer.views.labels import VARIANT_LABELS

TOP1_COLOURS = {"subgraph's top-1": style.SUBGRAPH_COLOUR, "full model's top-1": style.FULL_COLOUR}
DASH_NOTE = "Solid lines: all edges removed; dashed: attention kept."
PANEL_WIDTH, PANEL_HEIGHT = 320, 240
COLUMNS = 3


def _lo(df: pd.DataFrame) -> float:
    """The left end of the size axis for the sizes of ``df``."""
    return style.size_floor(float(cast(pd.Series, df["size"]).min()) if len(df) else None)


def _panels(df: pd.DataFrame, draw) -> alt.ConcatChart:
    """One panel per model (titled with the model), wrapped in rows of :data:`COLUMNS`."""
    models = list(dict.fromkeys(df["model"])) or [""]
    panels = [draw(df[df["model"] == m]).properties(title=m, width=PANEL_WIDTH, height=PANEL_HEIGHT) for m in models]
    return alt.concat(*panels, columns=COLUMNS)


def curve_long(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`corpus_tables.curve_frame` with the variant's display label in ``variant``."""
    out = df.copy()
    out["variant"] = out["variant"].map(lambda v: VARIANT_LABELS.get(v, v))
    return out


def mean_curves(df: pd.DataFrame) -> alt.ConcatChart:
    """Mean TV (line) and its inter-quartile band (area) against size, per variant; one panel per model.
    The s-trace takes its mode's colour where one mode is shown; with both, the modes differ by dash."""
    modes = list(dict.fromkeys(df["mode"]))
    mode = modes[0] if len(modes) == 1 else "all"
    raw_variants: list[str] = list(dict.fromkeys(df["variant"]))
    colours = {VARIANT_LABELS.get(v, v): style.variant_colour(v, mode) for v in raw_variants}
    data = curve_long(df)
    variants = list(dict.fromkeys(data["variant"]))
    colour = alt.Color(
        "variant:N",
        title=None,
        scale=alt.Scale(domain=variants, range=style.colour_range(variants, colours)),
        legend=alt.Legend(orient="bottom", symbolOpacity=1, symbolType="stroke", symbolStrokeWidth=3),
    )
    lo = _lo(data)
    x = style.size_x(lo)

    def draw(part: pd.DataFrame) -> alt.LayerChart | alt.FacetChart:
        base = alt.Chart(part).encode(x=x, color=colour, detail="mode:N")
        band = base.mark_area(opacity=0.16 if len(modes) > 1 else 0.25).encode(
            y=alt.Y("q25:Q", title="total variation (mean, IQR band)", scale=alt.Scale(domain=[0, 1])), y2="q75:Q"
        )
        enc: dict[str, Any] = dict(
            y="mean:Q",
            tooltip=[
                "variant:N",
                alt.Tooltip("mode:N", title="ablation mode"),
                alt.Tooltip("size:Q", format=".1e"),
                alt.Tooltip("mean:Q", format=".3f"),
                alt.Tooltip("q25:Q", format=".3f"),
                alt.Tooltip("q75:Q", format=".3f"),
                alt.Tooltip("n:Q", title="prompts"),
            ],
        )
        if len(modes) > 1:
            enc["strokeDash"] = style.mode_dash(modes)
        line = base.mark_line(point=alt.OverlayMarkDef(size=16), strokeWidth=1.8).encode(**enc)
        return style.phase_shading(lo, labels=False) + band + line

    return _panels(data, draw)


def recovery(df: pd.DataFrame) -> alt.HConcatChart:
    """From :func:`corpus_tables.recovery_frame`: per k, the share of prompts whose shared nucleus reaches
    k (bars) and the smallest such size (median dot, inter-quartile rule, log axis); colour: model and
    mode."""
    data = df.copy()
    data["k_label"] = data["k"].map(lambda k: f"{k}%")
    data["series"] = _series(data)
    order = [f"{k}%" for k in sorted(data["k"].unique())]
    series = list(dict.fromkeys(data["series"]))
    colour = alt.Color(
        "series:N",
        title=None,
        sort=series,
        scale=alt.Scale(scheme="tableau10"),
        legend=alt.Legend(orient="bottom", labelLimit=320, columns=2),
    )
    x = alt.X("k_label:N", title="shared nucleus k", sort=order)
    offset = alt.XOffset("series:N", sort=series)
    tooltip = [
        "series:N",
        alt.Tooltip("k:Q", title="k (%)"),
        alt.Tooltip("recovered:Q", format=".0%"),
        alt.Tooltip("median:Q", format=".1e"),
        alt.Tooltip("q25:Q", format=".1e"),
        alt.Tooltip("q75:Q", format=".1e"),
    ]
    share = (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=x,
            xOffset=offset,
            color=colour,
            tooltip=tooltip,
            y=alt.Y(
                "recovered:Q",
                title="prompts reaching k at some size",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
        )
        .properties(width=PANEL_WIDTH, height=PANEL_HEIGHT)
    )
    sized = data.dropna(subset=["median"])
    lo = float(cast(pd.Series, sized["q25"]).min()) if len(sized) else 1e-4
    ticks = [10.0**e for e in range(-8, 1) if 10.0**e >= lo / 10]
    y = alt.Y(
        "q25:Q",
        title="smallest size reaching k (median, IQR)",
        scale=alt.Scale(type="log", domain=[min(lo, 1e-3), 1]),
        axis=alt.Axis(format="~e", values=ticks),
    )
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
    return alt.hconcat(share, (rule + dots).properties(width=PANEL_WIDTH, height=PANEL_HEIGHT))


def _series(df: pd.DataFrame) -> pd.Series:
    """A label per row telling apart what varies among the rows: the model, the mode, or both."""
    model, mode = cast(pd.Series, df["model"]), cast(pd.Series, df["mode"])
    many_models = model.nunique() > 1
    many_modes = mode.nunique() > 1
    if many_models and many_modes:
        return model + " · " + mode
    return mode if many_modes else model


def frequency(df: pd.DataFrame) -> alt.ConcatChart:
    """From :func:`corpus_tables.frequency_frame`: the mean log10(1 + frequency per million) of the
    subgraph's top-1 token and of the full model's top-1, against size; one panel per model."""
    modes = list(dict.fromkeys(df["mode"]))
    whos = list(TOP1_COLOURS)
    colour = alt.Color(
        "top1:N",
        title=None,
        scale=alt.Scale(domain=whos, range=[TOP1_COLOURS[w] for w in whos]),
        legend=alt.Legend(orient="bottom"),
    )
    x = style.size_x(_lo(df))

    def draw(part: pd.DataFrame) -> alt.Chart:
        enc: dict[str, Any] = dict(
            x=x,
            color=colour,
            detail="mode:N",
            y=alt.Y("mean_log:Q", title="mean log10(1 + frequency per million)"),
            tooltip=[
                "top1:N",
                alt.Tooltip("mode:N", title="ablation mode"),
                alt.Tooltip("size:Q", format=".1e"),
                alt.Tooltip("mean_log:Q", format=".2f"),
                alt.Tooltip("mean:Q", title="mean per million", format=".1f"),
                alt.Tooltip("same_top1:Q", title="keeps the full model's top-1", format=".0%"),
            ],
        )
        if len(modes) > 1:
            enc["strokeDash"] = style.mode_dash(modes)
        return alt.Chart(part).mark_line(point=alt.OverlayMarkDef(size=16), strokeWidth=1.8).encode(**enc)

    return _panels(df, draw)
