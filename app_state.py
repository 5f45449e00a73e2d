"""Streamlit-side state shared by the pages: the app configuration, the process-wide model cache, the
store of computed sweeps (shared by every session, bounded in memory, one computation per key), the
debug panel, and the hand-off that opens a prompt on the Trace page from another page.

Only the Streamlit files import this module; the work itself is done by :mod:`explorer`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from explorer import Settings, load_model, trace_prompt
from explorer.config import AppConfig, current_config
from explorer.corpus.store import Results, find_results, load_results, shipped_root
from explorer.errors import ExplorerError
from explorer.trace import Trace
from explorer.views.corpus_frames import MODE_CHOICES, signature

TRACE_PAGE = "app.py"
OPEN_REQUEST = "open_trace_request"


@dataclass
class Sweep:
    """A computed trace with what the views need beyond it."""

    trace: Trace
    full_top_probs: np.ndarray | None
    load_s: float
    trace_s: float

    @property
    def nbytes(self) -> int:
        """Memory held, roughly: the edge order and weights dominate (``E`` entries each)."""
        probs = 0 if self.full_top_probs is None else self.full_top_probs.nbytes
        return self.trace.order.nbytes + self.trace.order_weights.nbytes + probs + 64 * 1024


@st.cache_resource(show_spinner=False)
def _config_or_error() -> tuple[AppConfig | None, str | None]:
    try:
        cfg = current_config(sys.argv[1:])
    except ExplorerError as exc:
        return None, str(exc)
    if cfg.cache_dir:
        os.environ["STRACE_CACHE"] = os.path.expanduser(cfg.cache_dir)
    return cfg, None


def app_config() -> AppConfig:
    """The process's configuration (``--config PATH`` after ``--``, or ``$STRACE_CONFIG``); a bad file
    stops the page with its message."""
    cfg, error = _config_or_error()
    if error:
        st.error(f"Configuration error: {error}")
        st.stop()
    return cfg


def page_setup(title: str) -> AppConfig:
    """Page title, layout and, in demo mode, the demo banner; returns the configuration."""
    st.set_page_config(page_title=f"{title} · s-Trace Explorer", layout="wide")
    cfg = app_config()
    if cfg.demo:
        st.info(f"**Demo**: the models {', '.join(cfg.models)}, prompts of at most {cfg.max_prompt_tokens} tokens, "
                f"corpus runs of at most {cfg.corpus_max_prompts} prompts. Run it on your own machine for more.",
                icon=":material/science:")
    return cfg


LOADED: dict[tuple, float] = {}  # what cached_model holds, for the debug panel: key -> load time


@st.cache_resource(max_entries=2, show_spinner=False)
def cached_model(model_id: str, device: str, dtype: str, revision: str | None, trust_remote_code: bool = False):
    """The model, loaded once per process (per id, device, dtype and revision) and shared by every
    session; and the load time. Concurrent sessions asking for the same model wait for one load."""
    start = time.perf_counter()
    lm = load_model(model_id, device=device, dtype=dtype, revision=revision, trust_remote_code=trust_remote_code)
    LOADED[(model_id, device, dtype, revision)] = time.perf_counter() - start
    return lm, time.perf_counter() - start


class SweepStore:
    """The computed sweeps of this process, shared by every session: least recently used first out,
    at most ``max_entries`` and about ``max_bytes``. A sweep is computed once per key: a second session
    asking for a key being computed waits for it instead of computing it again.

    A plain store rather than a cached function, because the progress bar is drawn while a sweep is
    computed and cached functions replay the page elements they touch."""

    def __init__(self, max_entries: int = 8, max_bytes: int = 1 << 30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.items: OrderedDict[tuple, Sweep] = OrderedDict()
        self.pending: dict[tuple, threading.Event] = {}
        self.lock = threading.Lock()

    def get(self, key: tuple) -> Sweep | None:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
            return self.items.get(key)

    def put(self, key: tuple, sweep: Sweep) -> None:
        with self.lock:
            self.items[key] = sweep
            self.items.move_to_end(key)
            while len(self.items) > 1 and (len(self.items) > self.max_entries or self.nbytes > self.max_bytes):
                self.items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.items.values())

    def get_or_compute(self, key: tuple, compute, on_wait=None) -> Sweep:
        """The sweep of ``key``: stored, or computed by ``compute()`` (once, whichever session asks
        first; the others call ``on_wait()`` and wait). A failed computation is retried by the next."""
        while True:
            with self.lock:
                if key in self.items:
                    self.items.move_to_end(key)
                    return self.items[key]
                event = self.pending.get(key)
                if event is None:
                    event = self.pending[key] = threading.Event()
                    break
            if on_wait:
                on_wait()
            event.wait()
        try:
            sweep = compute()
            self.put(key, sweep)
            return sweep
        finally:
            with self.lock:
                self.pending.pop(key, None)
            event.set()


@st.cache_resource(max_entries=1, show_spinner=False)
def sweep_store() -> SweepStore:
    """One store per process, shared by every session."""
    cfg = app_config()
    return SweepStore(max_entries=cfg.cache_max_entries, max_bytes=cfg.cache_max_mb << 20)


def compute_sweep(model_id: str, device: str, dtype: str, revision: str | None, prompt: str,
                  weighting: str, mode: str, controls: bool, compare_modes: bool, progress=None) -> Sweep:
    """The whole size sweep of one prompt, computed once per (model, revision, prompt, settings) for all
    sessions. The configuration's model list and prompt cap apply."""
    cfg = app_config()
    cfg.check_model(model_id)
    key = (model_id, device, dtype, revision, prompt, weighting, mode, controls, compare_modes,
           cfg.max_prompt_tokens)
    report = progress or (lambda frac, msg: None)

    def compute() -> Sweep:
        report(0.0, "loading the model")
        lm, load_s = cached_model(model_id, device, dtype, revision, cfg.trust_remote_code)
        settings = Settings(weighting=weighting, mode=mode, controls=controls, compare_modes=compare_modes,
                            max_tokens=cfg.max_prompt_tokens)
        start = time.perf_counter()
        trace = trace_prompt(lm, prompt, settings, progress=lambda f, m: report(0.05 + 0.85 * f, m))
        probs = np.array([s.trace.full_top_probs for s in trace.strata])
        return Sweep(trace, probs, load_s, time.perf_counter() - start)

    return sweep_store().get_or_compute(key, compute,
                                        on_wait=lambda: report(0.0, "waiting: another session is tracing this prompt"))


