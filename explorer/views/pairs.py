"""The Prompt pairs page's charts (:mod:`explorer.pairs`), in Altair, without torch or Streamlit.

- :func:`transfer_panels`: ``B``'s own TV (and shared nucleus) against size beside those of ``A``'s
  subgraphs applied to ``B``, on the log size axis with the phases shaded and the shown size marked.
- :func:`diff_panels`: at each size, how many components (heads and MLPs) are in both traces, in ``A``'s
  only, in ``B``'s only, and their Jaccard overlap.
- :func:`grid_panels`: at one size, ``A``'s and ``B``'s components side by side on the model's layer x head
  grid (layers bottom to top, the MLP in the rightmost column, as the node graph places them), each cell
  coloured ``both`` / ``only A`` / ``only B``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import altair as alt
import pandas as pd

from explorer.views import style
from explorer.views.labels import count_label, format_size, size_texts

if TYPE_CHECKING:  # explorer.pairs runs the model (torch); its results are plain dataclasses
    from explorer.pairs import PromptPair, SizeDiff, TraceDiff, Transfer

SERIES = {"own": "B's own trace", "transferred": "A's subgraph on B"}
"""The two curves of :func:`transfer_panels`."""
BOTH, ONLY_A, ONLY_B, ABSENT = "both", "only A", "only B", "not in this trace"
PAIR_COLOURS = {BOTH: "#8e6bbf", ONLY_A: style.TRACE_COLOUR, ONLY_B: "#f58518", ABSENT: "#9d9d9d"}
"""Per share of a component: in both traces (purple), ``A``'s only (the s-trace's blue), ``B``'s only
(orange); a cell of the grid without the component, grey (drawn faint)."""
SERIES_COLOURS = {SERIES["own"]: PAIR_COLOURS[ONLY_B], SERIES["transferred"]: PAIR_COLOURS[ONLY_A]}
"""``B``'s own curve in ``B``'s colour, ``A``'s subgraph's in ``A``'s."""
METRICS = {"tv": "total variation on B (lower is better)", "shared_nucleus": "shared nucleus % (higher is better)"}
CATEGORIES = [BOTH, ONLY_A, ONLY_B]
MLP = "MLP"


def _scale(domain: list[str], colours: dict[str, str]) -> alt.Scale:
    return alt.Scale(domain=domain, range=style.colour_range(domain, colours))


# ------------------------------------------------------------------------------------------ transfer


def transfer_frame(transfer: Transfer) -> pd.DataFrame:
    """Long table: ``size``, ``edges``, ``series`` (:data:`SERIES`' labels), ``metric`` (``tv``,
    ``shared_nucleus``), ``value``, ``top1`` (the distribution's top token) and ``s`` (the size written as
    everywhere else). A size where ``B`` has no stratum of the same edge count has no ``own`` rows."""
    rows = []
    for p in transfer.points:
        for key, out in (("own", p.own), ("transferred", p.transferred)):
            if out is None:
                continue
            for metric in METRICS:
                rows.append((p.size, p.n_edges, SERIES[key], metric, float(getattr(out, metric)), out.top[0].token))
    df = pd.DataFrame(rows, columns=["size", "edges", "series", "metric", "value", "top1"])
    df["s"] = size_texts(df["size"])
    return df


def transfer_panels(transfer: Transfer, size: float | None = None) -> list[style.Panel]:
    """Two panels (TV, shared nucleus) of ``B``'s own trace and ``A``'s subgraphs on ``B`` against size (log
    axis), a rule at ``size`` (none if ``None``), each taking the width the page gives it."""
    df = transfer_frame(transfer)
    lo = style.size_floor(transfer.points[0].size if transfer.points else None)
    series = list(SERIES.values())
    out = []
    for metric, title in METRICS.items():
        lines = (
            alt.Chart(df[df["metric"] == metric])
            .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.8)
            .encode(
                x=style.size_x(lo),
                y=alt.Y("value:Q", title=title, scale=alt.Scale(domain=[0, 1] if metric == "tv" else [0, 100])),
                color=alt.Color(
                    "series:N", title=None, scale=_scale(series, SERIES_COLOURS), legend=style.line_legend()
                ),
                tooltip=[
                    "series",
                    alt.Tooltip("s:N", title="size s"),
                    "edges",
                    alt.Tooltip("value:Q", format=".3f"),
                    alt.Tooltip("top1:N", title="top-1"),
                ],
            )
        )
        layers = [style.phase_shading(lo), lines] + ([style.size_rule(size, lo)] if size is not None else [])
        out.append(style.fit_width(alt.layer(*layers).properties(height=220)))
    return out


