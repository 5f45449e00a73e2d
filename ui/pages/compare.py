"""s-Trace Explorer: the Compare page (``/Compare``).

Two or more models on the same prompts: one model's per-prompt density against another's (click a point to
open its prompt on the Trace page), Spearman's rho for every pair of models, and their mean error curves
side by side. Both ablation modes can be shown apart or overlaid. The URL's query parameters (``results``,
repeated, and ``mode``) reproduce a view.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from explorer import DEFAULT_MODEL
from explorer.corpus.store import Results, RunInfo, shipped_root
from explorer.views import corpus_tables as ct
from explorer.views import scatter
from ui.nav import open_in_trace_page
from ui.results import (
    DEFAULT_RESULTS,
    ResultsPage,
    correlation_table,
    default_note,
    draw_curves,
    results_page,
    selected_prompt,
)
from ui.safe import plain
from ui.state import app_config, view


def _corpus_of(folder: Path) -> tuple:
    run = RunInfo.read(folder)
    return run.source, run.window


def default_results(offered: list[str]) -> list[str]:
    """The shipped results run on the same corpus as :data:`ui.results.DEFAULT_RESULTS` (the default
    model's forty-word windows; else as its project-set run): they share their prompts."""
    corpus = {n: _corpus_of(shipped_root() / n) for n in offered if (shipped_root() / n).is_dir()}
    ref = corpus.get(DEFAULT_RESULTS, corpus.get(DEFAULT_MODEL))
    return [n for n, c in corpus.items() if ref is None or c == ref]


PAGE = ResultsPage(
    "compare",
    ("compare_x", "compare_y"),
    default_results,
    need=2,
    missing="Choose two or more results in the sidebar (shipped, or results folders), run on the "
    "same prompts by different models.",
)


def sharing(results: list[Results], names: list[str], x: str, modes: list[str]) -> str:
    """The first of ``names`` but ``x`` whose results share prompts with ``x``'s (a pair run on the same
    corpus), else the first but ``x``."""
    a = results[names.index(x)]
    others = [n for n in names if n != x]
    for n in others:
        if not ct.pair_frame(a, results[names.index(n)], x, n, modes).empty:
            return n
    return others[0]


@view(
    "Density across models",
    "One point per prompt that both models hold: its density under one model "
    "against the other. Points near the dashed diagonal need as much of either model's graph. Click a "
    "point to see its prompt and open it on the Trace page.",
)
def draw_pair(results: list[Results], names: list[str], modes: list[str]) -> None:
    if len(results) > 2:
        c1, c2, _ = st.columns([1, 1, 2])
        if st.session_state.get("compare_x") not in names:
            st.session_state.compare_x = names[0]
        if st.session_state.get("compare_y") not in names:  # the first that shares prompts with x
            st.session_state.compare_y = sharing(results, names, st.session_state.compare_x, modes)
        x = c1.selectbox("x: model", names, key="compare_x")
        y = c2.selectbox("y: model", names, key="compare_y")
    else:
        x, y = names[0], names[1]
    a, b = results[names.index(x)], results[names.index(y)]
    df = ct.pair_frame(a, b, x, y, modes)
    if df.empty:
        st.info(f"{plain(x)} and {plain(y)} share no prompt in these modes.")
        return
    st.caption(f"{df['text'].nunique()} shared prompts.")
    event = st.altair_chart(
        scatter.density_pair(df),
        on_select="rerun",
        key="compare_scatter",
        selection_mode=scatter.SELECTION,
        width="content",
    )
    points = (event.selection or {}).get(scatter.SELECTION) if event else None
    row = ct.selected_row(df, points, scatter.PAIR_FIELDS)
    c = selected_prompt(row, "ablation: {mode}")
    if c is None or row is None:  # c is None exactly when row is
        return
    c[0].metric(f"Density, {plain(x)}", f"{row['density_a']:.2f}")
    c[1].metric(f"Density, {plain(y)}", f"{row['density_b']:.2f}")
    weights = {id(r): r.run.settings.get("weighting") for r in (a, b)}
    # one button a line, at the width of its label (in a column it would be cut short)
    if st.button(f"Open with {plain(x)} on the Trace page", key="compare_open_a"):
        open_in_trace_page(row["model_id_a"], row["text"], row["mode"], weights[id(a)])
    if st.button(f"Open with {plain(y)} on the Trace page", key="compare_open_b"):
        open_in_trace_page(row["model_id_b"], row["text"], row["mode"], weights[id(b)])


@view(
    "Spearman's rho across models",
    "Rank correlation of per-prompt density for every pair of models, on "
    "the prompts both hold (the papers found 0.26 to 0.71 between ten 7B-14B models).",
)
def draw_table(results: list[Results], modes: list[str]) -> None:
    correlation_table(ct.cross_table(results, modes))


def main() -> None:
    shown = results_page(
        app_config(),
        PAGE,
        "Compare models",
        "Do the prompts that need much of one model's graph also need much of another's? Per-prompt density of "
        "two or more models on the same prompts.",
    )
    if shown is None:
        return
    default_note(shown, PAGE)
    results, modes = shown.results, shown.modes
    draw_pair(results, ct.labels(results), modes)
    draw_table(results, modes)
    draw_curves(
        shown,
        "Error against size, model by model",
        "Mean total variation over each model's prompts "
        "(line) and its inter-quartile range (band), for the s-trace and its controls.",
    )


if __name__ == "__main__":
    main()
