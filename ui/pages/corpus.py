"""s-Trace Explorer: the Corpus page (``/Corpus``).

Load corpus results (the shipped ones, a results folder, or a corpus run from this page) and see, over
the prompts: density against the full model's entropy (one point per prompt; click one to open it on the
Trace page) with Spearman's rho; the mean error curve with its inter-quartile band, trace against the
controls; nucleus recovery; and whether small subgraphs predict frequent tokens. An all-positions run
(``corpus --all-positions``) shows instead, over every position of every text, density against the
position's context length and against the next token's unigram frequency, with Spearman's rho. Both
ablation modes can be shown apart or overlaid. The URL's query parameters (``results``, repeated, and
``mode``) reproduce a view.
"""

from __future__ import annotations

from typing import cast

import pandas as pd
import streamlit as st

from explorer import DEFAULT_MODEL
from explorer.corpus import stats
from explorer.corpus.store import Results
from explorer.views import corpus_curves, positions, scatter
from explorer.views import corpus_tables as ct
from explorer.views.labels import format_size
from ui.corpus_run import run_form
from ui.nav import open_in_trace_page
from ui.panels import draw_panels
from ui.results import (
    DEFAULT_RESULTS,
    ResultsPage,
    Shown,
    correlation_table,
    default_note,
    draw_curves,
    results_page,
    selected_prompt,
)
from ui.safe import plain
from ui.state import app_config, view

COLOUR_BY = scatter.COLOUR_BY


def default_results(offered: list[str]) -> list[str]:
    """The default model's shipped forty-word windows (:data:`ui.results.DEFAULT_RESULTS`), else its
    shipped project-set run, else the first offered."""
    for name in (DEFAULT_RESULTS, DEFAULT_MODEL):
        if name in offered:
            return [name]
    return offered[:1]


PAGE = ResultsPage(
    "corpus",
    ("corpus_colour", "corpus_axis"),
    default_results,
    need=1,
    missing="Choose results in the sidebar, or run a corpus above.",
    positions=True,
)


def sidebar() -> dict:
    """How to show the results, beside the shared choice of results and mode."""
    sb = st.sidebar
    colour = sb.radio("Colour points by", list(COLOUR_BY), format_func=COLOUR_BY.get, key="corpus_colour")
    axis = sb.radio(
        "Density integral",
        list(ct.AXES),
        format_func=ct.AXES.get,
        key="corpus_axis",
        help="the withdrawn paper integrated TV over linear s",
    )
    return dict(colour=colour, axis=axis)


@view(
    "Density and entropy",
    "One point per prompt: how much of the graph it needs (density) against how "
    "uncertain the full model is (entropy). Click a point to see its prompt and open it on the Trace page; "
    "double-click to clear.",
)
def draw_scatter(results: list[Results], modes: list[str], colour: str, axis: str) -> None:
    table = ct.prompt_table(results, modes)
    points = ct.scatter_frame(table, axis)
    if colour == "frequency" and cast(pd.Series, points["freq_log"]).isna().all():
        st.info("These results hold no token frequencies; points are coloured by model.")
        colour = "model"
    event = st.altair_chart(
        scatter.density_entropy(points, colour, axis),
        on_select="rerun",
        key="corpus_scatter",
        selection_mode=scatter.SELECTION,
        width="stretch",
    )
    corr = ct.correlations(results, modes, axis)
    st.markdown("**Spearman's rho, density against entropy**")
    correlation_table(corr)
    selected = ct.selected_row(points, (event.selection or {}).get(scatter.SELECTION) if event else None)
    show_selected(selected)


def show_selected(row: dict | None) -> None:
    c = selected_prompt(row, "{model} · ablation: {mode}")
    if c is None or row is None:  # c is None exactly when row is
        return
    c[0].metric("Density", f"{row['density']:.2f}")
    c[1].metric("Entropy (nats)", f"{row['entropy']:.2f}")
    c[2].metric("Full model's top-1", plain(repr(row["full_top1_token"])))
    rec = row["recovery_1"]
    c[3].metric(
        "Top-1 first kept at",
        f"s = {format_size(rec)}" if pd.notna(rec) else "never",
        help="the smallest evaluated size whose subgraph's top-1 is the full model's",
    )
    if st.button("Open on the Trace page", key="corpus_open", type="primary"):
        open_in_trace_page(row["model_id"], row["text"], row["mode"], row["weighting"])


@view(
    "Nucleus recovery",
    "Per k: the share of prompts whose subgraph reproduces the full model's k% nucleus "
    "(same tokens, same order) by s = 0.01 (the end of the construction phase), by 0.1 and by 0.4, and "
    "the smallest size that does (median and quartiles). At s = 1 the subgraph is the whole model, so (nearly) "
    "every prompt reaches every k at some size: the table also gives that share.",
)
def draw_recovery(results: list[Results], modes: list[str]) -> None:
    draw_panels(corpus_curves.recovery(ct.recovery_by_frame(results, modes), ct.recovery_frame(results, modes)))
    with st.expander("Table"):
        table = ct.recovery_table(results, modes)
        shares = [c for c in table.columns if c.startswith("by s = ") or c == "at some size"]
        st.dataframe(
            table,
            hide_index=True,
            width="stretch",
            column_config={c: st.column_config.NumberColumn(format="percent") for c in shares},
        )


