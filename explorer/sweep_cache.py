"""The app's store of computed sweeps, in plain Python (the Streamlit side, :mod:`ui.state`, holds one per
process): a :class:`SweepRequest` names a sweep, a :class:`Sweep` is what was computed for it, and
:class:`SweepStore` keeps them for every session, bounded in entries and bytes, computing each request
once even when several sessions ask for it at the same time. The Text strip page's computations are kept
the same way, in a store of their own: a :class:`StripRequest` names one (a text, or a prompt and how to
continue it), a :class:`Strip` is its result.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from explorer.results import Settings, TextTrace, Trace


@dataclass(frozen=True)
class SweepRequest:
    """Everything that decides a sweep: the model (id, device, dtype, revision, whether its own code may
    run), the prompt, the trace's settings (the configuration's token cap included), the gold next
    token, and the traced ``position`` (``None``: the last), ``target`` and ``foil`` (``None``: the
    defaults of :func:`explorer.trace.trace_prompt`). Frozen and hashable: the store's key."""

    model: str
    device: str
    dtype: str
    revision: str | None
    prompt: str
    settings: Settings
    gold: str | None = None
    trust_remote_code: bool = False
    position: int | None = None
    target: str | None = None
    foil: str | None = None


@dataclass
class Sweep:
    """A computed trace with its timings: the model's load and the trace itself, in seconds. A page's copy
    also says how it got it: ``cached`` (found in the store, computed before, by this session or
    another) and ``fetch_s`` (the seconds that took)."""

    trace: Trace
    load_s: float
    trace_s: float
    cached: bool = False
    fetch_s: float = 0.0

    @property
    def nbytes(self) -> int:
        """Memory held, roughly: the edge order and weights dominate (``E`` entries each)."""
        return self.trace.order.nbytes + self.trace.order_weights.nbytes + 64 * 1024


class HasBytes(Protocol):
    @property
    def nbytes(self) -> int: ...


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=HasBytes)


class SweepStore(Generic[K, V]):
    """The computed sweeps of a process, shared by every session: least recently used first out, at most
    ``max_entries`` and about ``max_bytes`` (the newest is kept even when it alone is larger). A sweep is
    computed once per request: a second session asking for a request being computed waits for it
    instead of computing it again. Keys are requests (:class:`SweepRequest`, :class:`StripRequest`),
    values what was computed for them (:class:`Sweep`, :class:`Strip`: anything with ``nbytes``).

    A plain store rather than a cached function, because the app draws a progress bar while a sweep is
    computed and Streamlit's cached functions replay the page elements they touch."""

    def __init__(self, max_entries: int = 8, max_bytes: int = 1 << 30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.items: OrderedDict[K, V] = OrderedDict()
        self.pending: dict[K, threading.Event] = {}
        self.lock = threading.Lock()

    def get(self, request: K) -> V | None:
        with self.lock:
            if request in self.items:
                self.items.move_to_end(request)
            return self.items.get(request)

    def put(self, request: K, sweep: V) -> None:
        with self.lock:
            self.items[request] = sweep
            self.items.move_to_end(request)
            while len(self.items) > 1 and (len(self.items) > self.max_entries or self.nbytes > self.max_bytes):
                self.items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.items.values())

    def get_or_compute(self, request: K, compute: Callable[[], V], on_wait: Callable[[], None] | None = None) -> V:
        """The sweep of ``request``: stored, or computed by ``compute()`` (once, whichever session asks
        first; the others call ``on_wait()`` and wait). A failed computation is retried by the next."""
        while True:
            with self.lock:
                if request in self.items:
                    self.items.move_to_end(request)
                    return self.items[request]
                event = self.pending.get(request)
                if event is None:
                    event = self.pending[request] = threading.Event()
                    break
            if on_wait:
                on_wait()
            event.wait()
        try:
            sweep = compute()
            self.put(request, sweep)
            return sweep
        finally:
            with self.lock:
                self.pending.pop(request, None)
            event.set()


# ---------------------------------------------------------------------------------------- text strips


@dataclass(frozen=True)
class Generation:
    """How a prompt is continued before its strip is traced (:func:`explorer.text.trace_continuation`):
    ``n_tokens`` tokens, greedy or sampled at ``temperature`` from the nucleus ``top_p`` with ``seed``.
    The default is the authors' setting: 20 tokens sampled with top-p 0.6."""

    n_tokens: int = 20
    greedy: bool = False
    temperature: float = 1.0
    top_p: float = 0.6
    seed: int = 0


@dataclass(frozen=True)
class StripRequest:
    """Everything that decides a Text strip: the model (as :class:`SweepRequest`), the settings, and
    ``text``: the text traced at every position, or, with ``generation``, the prompt it continues (then
    every generated token's prediction is traced). Frozen and hashable: the strip store's key."""

    model: str
    device: str
    dtype: str
    revision: str | None
    text: str
    settings: Settings
    generation: Generation | None = None
    trust_remote_code: bool = False


@dataclass
class Strip:
    """A computed strip: the text's per-position summaries (``text``, its traces dropped to save memory),
    ``tv``: each traced position's TV at each evaluated size (:func:`explorer.views.strip.position_tv`),
    and the model's load and the strip's time, in seconds."""

    text: TextTrace
    tv: dict[int, dict[float, float]] = field(default_factory=dict)
    load_s: float = 0.0
    trace_s: float = 0.0

    @classmethod
    def of(cls, text: TextTrace, load_s: float = 0.0, trace_s: float = 0.0) -> Strip:
        """The strip of a traced text: its TV table taken from its traces, which are then let go."""
        tv = {t: {s.size: s.trace.tv for s in tr.strata} for t, tr in text.traces.items()}
        text.traces = {}
        return cls(text, tv, load_s, trace_s)

    @property
    def nbytes(self) -> int:
        """Memory held, roughly: a few hundred bytes per position and size, and the summaries."""
        return 64 * 1024 + 200 * len(self.text.positions) + 100 * sum(len(v) for v in self.tv.values())
