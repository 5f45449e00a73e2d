"""The composition strip: at one size, the share of the trace's edges by kind (attention, MLP,
residual) and by quarter of the model's depth, as two stacked bars one above the other, each with its
legend and tooltips. :func:`chart` draws one size; :func:`template` is the same chart reading its rows from
the named dataset :data:`DATA` (the app sends each size's rows, :func:`frame`, to one spec)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from explorer.results import Trace
from explorer.views import style
from explorer.views.stratum_data import strata_data

KIND_ORDER = ["attention", "mlp", "residual"]
QUARTERS = ["layers Q1 (first)", "layers Q2", "layers Q3", "layers Q4 (last)"]
GROUPS = {
    "by kind": (KIND_ORDER, [style.KIND_COLOURS[k] for k in KIND_ORDER]),
    "by layer quarter": (QUARTERS, style.QUARTER_COLOURS),
}
DATA = "composition"


def frame(trace: Trace, index: int) -> pd.DataFrame:
    """Rows ``group`` (by kind / by layer quarter), ``part``, ``edges``, ``share``, ``order``."""
    s = trace.strata[index]
    total = max(s.n_edges, 1)
    rows = [("by kind", k, s.kinds.get(k, 0), s.kinds.get(k, 0) / total, i) for i, k in enumerate(KIND_ORDER)]
    counts = strata_data(trace)[index].quarters
    rows += [("by layer quarter", QUARTERS[i], int(counts[i]), counts[i] / total, i) for i in range(4)]
    return pd.DataFrame(rows, columns=["group", "part", "edges", "share", "order"])


def layout(data: pd.DataFrame | alt.Data) -> alt.VConcatChart:
    """The two bars over ``data`` (:func:`frame`'s rows, or a named dataset), shares summing to 1."""
    bars = []
    for group, (parts, colours) in GROUPS.items():
        bars.append(
            alt.Chart(data, title=alt.Title(group, anchor="start", fontSize=12, fontWeight="normal"))
            .transform_filter(alt.datum.group == group)
            .mark_bar(height=20)
            .encode(
                x=alt.X(
                    "share:Q",
                    title=None,
                    stack="normalize",
                    axis=alt.Axis(format="%", labels=group == "by layer quarter"),
                ),
                color=alt.Color(
                    "part:N",
                    title=None,
                    scale=alt.Scale(domain=parts, range=colours),
                    legend=alt.Legend(orient="right", labelLimit=130),
                ),
                order=alt.Order("order:Q"),
                tooltip=[
                    alt.Tooltip("group:N"),
                    alt.Tooltip("part:N"),
                    alt.Tooltip("edges:Q", format=","),
                    alt.Tooltip("share:Q", format=".1%"),
                ],
            )
            .properties(height=26)
        )
    return alt.vconcat(*bars, spacing=8).resolve_scale(color="independent")


def chart(trace: Trace, index: int) -> alt.VConcatChart:
    """The two bars at stratum ``index``."""
    return layout(frame(trace, index))


def template() -> alt.VConcatChart:
    """:func:`chart` reading its rows from the named dataset :data:`DATA`."""
    return layout(alt.Data(name=DATA))
