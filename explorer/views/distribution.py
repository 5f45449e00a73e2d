"""The output distribution at one size: the full model's top tokens beside the subgraph's probability
for the same tokens, and the subgraph's own top tokens."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from explorer.results import Trace
from explorer.views import style

SOURCES = {"full": "full model", "subgraph": "subgraph"}
COLOURS = [style.FULL_COLOUR, style.SUBGRAPH_COLOUR]


def _clean(token: str) -> str:
    text = token.replace("\n", "\\n")
    return repr(text) if text.strip() == "" or text != text.strip() else text


def frame(trace: Trace, index: int) -> pd.DataFrame:
    """Long table with ``panel`` (``full model's top`` / ``subgraph's top``), ``rank``, ``token``,
    ``source`` (full model / subgraph) and ``prob``.

    The subgraph's probability of the full model's ``j``-th token is its output's
    :attr:`explorer.results.Output.full_top_probs` ``[j]``; an output without them (or shorter) gives one
    only for tokens that are also among the subgraph's own top tokens.
    """
    out = trace.strata[index].trace
    sub = {tp.id: tp.prob for tp in out.top}
    probs = out.full_top_probs
    rows = []
    for j, tp in enumerate(trace.full.top):
        q = float(probs[j]) if j < len(probs) else sub.get(tp.id, np.nan)
        rows.append(("full model's top tokens", j, _clean(tp.token), SOURCES["full"], tp.prob))
        rows.append(("full model's top tokens", j, _clean(tp.token), SOURCES["subgraph"], q))
    full = {tp.id: tp.prob for tp in trace.full.top}
    for j, tp in enumerate(out.top):
        rows.append(("subgraph's top tokens", j, _clean(tp.token), SOURCES["subgraph"], tp.prob))
        rows.append(("subgraph's top tokens", j, _clean(tp.token), SOURCES["full"], full.get(tp.id, np.nan)))
    return pd.DataFrame(rows, columns=["panel", "rank", "token", "source", "prob"])


PANELS = ["full model's top tokens", "subgraph's top tokens"]
DATA = "distribution"


def layout(data: pd.DataFrame | alt.Data) -> alt.HConcatChart:
    """The two panels over ``data`` (:func:`frame`'s rows, or a named dataset), tokens in rank order."""
    panels = []
    for panel in PANELS:
        panels.append(
            alt.Chart(data, title=panel)
            .transform_filter(alt.datum.panel == panel)
            .mark_bar()
            .encode(
                y=alt.Y("token:N", sort=alt.EncodingSortField("rank", op="min"), title=None),
                yOffset=alt.YOffset("source:N", sort=list(SOURCES.values())),
                x=alt.X("prob:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color(
                    "source:N",
                    title=None,
                    sort=list(SOURCES.values()),
                    scale=alt.Scale(domain=list(SOURCES.values()), range=COLOURS),
                    legend=alt.Legend(orient="bottom"),
                ),
                tooltip=[alt.Tooltip("token:N"), alt.Tooltip("source:N"), alt.Tooltip("prob:Q", format=".4f")],
            )
            .properties(width=150, height=alt.Step(9))
        )
    return alt.hconcat(*panels).resolve_scale(y="independent")


def chart(trace: Trace, index: int) -> alt.HConcatChart:
    """Two bar panels side by side, full model (grey) and subgraph (blue) bars for each token."""
    return layout(frame(trace, index))


def template() -> alt.HConcatChart:
    """:func:`chart` reading its rows from the named dataset :data:`DATA`."""
    return layout(alt.Data(name=DATA))
