"""s-Trace Explorer: the Corpus page.

Load corpus results (the shipped ones, a results folder, or a corpus run from this page) and see, over
the prompts: density against the full model's entropy (one point per prompt; click one to open it on the
Trace page) with Spearman's rho; the mean error curve with its inter-quartile band, trace against the
controls; nucleus recovery; and whether small subgraphs predict frequent tokens. Both ablation modes can be
shown apart or overlaid. The URL's query parameters (``results``, repeated, and ``mode``) reproduce a view.
"""

from __future__ import annotations

import hashlib
import re
import time
import traceback
from pathlib import Path

import pandas as pd
import streamlit as st

from app_state import (
    cached_model, chosen_results, correlation_table, init_results_state, load_chosen, open_in_trace_page,
    page_setup, remember_widgets, results_sidebar, selected_prompt, share_results_in_url, view,
)
from explorer import DEFAULT_MODEL, ExplorerError
from explorer.corpus.run import corpus_frequencies, run_corpus
from explorer.corpus.sources import BIBLE, FORTUNES, PROJECT, read_source
from explorer.config import AppConfig
from explorer.corpus.store import Results
from explorer.errors import BadSource
from explorer.graph import WEIGHTINGS
from explorer.intervene import MODES
from explorer.models.loading import cache_dir
from explorer.search import DEFAULT_SIZES
from explorer.trace import Settings
from explorer.views import corpus_curves, corpus_frames as cf, scatter

UPLOAD = "upload"
SOURCES = {PROJECT: "the project's prompt set", BIBLE: "the King James Bible (Debian bible-kjv)",
           FORTUNES: "fortunes (Debian fortunes)", UPLOAD: "an uploaded file (.txt, .csv or .jsonl)"}
UPLOAD_TYPES = ["txt", "csv", "jsonl"]
QUICK_SIZES = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
GRIDS = {"full": f"the {len(DEFAULT_SIZES)}-size grid (the method)",
         "quick": f"quick: {len(QUICK_SIZES)} sizes (coarse densities)"}
COLOUR_BY = scatter.COLOUR_BY
WIDGETS = ("corpus_results", "corpus_folders", "corpus_mode", "corpus_colour", "corpus_axis")
LAST = "corpus_last_widgets"  # the slot init_results_state restores


def default_results(offered: list[str]) -> list[str]:
    """The default model's shipped results, else the first offered."""
    return [DEFAULT_MODEL] if DEFAULT_MODEL in offered else offered[:1]


def sidebar(cfg: AppConfig) -> dict:
    """The results to show and how to show them."""
    results_sidebar(cfg, "corpus")
    sb = st.sidebar
    sb.header("View")
    mode = sb.radio("Ablation mode", list(cf.MODE_CHOICES), format_func=cf.MODE_CHOICES.get, key="corpus_mode")
    colour = sb.radio("Colour points by", list(COLOUR_BY), format_func=COLOUR_BY.get, key="corpus_colour")
    axis = sb.radio("Density integral", list(cf.AXES), format_func=cf.AXES.get, key="corpus_axis",
                    help="the withdrawn paper integrated TV over linear s")
    return dict(mode=mode, colour=colour, axis=axis)


# ---------------------------------------------------------------------------------------------- running


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:80] or "run"


def save_upload(upload) -> str:
    """Write an uploaded corpus file under the cache folder, named by its content (so that a rerun of the
    same file resumes); return its path. Only text formats are accepted; nothing is unpickled."""
    suffix = Path(upload.name).suffix.lower()
    if suffix.lstrip(".") not in UPLOAD_TYPES:
        raise BadSource(f"{upload.name}: upload a .txt, .csv or .jsonl file")
    data = upload.getvalue()
    folder = cache_dir() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{slug(Path(upload.name).stem)[:40]}-{hashlib.sha1(data).hexdigest()[:12]}{suffix}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def run_form(cfg: AppConfig) -> None:
    """Run a small corpus here: a form, then a progress bar while it runs; the results folder is then
    added to the results shown. The configuration decides the models, uploads, output folder and size."""
    sources = [k for k in SOURCES if k != UPLOAD or cfg.allow_uploads]
    with st.expander("Run a corpus", expanded=bool(st.session_state.get("corpus_run_open"))):
        with st.form("corpus_run"):
            c1, c2 = st.columns(2)
            source = c1.radio("Source", sources, format_func=SOURCES.get, key="run_source")
            upload, column = None, "text"
            if cfg.allow_uploads:
                upload = c2.file_uploader("Corpus file (one prompt per line, or a text column)", type=UPLOAD_TYPES,
                                          key="run_upload")
                column = c2.text_input("Text column (CSV, JSONL)", value="text", key="run_column")
            c1, c2, c3 = st.columns(3)
            model = c1.selectbox("Model", list(cfg.models), key="run_model")
            other = ""
            if cfg.allow_other_models:
                other = c1.text_input("or a hub id / local folder", key="run_model_other", placeholder="org/name")
            limit = c2.number_input("Prompts (the first N)", min_value=1, max_value=cfg.corpus_max_prompts,
                                    value=min(10, cfg.corpus_max_prompts), step=1, key="run_limit",
                                    help="a CPU traces a prompt in seconds; a GPU much faster")
            window = c2.number_input("Word window (0: whole texts)", min_value=0, value=0, step=1, key="run_window",
                                     help="cut texts into windows of N words, the next word as the gold target "
                                     "(the papers: 40)")
            grid = c3.radio("Sizes", list(GRIDS), format_func=GRIDS.get, key="run_grid")
            weighting = c3.selectbox("Edge weight", WEIGHTINGS, key="run_weighting")
            c1, c2, c3 = st.columns(3)
            modes = c1.multiselect("Ablation modes", list(MODES), default=list(MODES), key="run_modes")
            controls = c2.checkbox("Random and inverse controls", value=True, key="run_controls")
            count = c2.checkbox("Token frequencies of the whole source", value=True, key="run_frequencies")
            out = ""
            if cfg.allow_local_paths:
                out = c3.text_input("Output folder", key="run_out",
                                    placeholder=str(cache_dir() / "runs" / "<model>-<source>-<N>"))
            overwrite = c3.checkbox("Replace a different run in that folder", key="run_overwrite")
            submitted = st.form_submit_button("Run", type="primary")
        if submitted:
            st.session_state.corpus_run_open = True
            run_now(cfg, dict(source=source, upload=upload, column=column.strip() or "text",
                         model=other.strip() or model, limit=int(limit), window=int(window) or None, grid=grid,
                         weighting=weighting, modes=modes, controls=controls, count=count, out=out.strip(),
                         overwrite=overwrite))
        message = st.session_state.get("corpus_run_message")
        if message:
            st.success(message)


