"""What the Corpus and Compare pages share: the choice of results in the sidebar (shipped results, this
session's runs, typed folders; from the URL on a first visit), their loading (cached per state of the
folder's files), the frame of a results page, and the views both pages draw (the mean error curves, the
Spearman tables, the selected prompt)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import streamlit as st

from explorer import DEFAULT_MODEL
from explorer.config import AppConfig
from explorer.corpus.store import Results, find_results, load_results, shipped_root
from explorer.errors import ExplorerError
from explorer.views import corpus_curves
from explorer.views import corpus_tables as ct
from ui.panels import draw_panels
from ui.runs import display_name, is_run, run_folder, short_paths
from ui.safe import code, escape_md, plain
from ui.state import remember_widgets, restore_widgets, section, unexpected_error

RUNS = "corpus_runs"  # this session's runs (on the Corpus page, or from the URL): their names (ui.runs.run_name)
DEFAULT_RESULTS = f"{DEFAULT_MODEL}-kjv40"
"""What the results pages open on: forty-word windows of the King James Bible, the papers' setting (on the
project's prompts, of 2 to 64 tokens, density mostly follows the prompt's length)."""


@dataclass(frozen=True)
class ResultsPage:
    """A results page's sidebar state: widget keys start with ``prefix`` (``{prefix}_results``,
    ``{prefix}_folders``, ``{prefix}_mode``, and the page's own ``widgets``); ``default(offered names)``
    picks the results of a first visit without any in the URL; ``need`` results are required, else
    ``missing`` is said; ``positions``: whether the page shows all-positions runs (others leave them out,
    saying so)."""

    prefix: str
    widgets: tuple[str, ...]
    default: Callable[[list[str]], list[str]]
    need: int
    missing: str
    positions: bool = False

    @property
    def keys(self) -> tuple[str, ...]:
        return (f"{self.prefix}_results", f"{self.prefix}_folders", f"{self.prefix}_mode", *self.widgets)

    @property
    def last(self) -> str:
        return f"{self.prefix}_last_widgets"


@dataclass
class Shown:
    """The results a page shows, the ablation modes shown (one, or both overlaid) and the values of the
    page's own sidebar widgets."""

    results: list[Results]
    modes: list[str]
    options: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- sidebar


def offered_results() -> list[str]:
    """The results a page offers by name: the shipped ones and this session's runs."""
    return [p.name for p in find_results()] + st.session_state.setdefault(RUNS, [])


def init_results_state(cfg: AppConfig, page: ResultsPage) -> None:
    """The state of a results page's sidebar: on a session's first visit from the URL (``results``,
    repeated, and ``mode``), else ``page.default(names offered)``; after a visit to another page, from the
    page's last run."""
    state, prefix = st.session_state, page.prefix
    known = offered_results()
    if f"{prefix}_initialised" not in state:
        state[f"{prefix}_initialised"] = True
        entries = st.query_params.get_all("results")
        if entries:
            runs = state.setdefault(RUNS, [])
            runs += [e for e in dict.fromkeys(entries) if e not in known and is_run(e)]  # runs/... names
            known = offered_results()
            state[f"{prefix}_results"] = [e for e in entries if e in known]
            if cfg.allow_local_paths:
                state[f"{prefix}_folders"] = "\n".join(e for e in entries if e not in known)
        else:
            state[f"{prefix}_results"] = page.default(known)
        if st.query_params.get("mode") in ct.MODE_CHOICES:
            state[f"{prefix}_mode"] = st.query_params["mode"]
    else:
        restore_widgets(page.last)
    state[f"{prefix}_results"] = [s for s in state.get(f"{prefix}_results", []) if s in known]


def results_sidebar(cfg: AppConfig, prefix: str) -> str:
    """The sidebar's choice of results (shipped ones and this session's runs, and typed folders) and of
    the ablation mode shown; returns the mode."""
    sb = st.sidebar
    sb.header("Results")
    sb.multiselect(
        "Shipped results and this session's runs",
        offered_results(),
        key=f"{prefix}_results",
        help="precomputed corpus runs that come with the explorer (one per model and corpus), and "
        "this session's runs on the Corpus page",
    )
    if cfg.allow_local_paths:
        sb.text_area(
            "Results folders, one per line",
            key=f"{prefix}_folders",
            height=80,
            placeholder="~/.cache/s-trace-explorer/runs/...",
            help="folders written by a corpus run (the Corpus page's, or python -m explorer corpus --out)",
        )
    sb.header("View")
    return sb.radio("Ablation mode", list(ct.MODE_CHOICES), format_func=ct.MODE_CHOICES.get, key=f"{prefix}_mode")


# ---------------------------------------------------------------------------------------------- loading


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_results(folder: str, files_signature: tuple) -> Results:
    """A results folder, read once per (folder, state of its files): a run that adds to it reloads it."""
    return load_results(folder)


def chosen_results(cfg: AppConfig, prefix: str) -> list[tuple[str, Path]]:
    """The results a page's sidebar chose, as (name as the user gave it, folder), without repeats:
    shipped results and this session's runs by name (``{prefix}_results``), typed folders by path
    (``{prefix}_folders``, one per line, when the configuration allows local paths)."""
    runs = st.session_state.get(RUNS, [])
    names = st.session_state.get(f"{prefix}_results", [])
    chosen = [(n, (run_folder(n) or Path(n)) if n in runs else shipped_root() / n) for n in names]
    if cfg.allow_local_paths:
        chosen += [
            (line.strip(), Path(line.strip()).expanduser())
            for line in st.session_state.get(f"{prefix}_folders", "").splitlines()
            if line.strip()
        ]
    out, seen = [], set()
    for name, folder in chosen:
        key = str(folder.resolve()) if folder.exists() else str(folder)
        if key not in seen:
            seen.add(key)
            out.append((name, folder))
    return out