@view(
    "Do small subgraphs predict frequent tokens?",
    "Mean log frequency (unigram counts in a corpus, under the "
    "model's own tokenizer) of the subgraph's top-1 token at each size, against the full model's top-1.",
)
def draw_frequency(results: list[Results], modes: list[str]) -> None:
    df = ct.frequency_frame(results, modes)
    if df.empty:
        st.info("These results hold no token frequencies (a run counts them when asked to).")
        return
    sources = {r.model_id: r.frequencies.source for r in results if r.frequencies is not None and ct.has_frequencies(r)}
    st.caption("Frequencies from: " + "; ".join(f"{plain(m)}: {plain(s)}" for m, s in sources.items()))
    draw_panels(corpus_curves.frequency(df))
    if len(modes) > 1:
        st.caption(corpus_curves.DASH_NOTE)


GRID_NOTE = (
    "A short context has few edges, and a size whose edge count rounds to 0 is not evaluated: its density "
    "integrates over fewer decades of s, so it is lower (the steps at the left). Tick the box above to keep "
    "only the positions that evaluate every size of the grid."
)


@view(
    "Density along the context",
    "Every position of every text of an all-positions run: how much of the graph "
    "the prediction after that token needs (density) against how many tokens it sees. The line is the mean "
    "over the texts at each context length.",
)
def draw_positions(
    results: list[Results], modes: list[str], points: pd.DataFrame, corr: pd.DataFrame, axis: str, full_grid: bool
) -> None:
    means = ct.position_means(results, modes, axis, full_grid)
    draw_panels(positions.density_position(points, means, axis), most=2)
    if not full_grid:
        st.caption(GRID_NOTE)
    st.markdown("**Spearman's rho, density against context length**")
    correlation_table(corr[corr["against"] == stats.POSITION_AGAINST["position"]].reset_index(drop=True))


@view(
    "Density and the next token's frequency",
    "The same positions: density against the unigram frequency "
    "of the token that follows (counted in the run's frequency corpus with the model's tokenizer). The last "
    "position of a text has no next token and is left out.",
)
def draw_position_frequency(points: pd.DataFrame, corr: pd.DataFrame, axis: str) -> None:
    if cast(pd.Series, points["freq_log"]).isna().all():
        st.info("These results hold no token frequencies (a run counts them when asked to).")
        return
    draw_panels(positions.density_frequency(points, axis), most=2)
    st.markdown("**Spearman's rho, density against the next token's log frequency**")
    correlation_table(corr[corr["against"] == stats.POSITION_AGAINST["next_frequency"]].reset_index(drop=True))


def draw_all_positions(results: list[Results], modes: list[str], axis: str) -> None:
    """The views of all-positions runs, over every position or only those that evaluate the whole grid."""
    full_grid = st.checkbox(
        "Only positions that evaluate every size of the grid",
        key="corpus_full_grid",
        help="leaves out the short contexts whose smallest sizes have no edge",
    )
    st.caption(ct.grid_note(results, modes))
    points = ct.position_frame(results, modes, axis, full_grid)
    corr = ct.position_correlations(results, modes, axis, full_grid)
    draw_positions(results, modes, points, corr, axis, full_grid)
    draw_position_frequency(points, corr, axis)
    position_downloads(results, modes)


def table_downloads(table, label: str, stem: str) -> None:
    """The per-row table as CSV and Parquet downloads, under a subheader."""
    st.subheader(f"Per-{label} table")
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button(f"Per-{label} CSV", ct.to_csv(table), file_name=f"{stem}.csv", mime="text/csv")
    c2.download_button(
        f"Per-{label} Parquet",
        ct.to_parquet(table),
        file_name=f"{stem}.parquet",
        mime="application/vnd.apache.parquet",
    )


def position_downloads(results: list[Results], modes: list[str]) -> None:
    table_downloads(ct.position_table(results, modes), "position", "s-trace-positions")


def downloads(results: list[Results], modes: list[str]) -> None:
    table = ct.prompt_table(results, modes)
    table_downloads(table, "prompt", "s-trace-corpus")
    with st.expander(f"Table ({len(table)} rows)"):
        st.dataframe(table, hide_index=True, width="stretch")


def main() -> None:
    shown = results_page(
        app_config(),
        PAGE,
        "Corpus density",
        "Density over many prompts: does a prompt that leaves the model uncertain need more of its computation "
        "graph? Load shipped or saved results, or run a small corpus here.",
        before=run_form,
        sidebar=sidebar,
    )
    if shown is None:
        return
    default_note(shown, PAGE)
    per_prompt, every = ct.position_runs(shown.results)
    if per_prompt:
        draw_per_prompt(Shown(per_prompt, shown.modes, shown.options))
    if every:  # all-positions runs: density along the context and against the next token's frequency
        draw_all_positions(every, shown.modes, shown.options["axis"])


def draw_per_prompt(shown: Shown) -> None:
    """The views of normal runs: one row per prompt, mode and size."""
    results, modes = shown.results, shown.modes
    draw_scatter(results, modes, shown.options["colour"], shown.options["axis"])
    draw_curves(
        shown,
        "Error against size over the corpus",
        "Mean total variation over the prompts (line) and "
        "its inter-quartile range (band), for the s-trace and the random and inverse controls of the same "
        "size. The trace should sit well below the random control in the construction phase.",
    )
    draw_recovery(results, modes)
    draw_frequency(results, modes)
    downloads(results, modes)


if __name__ == "__main__":
    main()