def run_now(cfg: AppConfig, p: dict) -> None:
    """Run the corpus the form describes, with a progress bar; show any failure as an error. The results
    folder joins this session's runs and is shown."""
    st.session_state.corpus_run_message = None
    if not p["modes"]:
        st.error("Choose at least one ablation mode.")
        return
    bar = st.progress(0.0, text="starting")
    start = time.perf_counter()

    def progress(done: int, total: int, message: str) -> None:
        bar.progress(min(done / max(total, 1), 1.0),
                     text=f"{done}/{total} prompts · {message} ({time.perf_counter() - start:.0f} s)")

    try:
        cfg.check_model(p["model"])
        if p["limit"] > cfg.corpus_max_prompts:
            raise BadSource(f"runs here take at most {cfg.corpus_max_prompts} prompts")
        if p["source"] == UPLOAD:
            if p["upload"] is None:
                raise BadSource("choose a file to upload, or another source")
            spec, name = save_upload(p["upload"]), Path(p["upload"].name).stem
        else:
            spec, name = p["source"], p["source"]
        corpus = read_source(spec, limit=p["limit"], window=p["window"], column=p["column"])
        bar.progress(0.0, text=f"loading {p['model']}")
        lm, _ = cached_model(p["model"], cfg.device, cfg.dtype, None, cfg.trust_remote_code)
        sizes = QUICK_SIZES if p["grid"] == "quick" else DEFAULT_SIZES
        settings = Settings(weighting=p["weighting"], controls=p["controls"], sizes=sizes)
        frequencies = None
        if p["count"]:
            bar.progress(0.0, text=f"counting token frequencies in {name}")
            frequencies = corpus_frequencies(lm, spec, p["column"])
        window = f"-w{p['window']}" if p["window"] else ""
        folder = Path(p["out"]).expanduser() if p["out"] else \
            cache_dir() / "runs" / slug(f"{p['model']}-{name}-{p['limit']}{window}-{p['grid']}")
        summary = run_corpus(lm, corpus, folder, settings, modes=tuple(p["modes"]), frequencies=frequencies,
                             overwrite=p["overwrite"], window=p["window"], column=p["column"], limit=p["limit"],
                             progress=progress)
    except ExplorerError as exc:
        bar.empty()
        st.error(str(exc))
        return
    except Exception as exc:  # noqa: BLE001 - the page must stay usable
        bar.empty()
        st.error(f"Unexpected error during the corpus run: {exc}")
        with st.expander("Details"):
            st.code(traceback.format_exc())
        return
    bar.empty()
    failed = f", {len(summary.failed)} skipped ({summary.failed[0][1]})" if summary.failed else ""
    st.session_state.corpus_run_message = (
        f"Traced {summary.traced} prompts ({summary.already} already there{failed}) in {summary.seconds:.1f} s; "
        f"results in {summary.folder}, now among the results shown.")
    folder = str(summary.folder)
    if folder not in st.session_state.corpus_runs:
        st.session_state.corpus_runs.append(folder)
    if folder not in st.session_state.get("corpus_results", []):
        st.session_state.corpus_results = [*st.session_state.get("corpus_results", []), folder]


# ---------------------------------------------------------------------------------------------- views


@view("Density and entropy", "One point per prompt: how much of the graph it needs (density) against how "
      "uncertain the full model is (entropy). Click a point to see its prompt and open it on the Trace page; "
      "double-click to clear.")