def load_chosen(chosen: list[tuple[str, Path]]) -> list[Results]:
    """Load each chosen folder; a bad one shows its error and is left out."""
    results = []
    for name, folder in chosen:
        try:
            results.append(cached_results(str(folder), ct.signature(folder)))
        except ExplorerError as exc:
            st.error(f"Cannot show {code(name)}: {plain(short_paths(str(exc)))}")
        except Exception as exc:
            unexpected_error(f"while reading {code(name)}", exc)
    return results


def share_results_in_url(chosen: list[tuple[str, Path]], mode: str) -> None:
    """Keep the URL's query parameters in step with the results and mode shown."""
    if chosen:
        st.query_params["results"] = [name for name, _ in chosen]
    elif "results" in st.query_params:
        del st.query_params["results"]
    st.query_params["mode"] = mode


# ---------------------------------------------------------------------------------------------- the page


def results_page(
    cfg: AppConfig, page: ResultsPage, title: str, caption: str, before=None, sidebar=None
) -> Shown | None:
    """The frame of a results page: title and caption, the sidebar's state and choice of results (then
    ``sidebar()``'s own widgets, whose values it returns), ``before(cfg)`` drawn above the results (the
    Corpus page's run form), the URL kept in step, the results loaded and a summary of what they hold.
    Returns what is shown, or ``None`` when there is nothing to show (said on the page)."""
    st.title(title)
    st.caption(caption)
    init_results_state(cfg, page)
    if before:
        before(cfg)
    mode = results_sidebar(cfg, page.prefix)
    options = sidebar() if sidebar else {}
    remember_widgets(page.last, page.keys)
    chosen = chosen_results(cfg, page.prefix)
    share_results_in_url(chosen, mode)
    results = load_chosen(chosen)
    if not page.positions:
        for r in (r for r in results if r.all_positions):
            st.info(
                f"{plain(display_name(r.folder))} is an all-positions run (one row per position of each text): "
                "the Corpus page shows it."
            )
        results = [r for r in results if not r.all_positions]
    if len(results) < page.need:
        if not chosen or page.need > 1:  # else every chosen folder failed, and said why
            st.info(page.missing)
        return None
    available = sorted({m for r in results for m in r.modes})
    modes = ct.modes_of(mode, available)
    if not modes:
        st.warning(f"These results hold no {plain(repr(mode))} rows; they hold: {plain(', '.join(available))}.")
        return None
    with st.expander("What these results hold"):
        st.dataframe(ct.summary(results), hide_index=True, width="stretch")
    return Shown(results, modes, options)


# ---------------------------------------------------------------------------------------------- views


def default_note(shown: Shown, page: ResultsPage) -> None:
    """On the results a first visit opens on (:data:`DEFAULT_RESULTS` and those :attr:`ResultsPage.default`
    adds), one line on why: Spearman's rho of density with the prompt's length in tokens, on the
    project's prompts (the default model's shipped run) and on these windows, with their ranges of
    lengths."""
    names = [Path(r.folder).name for r in shown.results]
    if DEFAULT_RESULTS not in names or names != page.default(offered_results()):
        return
    here = shown.results[names.index(DEFAULT_RESULTS)]
    project = shipped_root() / DEFAULT_MODEL
    try:
        own = cached_results(str(project), ct.signature(project))
    except ExplorerError:
        return
    tokens, windows = own.prompts["n_tokens"], here.prompts["n_tokens"]
    st.caption(
        f"Opened on forty-word windows of the King James Bible, the papers' setting: on the project's own "
        f"prompts ({tokens.min()} to {tokens.max()} tokens) density mostly follows the prompt's length "
        f"(Spearman's rho with its tokens {ct.length_correlation(own).rho:+.2f} for {DEFAULT_MODEL}); the "
        f"windows' lengths vary little ({windows.min()} to {windows.max()} tokens; rho "
        f"{ct.length_correlation(here).rho:+.2f})."
    )


def draw_curves(shown: Shown, title: str, caption: str) -> None:
    """The mean error curves of every model shown (one panel each), trace against the controls."""
    section(title, caption, _curves, shown)


def _curves(shown: Shown) -> None:
    draw_panels(corpus_curves.mean_curves(ct.curve_frame(shown.results, shown.modes)))
    if len(shown.modes) > 1:
        st.caption(corpus_curves.DASH_NOTE)


def correlation_table(frame) -> None:
    """A table of Spearman correlations: ``rho`` signed to 3 decimals, ``p`` to 2 significant digits."""
    st.dataframe(
        frame,
        hide_index=True,
        column_config={
            "rho": st.column_config.NumberColumn(format="%+.3f"),
            "p": st.column_config.NumberColumn(format="%.2g"),
        },
    )


def selected_prompt(row: dict | None, heading: str) -> list | None:
    """The point chosen in a scatter plot: ``heading`` (formatted with the row's fields) and its prompt
    text, then four places for its figures (returned), two a row so that a long token fits its metric; a
    caption and ``None`` when no point is selected."""
    if row is None:
        st.caption("No point selected.")
        return None
    st.markdown("**Selected prompt** · " + heading.format(**{k: escape_md(str(v)) for k, v in row.items()}))
    st.text(row["text"])
    return [*st.columns(2), *st.columns(2)]
