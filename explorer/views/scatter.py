"""Scatter plots of per-prompt density, one point per prompt (and ablation mode, and model):

- :func:`density_entropy`: density against the full model's entropy (the Corpus page), coloured by model,
  by the frequency of the full model's top-1 token, or by ablation mode;
- :func:`density_pair`: one model's density against another's on the same prompts (the Compare page).

Both carry a point selection named :data:`SELECTION` (click a point; double-click clears) whose fields
identify the point, so that the page can open its prompt on the Trace page. Frames come from
:mod:`explorer.views.corpus_tables`.
"""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import pandas as pd

from explorer.views import style
from explorer.views.corpus_tables import SELECTION_FIELDS

SELECTION = "pick"
PAIR_FIELDS = ["mode", "text"]
COLOUR_BY = {"model": "model", "frequency": "target-token frequency", "mode": "ablation mode"}
SVG_MAX_POINTS = 2000


def _usermeta(n: int) -> dict:
    """Draw small charts as SVG (each point an element a browser can hit); large ones on a canvas."""
    return {"embedOptions": {"renderer": "svg" if n <= SVG_MAX_POINTS else "canvas"}}


def density_entropy(df: pd.DataFrame, colour_by: str = "model", axis: str = "log") -> alt.Chart:
    """Density (y) against the full model's entropy (x), from :func:`corpus_tables.scatter_frame`.

    ``colour_by``: ``model``, ``frequency`` (log10(1 + per million) of the full model's top-1 token) or
    ``mode``. Where both ablation modes are shown, they also differ in shape."""
    pick = alt.selection_point(name=SELECTION, fields=SELECTION_FIELDS, on="click", clear="dblclick")
    modes = list(dict.fromkeys(df["mode"]))
    if colour_by == "frequency":
        colour = alt.Color(
            "freq_log:Q", title=["top-1 frequency", "log10(1 + per million)"], scale=alt.Scale(scheme="viridis")
        )
    elif colour_by == "mode":
        colour = alt.Color("mode:N", title="ablation mode", scale=style.mode_scale(modes))
    else:
        colour = alt.Color(
            "model:N", title="model", scale=alt.Scale(scheme="tableau10"), legend=alt.Legend(labelLimit=320)
        )
    enc: dict[str, Any] = dict(
        x=alt.X("entropy:Q", title="full model's entropy (nats)", scale=alt.Scale(zero=False)),
        y=alt.Y(
            "density:Q",
            title="density, TV integrated " + ("over log10 s" if axis == "log" else "over linear s"),
            scale=alt.Scale(zero=False),
        ),
        color=colour,
        opacity=alt.condition(pick, alt.value(0.85), alt.value(0.2)),
        size=alt.condition(pick, alt.value(70), alt.value(45)),
        tooltip=[
            alt.Tooltip("text:N", title="prompt"),
            "model:N",
            alt.Tooltip("mode:N", title="ablation mode"),
            alt.Tooltip("density:Q", format=".3f"),
            alt.Tooltip("entropy:Q", format=".3f"),
            alt.Tooltip("full_top1_token:N", title="full model's top-1"),
            alt.Tooltip("full_top1_freq:Q", title="its frequency per million", format=".1f"),
            alt.Tooltip("top1_first_kept:N", title="top-1 first kept at s ="),
        ],
    )
    if len(modes) > 1:
        enc["shape"] = alt.Shape("mode:N", title="ablation mode", scale=style.mode_shapes(modes))
    return (
        alt.Chart(df)
        .mark_point(filled=True)
        .encode(**enc)
        .add_params(pick)
        .properties(height=380, usermeta=_usermeta(len(df)))
    )


def density_pair(df: pd.DataFrame) -> alt.ConcatChart:
    """Model b's density (y) against model a's (x) on their shared prompts, from
    :func:`corpus_tables.pair_frame`, with the diagonal y = x; coloured by ablation mode."""
    pick = alt.selection_point(name=SELECTION, fields=PAIR_FIELDS, on="click", clear="dblclick")
    a = df["model_a"].iloc[0] if len(df) else "model a"
    b = df["model_b"].iloc[0] if len(df) else "model b"
    modes = list(dict.fromkeys(df["mode"]))
    da, db = cast(pd.Series, df["density_a"]), cast(pd.Series, df["density_b"])
    top = float(max(da.max(), db.max())) if len(df) else 1.0
    lo = float(min(da.min(), db.min())) if len(df) else 0.0
    pad = 0.05 * (top - lo) or 0.1
    lo, top = lo - pad, top + pad
    scale = alt.Scale(domain=[lo, top], zero=False, nice=False)
    points = (
        alt.Chart(df)
        .mark_point(filled=True)
        .encode(
            x=alt.X("density_a:Q", title=f"density, {a}", scale=scale),
            y=alt.Y("density_b:Q", title=f"density, {b}", scale=scale),
            color=alt.Color("mode:N", title="ablation mode", scale=style.mode_scale(modes)),
            shape=alt.Shape("mode:N", title="ablation mode", scale=style.mode_shapes(modes)),
            opacity=alt.condition(pick, alt.value(0.85), alt.value(0.2)),
            size=alt.condition(pick, alt.value(70), alt.value(45)),
            tooltip=[
                alt.Tooltip("text:N", title="prompt"),
                alt.Tooltip("mode:N", title="ablation mode"),
                alt.Tooltip("density_a:Q", title=f"density, {a}", format=".3f"),
                alt.Tooltip("density_b:Q", title=f"density, {b}", format=".3f"),
            ],
        )
        .add_params(pick)
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"x": [lo, top], "y": [lo, top]}))
        .mark_line(color=style.REFERENCE_COLOUR, strokeDash=[4, 3])
        .encode(x=alt.X("x:Q", title=f"density, {a}", scale=scale), y=alt.Y("y:Q", title=f"density, {b}", scale=scale))
    )
    # a one-panel concat keeps the square size (a plain layer's width follows the page's layout)
    return alt.concat((points + diagonal).properties(width=440, height=440)).properties(usermeta=_usermeta(len(df)))