def draw_scatter(results: list[Results], modes: list[str], colour: str, axis: str) -> None:
    table = cf.prompt_table(results, modes)
    points = cf.scatter_frame(table, axis)
    if colour == "frequency" and points["freq_log"].isna().all():
        st.info("These results hold no token frequencies; points are coloured by model.")
        colour = "model"
    event = st.altair_chart(scatter.density_entropy(points, colour, axis), on_select="rerun", key="corpus_scatter",
                            selection_mode=scatter.SELECTION, width="stretch")
    corr = cf.correlations(results, modes, axis)
    st.markdown("**Spearman's rho, density against entropy**")
    correlation_table(corr)
    selected = cf.selected_row(points, (event.selection or {}).get(scatter.SELECTION) if event else None)
    show_selected(selected)


def show_selected(row: dict | None) -> None:
    c = selected_prompt(row, "{model} · ablation: {mode}")
    if c is None:
        return
    c[0].metric("Density", f"{row['density']:.2f}")
    c[1].metric("Entropy (nats)", f"{row['entropy']:.2f}")
    c[2].metric("Full model's top-1", repr(row["full_top1_token"]))
    rec = row["recovery_1"]
    c[3].metric("Top-1 kept from", f"s = {rec:.1e}" if pd.notna(rec) else "never")
    if st.button("Open on the Trace page", key="corpus_open", type="primary"):
        open_in_trace_page(row["model_id"], row["text"], row["mode"], row["weighting"])


@view("Error against size over the corpus", "Mean total variation over the prompts (line) and its "
      "inter-quartile range (band), for the s-trace and the random and inverse controls of the same size. "
      "The trace should sit well below the random control in the construction phase.")
def draw_curves(results: list[Results], modes: list[str]) -> None:
    st.altair_chart(corpus_curves.mean_curves(cf.curve_frame(results, modes)), width="content")
    if len(modes) > 1:
        st.caption(corpus_curves.DASH_NOTE)


@view("Nucleus recovery", "Per k: the share of prompts whose subgraph reproduces the full model's k% nucleus "
      "(same tokens, same order) at some evaluated size, and the smallest size that does.")
def draw_recovery(results: list[Results], modes: list[str]) -> None:
    df = cf.recovery_frame(results, modes)
    st.altair_chart(corpus_curves.recovery(df), width="content")
    with st.expander("Table"):
        st.dataframe(df, hide_index=True, width="stretch", column_config={
            "recovered": st.column_config.NumberColumn(format="percent"),
            **{c: st.column_config.NumberColumn(format="%.1e") for c in ("q25", "median", "q75")}})


@view("Do small subgraphs predict frequent tokens?", "Mean log frequency (unigram counts in a corpus, under the "
      "model's own tokenizer) of the subgraph's top-1 token at each size, against the full model's top-1.")
def draw_frequency(results: list[Results], modes: list[str]) -> None:
    df = cf.frequency_frame(results, modes)
    if df.empty:
        st.info("These results hold no token frequencies (a run counts them when asked to).")
        return
    sources = {r.model_id: r.frequencies.source for r in results if cf.has_frequencies(r)}
    st.caption("Frequencies from: " + "; ".join(f"{m}: {s}" for m, s in sources.items()))
    st.altair_chart(corpus_curves.frequency(df), width="content")
    if len(modes) > 1:
        st.caption(corpus_curves.DASH_NOTE)


def downloads(results: list[Results], modes: list[str]) -> None:
    st.subheader("Per-prompt table")
    table = cf.prompt_table(results, modes)
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("Per-prompt CSV", cf.to_csv(table), file_name="s-trace-corpus.csv", mime="text/csv")
    c2.download_button("Per-prompt Parquet", cf.to_parquet(table), file_name="s-trace-corpus.parquet",
                       mime="application/vnd.apache.parquet")
    with st.expander(f"Table ({len(table)} rows)"):
        st.dataframe(table, hide_index=True, width="stretch")


def main() -> None:
    cfg = page_setup("Corpus")
    st.title("Corpus density")
    st.caption("Density over many prompts: does a prompt that leaves the model uncertain need more of its "
               "computation graph? Load shipped or saved results, or run a small corpus here.")
    init_results_state(cfg, "corpus", default_results)
    run_form(cfg)
    opts = sidebar(cfg)
    remember_widgets(LAST, WIDGETS)
    chosen = chosen_results(cfg, "corpus_results", "corpus_folders")
    share_results_in_url(chosen, opts["mode"])
    if not chosen:
        st.info("Choose results in the sidebar, or run a corpus above.")
        return
    results = load_chosen(chosen)
    if not results:
        return
    available = sorted({m for r in results for m in r.modes})
    modes = cf.modes_of(opts["mode"], available)
    if not modes:
        st.warning(f"These results hold no '{opts['mode']}' rows; they hold: {', '.join(available)}.")
        return
    with st.expander("What these results hold"):
        st.dataframe(cf.summary(results), hide_index=True, width="stretch")
    draw_scatter(results, modes, opts["colour"], opts["axis"])
    draw_curves(results, modes)
    draw_recovery(results, modes)
    draw_frequency(results, modes)
    downloads(results, modes)


main()
