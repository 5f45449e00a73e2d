"""The Corpus page's run form: a small corpus traced on the page, with a progress bar; its results folder
joins this session's runs and is shown. The configuration decides the models, uploads, output folder and
size. :func:`start_corpus_run` is the one call into the corpus driver."""

from __future__ import annotations

import hashlib
import re
import time
import traceback
from pathlib import Path

import streamlit as st

from explorer.config import AppConfig
from explorer.corpus.sources import BIBLE, FORTUNES, PROJECT, read_source
from explorer.corpus.start import CorpusRequest, start_corpus_run
from explorer.errors import BadSource, ExplorerError
from explorer.models.loading import cache_dir
from explorer.options import DEFAULT_SIZES, MODES, WEIGHTINGS
from explorer.results import Settings
from ui.results import RUNS
from ui.state import cached_model

UPLOAD = "upload"
SOURCES = {PROJECT: "the project's prompt set", BIBLE: "the King James Bible (Debian bible-kjv)",
           FORTUNES: "fortunes (Debian fortunes)", UPLOAD: "an uploaded file (.txt, .csv or .jsonl)"}
UPLOAD_TYPES = ["txt", "csv", "jsonl"]
QUICK_SIZES = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
GRIDS = {"full": f"the {len(DEFAULT_SIZES)}-size grid (the method)",
         "quick": f"quick: {len(QUICK_SIZES)} sizes (coarse densities)"}


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
        window = f"-w{p['window']}" if p["window"] else ""
        folder = Path(p["out"]).expanduser() if p["out"] else \
            cache_dir() / "runs" / slug(f"{p['model']}-{name}-{p['limit']}{window}-{p['grid']}")
        summary = start_corpus_run(CorpusRequest(
            model=lm, source=corpus, out=folder, settings=settings, modes=tuple(p["modes"]), limit=p["limit"],
            window=p["window"], column=p["column"], frequencies=spec if p["count"] else None,
            freq_column=p["column"], overwrite=p["overwrite"], progress=progress))
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
    runs = st.session_state.setdefault(RUNS, [])
    if folder not in runs:
        runs.append(folder)
    if folder not in st.session_state.get("corpus_results", []):
        st.session_state.corpus_results = [*st.session_state.get("corpus_results", []), folder]
