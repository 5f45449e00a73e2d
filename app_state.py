"""Streamlit-side state shared by the pages: the process-wide model cache, the store of computed sweeps,
and the hand-off that opens a prompt on the Trace page from another page.

Only the Streamlit files import this module; the work itself is done by :mod:`explorer`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import streamlit as st

from explorer import Settings, load_model, trace_prompt
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


@st.cache_resource(max_entries=2, show_spinner=False)
def cached_model(model_id: str, device: str, dtype: str, revision: str | None):
    """The model, loaded once per process (per id, device, dtype and revision); and the load time."""
    start = time.perf_counter()
    lm = load_model(model_id, device=device, dtype=dtype, revision=revision)
    return lm, time.perf_counter() - start


class SweepStore:
    """The last few sweeps of this process, keyed by (model, device, dtype, revision, prompt, settings).

    A plain bounded store rather than a cached function, because the progress bar is drawn while a sweep
    is computed and cached functions replay the page elements they touch."""

    def __init__(self, max_entries: int = 8):
        self.max_entries = max_entries
        self.items: OrderedDict[tuple, Sweep] = OrderedDict()
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
            while len(self.items) > self.max_entries:
                self.items.popitem(last=False)


@st.cache_resource(max_entries=1, show_spinner=False)
def sweep_store() -> SweepStore:
    """One store per process, shared by every session."""
    return SweepStore(max_entries=8)


def compute_sweep(model_id: str, device: str, dtype: str, revision: str | None, prompt: str,
                  weighting: str, mode: str, controls: bool, compare_modes: bool, progress=None) -> Sweep:
    """The whole size sweep of one prompt, computed once per (model, revision, prompt, settings)."""
    key = (model_id, device, dtype, revision, prompt, weighting, mode, controls, compare_modes)
    store = sweep_store()
    found = store.get(key)
    if found is not None:
        return found
    report = progress or (lambda frac, msg: None)
    report(0.0, "loading the model")
    lm, load_s = cached_model(model_id, device, dtype, revision)
    settings = Settings(weighting=weighting, mode=mode, controls=controls, compare_modes=compare_modes)
    start = time.perf_counter()
    trace = trace_prompt(lm, prompt, settings, progress=lambda f, m: report(0.05 + 0.85 * f, m))
    probs = np.array([s.trace.full_top_probs for s in trace.strata])
    sweep = Sweep(trace, probs, load_s, time.perf_counter() - start)
    store.put(key, sweep)
    return sweep


def open_in_trace_page(model: str, prompt: str, mode: str | None = None, weighting: str | None = None) -> None:
    """Switch to the Trace page showing ``prompt`` on ``model`` (and the given mode and weighting)."""
    st.session_state[OPEN_REQUEST] = {"model": model, "prompt": prompt, "mode": mode, "weighting": weighting}
    st.switch_page(TRACE_PAGE)


def take_open_request() -> dict | None:
    """The pending request of :func:`open_in_trace_page`, removed from the session; ``None`` if none."""
    return st.session_state.pop(OPEN_REQUEST, None)
