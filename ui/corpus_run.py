"""The Corpus page's run form: a small corpus traced on the page, with a progress bar; its results folder
joins this session's runs and is shown. The configuration decides the models, uploads, output folder and
size, the token cap of the run's prompts, and the word window's longest; prompts longer than
:func:`ui.state.max_prompt_chars` characters are left out before anything is tokenised. In demo mode a run
goes to a folder of the session's own (:mod:`ui.runs`) and nothing is replaced; the shipped results are
never written to. :func:`start_corpus_run` is the one call into the corpus driver."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import streamlit as st

from explorer.config import AppConfig
from explorer.corpus.sources import BIBLE, FORTUNES, PROJECT, Corpus, Skipped, read_source
from explorer.corpus.start import CorpusRequest, start_corpus_run
from explorer.errors import BadSource, ExplorerError, OtherRun
from explorer.models.loading import cache_dir
from explorer.options import DEFAULT_SIZES, MODES, WEIGHTINGS
from explorer.results import Settings
from ui.results import RUNS
from ui.runs import is_shipped, run_name, runs_folder, short_paths
from ui.safe import plain
from ui.state import cached_model, max_prompt_chars, model_label, unexpected_error

UPLOAD = "upload"
SOURCES = {
    PROJECT: "the project's prompt set",
    BIBLE: "the King James Bible (Debian bible-kjv)",
    FORTUNES: "fortunes (Debian fortunes)",
    UPLOAD: "an uploaded file (.txt, .csv or .jsonl)",
}
UPLOAD_TYPES = ["txt", "csv", "jsonl"]
QUICK_SIZES = (1e-4, 1e-3, 1e-2, 0.1, 1.0)
GRIDS = {
    "full": f"the {len(DEFAULT_SIZES)}-size grid (the method)",
    "quick": f"quick: {len(QUICK_SIZES)} sizes (coarse densities)",
}


def max_window(cfg: AppConfig) -> int:
    """The longest word window: about what keeps a window under the token cap (English runs to about 1.3
    tokens a word), at most 200 words."""
    return max(1, min(200, cfg.max_prompt_tokens * 3 // 4))


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
                upload = c2.file_uploader(
                    "Corpus file (one prompt per line, or a text column)", type=UPLOAD_TYPES, key="run_upload"
                )
                column = c2.text_input("Text column (CSV, JSONL)", value="text", key="run_column")
            c1, c2, c3 = st.columns(3)
            model = c1.selectbox("Model", list(cfg.models), key="run_model", format_func=model_label)
            other = ""
            if cfg.allow_other_models:
                other = c1.text_input("or a hub id / local folder", key="run_model_other", placeholder="org/name")
            # no max_value: a number over the limit is refused with a message on Run (a widget's maximum
            # would drop it without a word)
            limit = c2.number_input(
                "Prompts (the first N)",
                min_value=1,
                value=min(10, cfg.corpus_max_prompts),
                step=1,
                key="run_limit",
                help=f"at most {cfg.corpus_max_prompts:,} here; a CPU traces a prompt in seconds, a GPU much faster",
            )
            window = c2.number_input(
                "Word window (0: whole texts)",
                min_value=0,
                value=0,
                step=1,
                key="run_window",
                help="cut texts into windows of N words, the next word as the gold target "
                f"(the papers: 40; here at most {max_window(cfg)}, prompts of at most "
                f"{cfg.max_prompt_tokens} tokens)",
            )
            grid = c3.radio("Sizes", list(GRIDS), format_func=GRIDS.get, key="run_grid")
            weighting = c3.selectbox("Edge weight", WEIGHTINGS, key="run_weighting")
            c1, c2, c3 = st.columns(3)
            modes = c1.multiselect("Ablation modes", list(MODES), default=list(MODES), key="run_modes")
            controls = c2.checkbox("Random and inverse controls", value=True, key="run_controls")
            count = c2.checkbox("Token frequencies of the whole source", value=True, key="run_frequencies")
            out = ""
            if cfg.allow_local_paths:
                out = c3.text_input(
                    "Output folder", key="run_out", placeholder=str(cache_dir() / "runs" / "<model>-<source>-<N>")
                )
            overwrite = False  # a demo replaces nothing: its runs go to the session's own folder
            if not cfg.demo:
                overwrite = c3.checkbox("Replace a different run in that folder", key="run_overwrite")
            submitted = st.form_submit_button("Run", type="primary")
        if submitted:
            st.session_state.corpus_run_open = True
            run_now(
                cfg,
                dict(
                    source=source,
                    upload=upload,
                    column=column.strip() or "text",
                    model=other.strip() or model,
                    limit=int(limit),
                    window=int(window) or None,
                    grid=grid,
                    weighting=weighting,
                    modes=modes,
                    controls=controls,
                    count=count,
                    out=out.strip(),
                    overwrite=overwrite,
                ),
            )
        message = st.session_state.get("corpus_run_message")
        if message:
            st.success(message)  # made of plain() parts


def drop_long(corpus: Corpus, limit: int) -> Corpus:
    """The corpus without its prompts of more than ``limit`` characters (listed as skipped rows), before
    anything tokenises them; refused when none is left."""
    long = [q for q in corpus.prompts if len(q.text) > limit]
    if not long:
        return corpus
    if len(long) == len(corpus.prompts):
        raise BadSource(f"every prompt of this source is longer than {limit:,} characters, the limit here")
    skipped = [Skipped(f"prompt {q.id}", f"{len(q.text):,} characters; the limit here is {limit:,}") for q in long]
    return Corpus(corpus.source, [q for q in corpus.prompts if len(q.text) <= limit], [*corpus.skipped, *skipped])


def run_folder_name(p: dict, name: str) -> str:
    """The folder name of a run without an output folder: its model, source, size and grid, and a hash of
    its other settings (so that a run with other settings never meets this one's folder)."""
    window = f"-w{p['window']}" if p["window"] else ""
    rest = json.dumps([p["weighting"], sorted(p["modes"]), p["controls"], p["count"], p["column"]])
    digest = hashlib.sha1(rest.encode()).hexdigest()[:8]
    return slug(f"{p['model']}-{name}-{p['limit']}{window}-{p['grid']}") + "-" + digest


SETTING_WORDS = {
    "weighting": "edge weight",
    "controls": "random and inverse controls",
    "sizes": "sizes",
    "modes": "ablation modes",
    "max_tokens": "token cap",
    "limit": "prompts",
    "window": "word window",
    "column": "text column",
    "model_id": "model",
}
"""The names of a run's settings as the form calls them."""


def other_run_message(cfg: AppConfig, exc: OtherRun) -> str:
    """A refused run (its folder holds another run) in the form's words: what differs, and what to do
    here (another output folder, or the box that replaces the run; in a demo, which replaces nothing,
    another setting)."""
    reason = exc.reason
    for name, words in SETTING_WORDS.items():
        reason = re.sub(rf"\b{name}\b(?= \(|:)", words, reason)
    where = plain(run_name(Path(str(exc.folder))))
    if cfg.demo:
        todo = "runs here replace nothing: change a setting of this run (the number of prompts, say)"
    else:
        todo = "give another output folder, or tick \u201cReplace a different run in that folder\u201d"
    return f"The folder {where} {plain(reason)}. To run this one, {todo}."


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
        bar.progress(
            min(done / max(total, 1), 1.0),
            text=f"{done}/{total} prompts · {plain(message)} ({time.perf_counter() - start:.0f} s)",
        )

    try:
        cfg.check_model(p["model"])
        if p["limit"] > cfg.corpus_max_prompts:
            raise BadSource(
                f"Prompts: runs here take at most {cfg.corpus_max_prompts:,} prompts, not {p['limit']:,}; "
                "give a smaller number"
            )
        if p["window"] is not None and p["window"] > max_window(cfg):
            raise BadSource(
                f"Word window: windows here are at most {max_window(cfg)} words, not {p['window']:,} "
                f"(prompts of at most {cfg.max_prompt_tokens} tokens)"
            )
        folder = Path(p["out"]).expanduser() if p["out"] and not cfg.demo else None
        if folder is not None and is_shipped(folder):
            raise BadSource("the shipped results are read-only: give another output folder")
        if p["source"] == UPLOAD:
            if p["upload"] is None:
                raise BadSource("choose a file to upload, or another source")
            spec, name = save_upload(p["upload"]), Path(p["upload"].name).stem
        else:
            spec, name = p["source"], p["source"]
        corpus = drop_long(
            read_source(spec, limit=p["limit"], window=p["window"], column=p["column"]), max_prompt_chars(cfg)
        )
        bar.progress(0.0, text=f"loading {plain(p['model'])}")
        lm, _ = cached_model(p["model"], cfg.device, cfg.dtype, None, cfg.trust_remote_code)
        sizes = QUICK_SIZES if p["grid"] == "quick" else DEFAULT_SIZES
        settings = Settings(
            weighting=p["weighting"], controls=p["controls"], sizes=sizes, max_tokens=cfg.max_prompt_tokens
        )
        folder = folder or runs_folder(cfg) / run_folder_name(p, name)
        summary = start_corpus_run(
            CorpusRequest(
                model=lm,
                source=corpus,
                out=folder,
                settings=settings,
                modes=tuple(p["modes"]),
                limit=p["limit"],
                window=p["window"],
                column=p["column"],
                frequencies=spec if p["count"] else None,
                freq_column=p["column"],
                overwrite=p["overwrite"] and not cfg.demo,
                progress=progress,
            )
        )
    except OtherRun as exc:
        bar.empty()
        st.error(other_run_message(cfg, exc))
        return
    except ExplorerError as exc:
        bar.empty()
        st.error(plain(short_paths(str(exc))))
        return
    except Exception as exc:
        bar.empty()
        unexpected_error("during the corpus run", exc)
        return
    bar.empty()
    name = run_name(summary.folder)
    failed = f", {len(summary.failed)} skipped ({plain(summary.failed[0][1])})" if summary.failed else ""
    left = summary.source_skipped
    left_out = f"; {len(left)} rows of the source left out ({plain(left[0].reason)})" if left else ""
    st.session_state.corpus_run_message = (
        f"Traced {summary.traced} prompts ({summary.already} already there{failed}) in {summary.seconds:.1f} s"
        f"{left_out}; results in {plain(name)}, now among the results shown."
    )
    runs = st.session_state.setdefault(RUNS, [])
    if name not in runs:
        runs.append(name)
    if name not in st.session_state.get("corpus_results", []):
        st.session_state.corpus_results = [*st.session_state.get("corpus_results", []), name]