# ------------------------------------------------------------------------------------------ diff


def diff_frame(diff: TraceDiff) -> pd.DataFrame:
    """Long table: ``size``, ``s``, ``edges_a``, ``edges_b``, ``category`` (both, only A, only B) and
    ``count`` (components), ``jaccard``."""
    rows = []
    for d in diff.sizes:
        for category, names in ((BOTH, d.both), (ONLY_A, d.only_a), (ONLY_B, d.only_b)):
            rows.append((d.size, d.edges_a, d.edges_b, category, len(names), d.jaccard))
    df = pd.DataFrame(rows, columns=["size", "edges_a", "edges_b", "category", "count", "jaccard"])
    df["s"] = size_texts(df["size"])
    return df


def diff_panels(diff: TraceDiff, size: float | None = None) -> list[style.Panel]:
    """Two panels against size (log axis): the number of components in both traces, in ``A``'s only and in
    ``B``'s only; and their Jaccard overlap ``|both| / |A or B|``; a rule at ``size`` (none if ``None``)."""
    df = diff_frame(diff)
    lo = style.size_floor(diff.sizes[0].size if diff.sizes else None)
    rule = [style.size_rule(size, lo)] if size is not None else []
    tips = [alt.Tooltip("s:N", title="size s"), alt.Tooltip("edges_a:Q", title="edges A")]
    tips.append(alt.Tooltip("edges_b:Q", title="edges B"))
    counts = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.8)
        .encode(
            x=style.size_x(lo),
            y=alt.Y("count:Q", title="components (heads and MLPs)"),
            color=alt.Color(
                "category:N", title=None, scale=_scale(CATEGORIES, PAIR_COLOURS), legend=style.line_legend()
            ),
            tooltip=["category", "count", *tips],
        )
    )
    jaccard = (
        alt.Chart(df[df["category"] == BOTH])
        .mark_line(point=alt.OverlayMarkDef(size=22), strokeWidth=1.8, color=PAIR_COLOURS[BOTH])
        .encode(
            x=style.size_x(lo),
            y=alt.Y("jaccard:Q", title="Jaccard overlap |both| / |A or B|", scale=alt.Scale(domain=[0, 1])),
            tooltip=[alt.Tooltip("jaccard:Q", format=".3f"), *tips],
        )
    )
    return [
        style.fit_width(alt.layer(style.phase_shading(lo), chart, *rule).properties(height=220))
        for chart in (counts, jaccard)
    ]


# ------------------------------------------------------------------------------------------ grid


REFINEMENT = style.PHASES[1][1]  # 0.01: where the traces hold enough components to compare


def most_different(diff: TraceDiff) -> float:
    """The size at which the two traces' components differ most in the refinement phase (from
    :data:`REFINEMENT`; below it each holds a handful, and one different component is half the overlap):
    the lowest Jaccard overlap there, the smallest such size on ties; all sizes if none is that large."""
    sizes = [d for d in diff.sizes if d.size >= REFINEMENT] or diff.sizes
    return min(sizes, key=lambda d: (d.jaccard, d.size)).size


def closest_diff(diff: TraceDiff, size: float) -> SizeDiff:
    """The size of ``diff`` closest to ``size`` on a log scale."""
    target = math.log10(max(size, 1e-12))
    return min(diff.sizes, key=lambda d: abs(math.log10(d.size) - target))


