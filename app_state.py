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
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

from explorer import Settings, load_model, trace_prompt
from explorer.config import AppConfig, current_config
from explorer.errors import ExplorerError
from explorer.trace import Trace

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


def open_in_trace_page(model: str, prompt: str, mode: str | None = None, weighting: str | None = None) -> None:
    """Switch to the Trace page showing ``prompt`` on ``model`` (and the given mode and weighting)."""
    st.session_state[OPEN_REQUEST] = {"model": model, "prompt": prompt, "mode": mode, "weighting": weighting}
    st.switch_page(TRACE_PAGE)


def take_open_request() -> dict | None:
    """The pending request of :func:`open_in_trace_page`, removed from the session; ``None`` if none."""
    return st.session_state.pop(OPEN_REQUEST, None)
