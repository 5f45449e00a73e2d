"""The composition strip: at one size, the share of the trace's edges by kind (attention, MLP,
residual) and by quarter of the model's depth."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import layer_quarter, trace_edges

KIND_ORDER = ["attention", "mlp", "residual"]
QUARTERS = ["layers Q1 (first)", "layers Q2", "layers Q3", "layers Q4 (last)"]
COLOURS = [style.KIND_COLOURS[k] for k in KIND_ORDER] + style.QUARTER_COLOURS


def frame(trace: Trace, index: int) -> pd.DataFrame:
    """Rows ``group`` (by kind / by layer quarter), ``part``, ``edges``, ``share``."""
    s = trace.strata[index]
    total = max(s.n_edges, 1)
    rows = [("by kind", k, s.kinds.get(k, 0), s.kinds.get(k, 0) / total) for k in KIND_ORDER]
    q = layer_quarter(trace_edges(trace, index)["layer"], trace.layout.n_layers)
    counts = np.bincount(q, minlength=4)
    rows += [("by layer quarter", QUARTERS[i], int(counts[i]), counts[i] / total) for i in range(4)]
    return pd.DataFrame(rows, columns=["group", "part", "edges", "share"])


def chart(trace: Trace, index: int) -> alt.Chart:
    """One stacked horizontal bar per group, shares summing to 1."""
    df = frame(trace, index)
    parts = KIND_ORDER + QUARTERS
    df["order"] = df["part"].map(parts.index)
    return (
        alt.Chart(df)
        .mark_bar(height=22)
        .encode(
            y=alt.Y("group:N", title=None, sort=["by kind", "by layer quarter"]),
            x=alt.X("share:Q", title="share of the trace's edges", stack="normalize", axis=alt.Axis(format="%")),
            color=alt.Color(
                "part:N",
                title=None,
                scale=alt.Scale(domain=parts, range=COLOURS),
                legend=alt.Legend(orient="bottom", columns=4),
            ),
            order=alt.Order("order:Q"),
            tooltip=["group", "part", "edges", alt.Tooltip("share:Q", format=".1%")],
        )
        .properties(height=90)
    )
