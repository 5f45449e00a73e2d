"""Charts of one component (issue "inspect, intervene"): a head's attention pattern over the prompt with the
trace's edges of that head marked, the tokens its output term promotes and suppresses, and a what-if's
distribution beside the trace's. From :class:`explorer.inspection.Inspection` and
:class:`explorer.whatif.WhatIf`, which the engine computes; no torch here."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from explorer.views import style


def token_label(text: str) -> str:
    """A token's text with whitespace made visible (a space-only token as ``␣``)."""
    text = text.replace("\n", "\\n").replace("\t", "\\t")
    return text.replace(" ", "\u2423") if text.strip() == "" else text.strip()


MAX_PATTERN_TOKENS = 96
"""Longer prompts show the last this many query and key tokens of the pattern."""


def pattern_frame(inspection, max_tokens: int = MAX_PATTERN_TOKENS) -> pd.DataFrame:
    """One row per (query, key) cell of a head's pattern ``[T, T]`` (causal: key <= query): ``query``,
    ``key`` (positions), their token labels, ``prob`` and ``in_trace`` (the trace holds that attention edge
    at the inspected size). Empty for an MLP."""
    pattern = inspection.pattern
    if pattern is None:
        return pd.DataFrame(columns=["query", "key", "query_token", "key_token", "prob", "in_trace"])
    T = pattern.shape[0]
    first = max(0, T - max_tokens)
    kept = {(e.source, e.target) for e in inspection.component.edges}
    q, k = np.tril_indices(T)
    keep = (q >= first) & (k >= first)
    q, k = q[keep], k[keep]
    labels = [f"{i} {token_label(t)}" for i, t in enumerate(inspection.tokens)]
    return pd.DataFrame(
        {
            "query": q,
            "key": k,
            "query_token": [labels[i] for i in q],
            "key_token": [labels[i] for i in k],
            "prob": pattern[q, k].astype(float),
            "in_trace": [(int(s), int(t)) in kept for s, t in zip(k, q)],
        }
    )


def pattern_chart(inspection, max_tokens: int = MAX_PATTERN_TOKENS) -> alt.LayerChart | alt.FacetChart:
    """A head's attention probabilities, query (rows, first token on top) by key (columns); the cells whose
    edge is in the trace at this size are outlined."""
    df = pattern_frame(inspection, max_tokens)
    order = sorted(set(df["query_token"]), key=lambda s: int(s.split(" ", 1)[0]))
    x = alt.X("key_token:N", sort=order, title="key (source token)", axis=alt.Axis(labelAngle=-60, labelLimit=90))
    y = alt.Y("query_token:N", sort=order, title="query (target token)", axis=alt.Axis(labelLimit=90))
    tooltip = [
        alt.Tooltip("query_token:N", title="query"),
        alt.Tooltip("key_token:N", title="key"),
        alt.Tooltip("prob:Q", format=".3f", title="attention"),
        alt.Tooltip("in_trace:N", title="edge in the trace"),
    ]
    cells = (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=x, y=y, color=alt.Color("prob:Q", title="attention", scale=alt.Scale(scheme="blues")), tooltip=tooltip
        )
    )
    marked = (
        alt.Chart(df[df["in_trace"]])
        .mark_rect(fill=None, stroke=style.TRACE_COLOUR, strokeWidth=2)
        .encode(x=x, y=y, tooltip=tooltip)
    )
    # the plot's own height; its width is the column's (axis labels and the legend come on top of both)
    side = max(220, min(560, 18 * len(order)))
    return style.fit_width((cells + marked).properties(height=side, title=f"{inspection.name}: attention pattern"))


def effects_frame(inspection) -> pd.DataFrame:
    """The promoted and suppressed tokens: ``token``, ``logit`` (the term's direct effect), ``effect``."""
    rows = [(token_label(e.token), e.logit, "promotes") for e in inspection.promoted]
    rows += [(token_label(e.token), e.logit, "suppresses") for e in inspection.suppressed]
    return pd.DataFrame(rows, columns=["token", "logit", "effect"])


def effects_chart(inspection) -> alt.Chart:
    """Bars of the direct logit effect of the component's output at the traced position, top and bottom."""
    df = effects_frame(inspection)
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("token:N", sort=alt.EncodingSortField("logit", order="descending"), title=None),
            x=alt.X("logit:Q", title="direct effect on the logit"),
            color=alt.Color(
                "effect:N",
                scale=alt.Scale(domain=["promotes", "suppresses"], range=[style.TRACE_COLOUR, "#c44e52"]),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=["token", alt.Tooltip("logit:Q", format=".3f"), "effect"],
        )
        .properties(height=max(200, 22 * len(df)), title=f"{inspection.name}: tokens its output pushes")
    )
    return style.fit_width(chart)


def whatif_frame(whatif, k: int = 10) -> pd.DataFrame:
    """The top tokens of the full model, the unchanged subgraph and the changed one: ``token``, ``prob``,
    ``which``."""
    rows = []
    for which, out in (("full model", whatif.full), ("subgraph", whatif.base), ("changed", whatif.output)):
        rows += [(token_label(t.token), t.prob, which) for t in out.top[:k]]
    return pd.DataFrame(rows, columns=["token", "prob", "which"])


def whatif_chart(whatif, k: int = 10) -> alt.Chart:
    """The three distributions' top tokens side by side."""
    df = whatif_frame(whatif, k)
    return style.fit_width(
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("token:N", sort="-x", title=None),
            x=alt.X("prob:Q", title="probability"),
            yOffset="which:N",
            color=alt.Color(
                "which:N",
                scale=alt.Scale(
                    domain=["full model", "subgraph", "changed"],
                    range=[style.VARIANT_COLOURS.get("full", "#888888"), style.TRACE_COLOUR, "#c44e52"],
                ),
                legend=alt.Legend(title=None, orient="bottom"),
            ),
            tooltip=["which", "token", alt.Tooltip("prob:Q", format=".4f")],
        )
        .properties(height=max(200, 14 * len(df)))
    )
