"""The app's store of computed sweeps, in plain Python (the Streamlit side, :mod:`ui.state`, holds one per
process): a :class:`SweepRequest` names a sweep, a :class:`Sweep` is what was computed for it, and
:class:`SweepStore` keeps them for every session, bounded in entries and bytes, computing each request
once even when several sessions ask for it at the same time.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from explorer.results import Settings, Trace


@dataclass(frozen=True)
class SweepRequest:
    """Everything that decides a sweep: the model (id, device, dtype, revision, whether its own code may
    run), the prompt, the trace's settings (the configuration's token cap included) and the gold next
    token. Frozen and hashable: the store's key."""

    model: str
    device: str
    dtype: str
    revision: str | None
    prompt: str
    settings: Settings
    gold: str | None = None
    trust_remote_code: bool = False


@dataclass
class Sweep:
    """A computed trace with its timings: the model's load and the trace itself, in seconds."""

    trace: Trace
    load_s: float
    trace_s: float

    @property
    def nbytes(self) -> int:
        """Memory held, roughly: the edge order and weights dominate (``E`` entries each)."""
        return self.trace.order.nbytes + self.trace.order_weights.nbytes + 64 * 1024


class SweepStore:
    """The computed sweeps of a process, shared by every session: least recently used first out, at most
    ``max_entries`` and about ``max_bytes`` (the newest is kept even when it alone is larger). A sweep is
    computed once per request: a second session asking for a request being computed waits for it
    instead of computing it again.

    A plain store rather than a cached function, because the app draws a progress bar while a sweep is
    computed and Streamlit's cached functions replay the page elements they touch."""

    def __init__(self, max_entries: int = 8, max_bytes: int = 1 << 30):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.items: OrderedDict[SweepRequest, Sweep] = OrderedDict()
        self.pending: dict[SweepRequest, threading.Event] = {}
        self.lock = threading.Lock()

    def get(self, request: SweepRequest) -> Sweep | None:
        with self.lock:
            if request in self.items:
                self.items.move_to_end(request)
            return self.items.get(request)

    def put(self, request: SweepRequest, sweep: Sweep) -> None:
        with self.lock:
            self.items[request] = sweep
            self.items.move_to_end(request)
            while len(self.items) > 1 and (len(self.items) > self.max_entries or self.nbytes > self.max_bytes):
                self.items.popitem(last=False)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.items.values())

    def get_or_compute(self, request: SweepRequest, compute: Callable[[], Sweep],
                       on_wait: Callable[[], None] | None = None) -> Sweep:
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