def sweep_with_progress(progress_text=None, **inputs) -> Sweep | None:
    """:func:`compute_sweep` under a progress bar; a failure is shown as an error and gives ``None``.
    ``progress_text(fraction, message)`` words the bar (default: the message)."""
    bar = st.progress(0.0, text="starting")
    word = progress_text or (lambda frac, message: message)
    try:
        sweep = compute_sweep(**inputs, progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=word(f, m)))
    except ExplorerError as exc:
        bar.empty()
        st.error(str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - the page must stay usable
        bar.empty()
        st.error(f"Unexpected error while tracing: {exc}")
        with st.expander("Details"):
            st.code(traceback.format_exc())
        return None
    bar.empty()
    return sweep


def view(title: str, caption: str):
    """Decorator: draw one section under a subheader and caption; an unexpected failure shows a message
    in place of the section instead of breaking the page."""
    def wrap(draw):
        def run(*args, **kwargs):
            st.subheader(title)
            st.caption(caption)
            try:
                draw(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001
                st.error(f"This view could not be drawn: {exc}")
        return run
    return wrap


def restore_widgets(slot: str) -> None:
    """Put back the widget values a page saved with :func:`remember_widgets` and Streamlit dropped while
    another page was shown."""
    for key, value in st.session_state.get(slot, {}).items():
        if key not in st.session_state:
            st.session_state[key] = value


def remember_widgets(slot: str, keys) -> None:
    st.session_state[slot] = {k: st.session_state[k] for k in keys if k in st.session_state}


def offered_results() -> list[str]:
    """The results a page offers by name: the shipped ones and this session's runs (``corpus_runs``)."""
    return [p.name for p in find_results()] + st.session_state.setdefault("corpus_runs", [])


def init_results_state(cfg: AppConfig, prefix: str, default) -> None:
    """The state of a results page's sidebar (widget keys ``{prefix}_results``, ``{prefix}_folders``,
    ``{prefix}_mode``): on a session's first visit from the URL (``results``, repeated, and ``mode``),
    else ``default(names offered)``; after a visit to another page, from the page's last run."""
    state = st.session_state
    known = offered_results()
    if f"{prefix}_initialised" not in state:
        state[f"{prefix}_initialised"] = True
        entries = st.query_params.get_all("results")
        if entries:
            state[f"{prefix}_results"] = [e for e in entries if e in known]
            if cfg.allow_local_paths:
                state[f"{prefix}_folders"] = "\n".join(e for e in entries if e not in known)
        else:
            state[f"{prefix}_results"] = default(known)
        if st.query_params.get("mode") in MODE_CHOICES:
            state[f"{prefix}_mode"] = st.query_params["mode"]
    else:
        restore_widgets(f"{prefix}_last_widgets")
    state[f"{prefix}_results"] = [s for s in state.get(f"{prefix}_results", []) if s in known]


def results_sidebar(cfg: AppConfig, prefix: str) -> None:
    """The sidebar's choice of results: shipped ones and this session's runs, and typed folders."""
    sb = st.sidebar
    sb.header("Results")
    sb.multiselect("Shipped results and this session's runs", offered_results(), key=f"{prefix}_results",
                   help="precomputed corpus runs that come with the explorer (one per model and corpus), and "
                   "this session's runs on the Corpus page")
    if cfg.allow_local_paths:
        sb.text_area("Results folders, one per line", key=f"{prefix}_folders", height=80,
                     placeholder="~/.cache/s-trace-explorer/runs/...",
                     help="folders written by a corpus run (the Corpus page's, or python -m explorer corpus --out)")


@st.cache_resource(max_entries=16, show_spinner=False)
def cached_results(folder: str, files_signature: tuple) -> Results:
    """A results folder, read once per (folder, state of its files): a run that adds to it reloads it."""
    return load_results(folder)


def chosen_results(cfg: AppConfig, names_key: str, folders_key: str) -> list[tuple[str, Path]]:
    """The results a page's sidebar chose, as (name as the user gave it, folder), without repeats:
    shipped results and this session's runs by name (``names_key``), typed folders by path
    (``folders_key``, one per line, when the configuration allows local paths)."""
    runs = st.session_state.get("corpus_runs", [])
    chosen = [(n, Path(n) if n in runs else shipped_root() / n) for n in st.session_state.get(names_key, [])]
    if cfg.allow_local_paths:
        chosen += [(line.strip(), Path(line.strip()).expanduser())
                   for line in st.session_state.get(folders_key, "").splitlines() if line.strip()]
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
            results.append(cached_results(str(folder), signature(folder)))
        except ExplorerError as exc:
            st.error(f"Cannot show {name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the page must stay usable
            st.error(f"Cannot show {name}: unexpected error ({exc})")
    return results


def share_results_in_url(chosen: list[tuple[str, Path]], mode: str) -> None:
    """Keep the URL's query parameters in step with the results and mode shown."""
    if chosen:
        st.query_params["results"] = [name for name, _ in chosen]
    elif "results" in st.query_params:
        del st.query_params["results"]
    st.query_params["mode"] = mode


def process_memory_mb() -> float:
    """Resident memory of this process in MiB (Linux ``/proc``; 0 where unavailable)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def debug_panel(sweep: Sweep | None = None) -> None:
    """Per-stage timings, memory and the caches' contents, when the configuration turns it on."""
    if not app_config().debug_panel:
        return
    with st.expander("Debug", expanded=False):
        if sweep is not None:
            st.markdown("**Timings of this sweep (s)**")
            st.json({k: round(v, 4) for k, v in sweep.trace.timings.items()} | {"model load": round(sweep.load_s, 3)})
        mem = {"process RSS (MiB)": round(process_memory_mb(), 1)}
        if torch.cuda.is_available():
            mem["GPU allocated (MiB)"] = round(torch.cuda.memory_allocated() / 2**20, 1)
            mem["GPU peak (MiB)"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        st.markdown("**Memory**")
        st.json(mem)
        store = sweep_store()
        st.markdown(f"**Sweep cache**: {len(store.items)} of {store.max_entries} entries, "
                    f"{store.nbytes / 2**20:.1f} of {store.max_bytes / 2**20:.0f} MiB")
        st.dataframe([{"model": k[0], "prompt": k[4][:60], "weights": k[5], "mode": k[6], "MiB": round(v.nbytes / 2**20, 2)}
                      for k, v in list(store.items.items())], hide_index=True)
        st.markdown("**Models loaded**")
        st.json({f"{k[0]} ({k[1]}, {k[2]})": f"{v:.1f} s" for k, v in LOADED.items()})


def correlation_table(frame) -> None:
    """A table of Spearman correlations: ``rho`` signed to 3 decimals, ``p`` to 2 significant digits."""
    st.dataframe(frame, hide_index=True, column_config={
        "rho": st.column_config.NumberColumn(format="%+.3f"), "p": st.column_config.NumberColumn(format="%.2g")})


def selected_prompt(row: dict | None, heading: str) -> list | None:
    """The point chosen in a scatter plot: ``heading`` (formatted with the row's fields) and its prompt
    text, then four columns for its figures (returned); a caption and ``None`` when no point is selected."""
    if row is None:
        st.caption("No point selected.")
        return None
    st.markdown("**Selected prompt** · " + heading.format(**row))
    st.text(row["text"])
    return st.columns(4)


def open_in_trace_page(model: str, prompt: str, mode: str | None = None, weighting: str | None = None) -> None:
    """Switch to the Trace page showing ``prompt`` on ``model`` (and the given mode and weighting)."""
    st.session_state[OPEN_REQUEST] = {"model": model, "prompt": prompt, "mode": mode, "weighting": weighting}
    st.switch_page(TRACE_PAGE)


def take_open_request() -> dict | None:
    """The pending request of :func:`open_in_trace_page`, removed from the session; ``None`` if none."""
    return st.session_state.pop(OPEN_REQUEST, None)