def _cell(name: str) -> tuple[int, str]:
    """``a3.h2`` -> ``(3, "h2")``; ``m5`` -> ``(5, "MLP")``."""
    if name.startswith("m"):
        return int(name[1:]), MLP
    layer, head = name[1:].split(".h")
    return int(layer), f"h{head}"


def grid_frame(pair: PromptPair, size: float) -> pd.DataFrame:
    """One row per trace (``trace``: ``A``, ``B``) and cell of the layer x head grid (``layer``, ``column``:
    ``h0``.. and ``MLP``) at the evaluated size closest to ``size``: ``name`` (``a3.h2``, ``m3``),
    ``category`` (both, only A, only B, or not in this trace), ``edges_a``, ``edges_b`` (the component's
    edges in each trace there), ``s``."""
    d = closest_diff(pair.diff, size)
    shared = {n: BOTH for n in d.both} | {n: ONLY_A for n in d.only_a} | {n: ONLY_B for n in d.only_b}
    counts = []
    for trace in (pair.a, pair.b):
        stratum = min(trace.strata, key=lambda s: abs(math.log10(s.size) - math.log10(d.size)))
        counts.append(stratum.components)
    lay = pair.a.layout
    names = [f"a{l}.h{h}" for l in range(lay.n_layers) for h in range(lay.n_heads)]
    names += [f"m{l}" for l in range(lay.n_layers)]
    rows = []
    for which, held in (("A", (BOTH, ONLY_A)), ("B", (BOTH, ONLY_B))):
        for name in names:
            layer, column = _cell(name)
            category = shared.get(name, ABSENT)
            category = category if category in held else ABSENT
            rows.append((which, layer, column, name, category, counts[0].get(name, 0), counts[1].get(name, 0)))
    df = pd.DataFrame(rows, columns=["trace", "layer", "column", "name", "category", "edges_a", "edges_b"])
    df["s"] = format_size(d.size)
    return df


def grid_panels(pair: PromptPair, size: float) -> list[style.Panel]:
    """``A``'s and ``B``'s components at the evaluated size closest to ``size``, each on the layer x head
    grid (layer 0 at the bottom, the MLP column at the right), coloured both / only A / only B; cells
    without the component faint. One panel per trace, each taking the width the page gives it."""
    df = grid_frame(pair, size)
    lay = pair.a.layout
    columns = [f"h{h}" for h in range(lay.n_heads)] + [MLP]
    domain = [*CATEGORIES, ABSENT]
    d = closest_diff(pair.diff, size)
    out = []
    for which, edges, only in (("A", d.edges_a, d.only_a), ("B", d.edges_b, d.only_b)):
        part = df[df["trace"] == which]
        held = len(d.both) + len(only)
        title = f"{which}: {count_label(held, 'component')} at s = {format_size(d.size)} ({count_label(edges)})"
        cells = (
            alt.Chart(part, title=alt.TitleParams(title, anchor="start", fontSize=12))
            .mark_rect(stroke="#8c8c8c", strokeWidth=0.3, strokeOpacity=0.5)
            .encode(
                x=alt.X("column:O", title="head (MLP at the right)", sort=columns, axis=alt.Axis(labelAngle=0)),
                y=alt.Y("layer:O", title="layer", sort="descending"),
                color=alt.Color(
                    "category:N",
                    title=None,
                    scale=_scale(domain, PAIR_COLOURS),
                    legend=alt.Legend(orient="bottom", symbolType="square", symbolOpacity=1, symbolStrokeWidth=0),
                ),
                opacity=alt.condition(alt.datum.category == ABSENT, alt.value(0.15), alt.value(0.9)),
                tooltip=[
                    "name",
                    "category",
                    alt.Tooltip("edges_a:Q", title="edges in A"),
                    alt.Tooltip("edges_b:Q", title="edges in B"),
                ],
            )
            .properties(height=max(120, 14 * lay.n_layers))
        )
        out.append(style.fit_width(cells))
    return out
