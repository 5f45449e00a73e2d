"""The Trace page's charts as light specs: each chart's Vega-Lite spec is built once per trace, reading its
per-size rows from named datasets, and a size is drawn by sending that same spec with the size's rows
(computed once per size). The browser then updates the data of a chart it already shows instead of
building it again, and nothing is rebuilt in Python when the slider moves.

:func:`chart_spec` gives the spec of one chart at one size: ``distribution``, ``composition``,
``token_graph``, or ``curves/N`` (the N-th panel of "Error against size",
:func:`explorer.views.target.panels_beside_curves`); :func:`curve_panels` says how many of those there are.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from explorer.results import Trace
from explorer.views import composition, distribution, style, target, token_graph
from explorer.views.stratum_data import per_trace

Rows = dict[str, pd.DataFrame]
DEFAULT_THEME = {"view": {"continuousWidth": 300, "continuousHeight": 300}}


def to_spec(chart) -> dict:
    """An Altair chart as a Vega-Lite dict, without the Altair theme's default sizes (Streamlit leaves
    them out too, and gives the chart the width of its place)."""
    spec = chart.to_dict(validate=False)
    if spec.get("config") == DEFAULT_THEME:
        del spec["config"]
    return spec


def _templates(trace: Trace) -> dict[str, dict]:
    specs = {
        "distribution": to_spec(distribution.template()),
        "composition": to_spec(composition.template()),
    }
    if token_graph.readable(trace):
        specs["token_graph"] = to_spec(token_graph.template(trace))
    for i, panel in enumerate(target.panels_beside_curves(trace, None)):
        specs[f"curves/{i}"] = to_spec(panel)
    return specs


def templates(trace: Trace) -> dict[str, dict]:
    """Every chart's spec without its per-size rows, built once per trace."""
    return per_trace(trace, "specs", lambda: _templates(trace))


ROWS: dict[str, Callable[[Trace, int], Rows]] = {
    "distribution": lambda trace, i: {distribution.DATA: distribution.frame(trace, i)},
    "composition": lambda trace, i: {composition.DATA: composition.frame(trace, i)},
    "token_graph": lambda trace, i: {
        token_graph.DATA: token_graph.edges_frame(trace, i),
        token_graph.NOTE: token_graph.note_frame(trace, i),
    },
    "curves": lambda trace, i: {style.SHOWN_SIZE: style.shown_size(trace.strata[i].size)},
}
"""Per chart (``curves`` for every panel of it): the named datasets of one size."""


def rows(trace: Trace, name: str, index: int) -> Rows:
    """The per-size rows of chart ``name`` at stratum ``index``, computed once per trace and size."""
    kind = name.split("/")[0]
    return per_trace(trace, f"rows/{kind}/{index}", lambda: ROWS[kind](trace, index))


def chart_spec(trace: Trace, name: str, index: int) -> dict:
    """The spec of chart ``name`` at stratum ``index``: the trace's template with the size's rows (for
    ``st.vega_lite_chart``, which moves them into its datasets)."""
    spec = templates(trace)[name]
    return spec | {"datasets": {**spec.get("datasets", {}), **rows(trace, name, index)}}


def curve_panels(trace: Trace) -> list[str]:
    """The names of the "Error against size" panels, in order."""
    return sorted((n for n in templates(trace) if n.startswith("curves/")), key=lambda n: int(n.split("/")[1]))


def warm(trace: Trace) -> None:
    """Build every template and every size's rows now (for a sweep just computed, under its progress bar)."""
    names = list(templates(trace))
    for index in range(len(trace.strata)):
        for name in {n.split("/")[0] for n in names}:
            rows(trace, name, index)
