"""Charts of an all-positions corpus run (``corpus --all-positions``): one point per (text, position,
ablation mode), one panel per model (a list of panels without a width, which the page lays out side by side).

- :func:`density_position`: density against the context length (``position + 1`` tokens), with the mean
  density per context length as a line;
- :func:`density_frequency`: density against the next token's unigram frequency (log10(1 + per million)).

Frames come from :mod:`explorer.views.corpus_tables` (:func:`~explorer.views.corpus_tables.position_frame`,
:func:`~explorer.views.corpus_tables.position_means`). Where both ablation modes are shown they differ in
colour and shape (the mean lines: ``attention-kept`` dashed).
"""

from __future__ import annotations

from typing import Any, cast

import altair as alt
import pandas as pd

from explorer.views import style

PANEL_HEIGHT = 300
SVG_MAX_POINTS = 2000
Panel = style.Panel
CONTEXT_TITLE = "context length (tokens before the prediction)"
FREQUENCY_TITLE = ["next token's unigram frequency", "log10(1 + per million)"]


def _density_title(axis: str) -> str:
    return "density, TV integrated " + ("over log10 s" if axis == "log" else "over linear s")


def _usermeta(n: int) -> dict:
    """SVG for small charts, a canvas for large ones (thousands of positions)."""
    return {"embedOptions": {"renderer": "svg" if n <= SVG_MAX_POINTS else "canvas"}}


def _tooltip() -> list:
    return [
        alt.Tooltip("model:N"),
        alt.Tooltip("mode:N", title="ablation mode"),
        alt.Tooltip("prompt_index:Q", title="text"),
        alt.Tooltip("position:Q"),
        alt.Tooltip("token:N", title="token"),
        alt.Tooltip("next_token:N", title="next token"),
        alt.Tooltip("next_token_prob:Q", title="its probability", format=".3f"),
        alt.Tooltip("next_token_freq:Q", title="its frequency per million", format=".1f"),
        alt.Tooltip("density:Q", format=".3f"),
    ]


def _points(df: pd.DataFrame, x: alt.X, axis: str, modes: list[str]) -> alt.Chart:
    enc: dict[str, Any] = dict(
        x=x,
        y=alt.Y("density:Q", title=_density_title(axis), scale=alt.Scale(zero=False)),
        color=alt.Color("mode:N", title="ablation mode", scale=style.mode_scale(modes)),
        tooltip=_tooltip(),
    )
    if len(modes) > 1:
        enc["shape"] = alt.Shape("mode:N", title="ablation mode", scale=style.mode_shapes(modes))
    return alt.Chart(df).mark_point(filled=True, size=22, opacity=0.45).encode(**enc)


def _panels(charts: list[Panel], n: int) -> list[Panel]:
    return [style.fit_width(c.properties(usermeta=_usermeta(n))) for c in charts]


def density_position(points: pd.DataFrame, means: pd.DataFrame, axis: str = "log") -> list[Panel]:
    """Density (y) against the context length (x) of every position, and the mean density per context
    length (line), one panel per model; ``points`` from :func:`corpus_tables.position_frame`, ``means``
    from :func:`corpus_tables.position_means`."""
    modes = list(dict.fromkeys(points["mode"]))
    models = list(dict.fromkeys(points["model"])) or [""]
    x = alt.X("n_context:Q", title=CONTEXT_TITLE, scale=alt.Scale(zero=False))
    panels: list[Panel] = []
    for model in models:
        mine = cast(pd.DataFrame, points[points["model"] == model])
        line = (
            alt.Chart(cast(pd.DataFrame, means[means["model"] == model]))
            .mark_line(strokeWidth=2.5)
            .encode(
                x=alt.X("n_context:Q", title=CONTEXT_TITLE),
                y=alt.Y("mean:Q", title=_density_title(axis)),
                color=alt.Color("mode:N", title="ablation mode", scale=style.mode_scale(modes)),
                strokeDash=style.mode_dash(modes),
                tooltip=[
                    alt.Tooltip("mode:N", title="ablation mode"),
                    alt.Tooltip("n_context:Q", title="context"),
                    alt.Tooltip("mean:Q", title="mean density", format=".3f"),
                    alt.Tooltip("n:Q", title="texts"),
                ],
            )
        )
        panels.append((_points(mine, x, axis, modes) + line).properties(title=model, height=PANEL_HEIGHT))
    return _panels(panels, len(points))


def density_frequency(points: pd.DataFrame, axis: str = "log") -> list[Panel]:
    """Density (y) against the next token's log unigram frequency (x), one point per position that has
    one, one panel per model; ``points`` from :func:`corpus_tables.position_frame`."""
    points = cast(pd.DataFrame, points[points["freq_log"].notna()])
    modes = list(dict.fromkeys(points["mode"]))
    models = list(dict.fromkeys(points["model"])) or [""]
    x = alt.X("freq_log:Q", title=FREQUENCY_TITLE, scale=alt.Scale(zero=False))
    panels: list[Panel] = [
        _points(cast(pd.DataFrame, points[points["model"] == m]), x, axis, modes).properties(
            title=m, height=PANEL_HEIGHT
        )
        for m in models
    ]
    return _panels(panels, len(points))
