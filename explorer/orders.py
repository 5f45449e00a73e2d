"""The two edge orders a trace needs: the greedy order of one prompt's graph (METHOD.md section 3) and
the random control's order (section 5), which depends on the graph's shape only and is kept per shape.

Both are prepared on the graph's device (:func:`explorer.search.prepare_search`) and searched on the host
(:class:`explorer.search.HeapSearch`), or, for large graphs on a GPU, searched on the device level by level
(:func:`explorer.chain_search.chain_order`, the same order).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from explorer.chain_search import LevelPlans, NotSettled, chain_order, plan_levels
from explorer.cost import CHAIN_SEARCH_EDGES_PER_LEVEL  # smaller graphs, and any on a CPU: the heap search
from explorer.edges import EdgeLayout
from explorer.graph import SearchCsr, TokenGraph
from explorer.pass_graphs import empty_cache
from explorer.range_sort import dense_rank
from explorer.search import HeapSearch, SearchGraph, prepare_search, random_keys

_device_search = threading.Lock()
"""One search on the device at a time (the greedy order's or the random control's): its buffers are a
long prompt's peak, and two at once would add up."""


def search_graph(graph: TokenGraph) -> tuple[SearchGraph, np.ndarray]:
    """The CSR search graph on the host, and the edge id of each of its edges. Not used by traces: it feeds
    the plain reference search in the tests and the benchmark's reference-style pipeline
    (``bench/gpu_bench.py``), which both need the graph in the heap search's host form."""
    ptr, src, w, ids = graph.csr()
    src, w = src.long().cpu().numpy(), w.double().cpu().numpy()
    return SearchGraph(ptr.cpu().numpy(), src, w, graph.layout.output_node), ids.cpu().numpy()


PREFAULTED_COPY_BYTES = 1 << 26
"""From this size on, a device tensor's host copy goes into memory already touched by torch's threads."""


def host_copy(t: torch.Tensor) -> np.ndarray:
    """``t`` as a host array. A large tensor on a GPU is copied into host memory that torch's threads have
    zeroed first: the copy into a fresh array takes its page faults one at a time, which cost several
    times the copy itself (906 M int64 edge ids on an H200 host: 4-7 s through ``.cpu()``, 0.9 s so)."""
    if t.device.type == "cpu" or t.nbytes < PREFAULTED_COPY_BYTES:
        return t.cpu().numpy()
    return torch.zeros(t.shape, dtype=t.dtype).copy_(t).numpy()


def searched_on_device(layout: EdgeLayout, device) -> bool:
    """Whether a graph of this shape on ``device`` is searched by :func:`explorer.chain_search.chain_order`."""
    levels = 2 * layout.n_layers + 1
    return torch.device(device).type == "cuda" and layout.n_edges >= CHAIN_SEARCH_EDGES_PER_LEVEL * levels


def _search(
    layout: EdgeLayout, ptr, keys: Callable[[], torch.Tensor], plans: LevelPlans | None = None
) -> tuple[torch.Tensor | None, HeapSearch | None, LevelPlans | None]:
    """Search the CSR graph of ``layout`` (``ptr``: its node pointers, on the search's device) by the keys
    ``[M]`` that ``keys()`` gives (on the same device). Returns, for a search on the device, the CSR
    positions in greedy order, else the heap search on the host, prepared but not run; and the level
    plans of a search on the device (``plans``: this shape's, from another search, or made here). There,
    the plans are made before the keys are ranked, and the keys and the graph's sources
    (:meth:`EdgeLayout.csr`'s, built here) are freed before the search, unless the caller holds them."""
    device = ptr.device
    if searched_on_device(layout, device):
        try:
            with _device_search:
                levels = layout.node_levels(device)
                if plans is None:
                    plans = plan_levels(ptr, layout.csr(device)[1], levels)
                rank = dense_rank(keys())
                order = chain_order(ptr, plans, rank, levels, layout.output_node)
            return order, None, plans
        except (torch.OutOfMemoryError, NotSettled):
            plans = rank = None
            empty_cache()  # the heap search needs a fraction of the device memory
    labels = torch.arange(layout.n_edges, device=device)  # CSR positions
    return None, HeapSearch(prepare_search(ptr, layout.csr(device)[1], keys(), labels, layout.output_node)), None


def _edge_ids(layout: EdgeLayout, at: torch.Tensor) -> torch.Tensor:
    """The edge ids of CSR positions ``at [K]`` (as :func:`_search` gives them), on their device."""
    return layout.csr_ids(at.device)[at]


STRETCH = 1 << 16
"""Edges a host search on a background thread (:meth:`GreedyOrder.start`) pops between two reports of its
progress: about 4 ms of the loop."""

_host_searches = ThreadPoolExecutor(4, thread_name_prefix="greedy-search")


class GreedyOrder:
    """The greedy order of one graph, as :func:`greedy_search` gives it: edge ids on the graph's device, a
    prefix at a time (:meth:`take`) while the host part of the search runs, whole from :meth:`result`.

    Nested strata need only the order's first edges, so a masked pass can start as soon as the search has
    popped its stratum's edges (:mod:`explorer.passes`). A search that ran on the device is done at once.
    """

    def __init__(self, csr: SearchCsr, search: HeapSearch | None = None, positions: torch.Tensor | None = None):
        self.layout = csr.layout
        self._weight = csr.weight
        self._search = search
        self._positions = positions  # [E] CSR positions in order (a host search: filled as it pops)
        self._ids: torch.Tensor | None = None  # [E] edge ids in order, the first `given` of them filled
        self._ids_of: torch.Tensor | None = None  # [E] the edge id at each CSR position (a host search's)
        self.given = 0
        self._running: Future | None = None
        self._finished = False
        self.seconds = 0.0  # the host search's own time
        self._progress = threading.Condition()

    @property
    def done(self) -> bool:
        """Whether the search has popped every edge (:meth:`result` does not wait)."""
        return self._search is None or self._search.done

    def start(self) -> None:
        """Run the host part of the search on a background thread, a stretch at a time, so that
        :meth:`take` can hand out the first edges while it runs (numba releases the GIL). Without it, the
        search runs in the thread that waits for it."""
        if self._search is not None and self._running is None:
            self._running = _host_searches.submit(self._run)

    def _run(self) -> None:
        search = self._search
        assert search is not None
        start = time.perf_counter()
        try:
            while not search.done:
                search.advance(search.popped + STRETCH)
                with self._progress:
                    self._progress.notify_all()
        finally:
            self.seconds = time.perf_counter() - start
            with self._progress:
                self._finished = True
                self._progress.notify_all()

    def _popped(self, n: int) -> int:
        """Wait until the search has popped ``n`` edges, or all; how many it has."""
        search = self._search
        assert search is not None
        if self._running is None:
            start = time.perf_counter()
            search.advance(n)
            self.seconds += time.perf_counter() - start
            return search.popped
        with self._progress:
            self._progress.wait_for(lambda: search.popped >= n or self._finished)
        if self._finished:
            self._running.result()  # the search's own error, if it failed
        return search.popped

    def take(self, n: int) -> torch.Tensor:
        """The edge ids ``[K]`` (int64, on the graph's device) at the order's positions from :attr:`given`
        on, through at least position ``n - 1`` where the order is that long (waiting for the search);
        :attr:`given` moves past them."""
        weight = self._weight
        if self._search is None:  # searched on the device: all at once
            if self._ids is None:
                assert self._positions is not None
                self._ids = _edge_ids(self.layout, self._positions)
            new, self.given = self._ids[self.given :], len(self._ids)
            return new
        if self._ids is None:
            m = len(self._search.order)
            self._ids = torch.empty(m, dtype=torch.long, device=weight.device)
            self._positions = torch.empty(m, dtype=torch.long, device=weight.device)
        start, end = self.given, max(self._popped(n), self.given)
        assert self._positions is not None
        if end > start:
            if self._ids_of is None:
                self._ids_of = self.layout.csr_ids(weight.device)
            at = torch.from_numpy(self._search.order[start:end]).to(weight.device)
            self._positions[start:end] = at
            self._ids[start:end] = self._ids_of[at]
            self.given = end
        if self._search.done and end == self._search.popped:
            self._ids_of = None  # every edge is given
        return self._ids[start:end]

    def host_positions(self, start: int, end: int) -> np.ndarray | None:
        """The :meth:`~explorer.edges.EdgeLayout.csr` positions of the order's edges ``start .. end - 1``
        (already given) on the host, where a host search popped them; ``None`` for a device search."""
        return None if self._search is None else self._search.order[start:end]

    def result(self) -> tuple[torch.Tensor, np.ndarray]:
        """The whole order (waiting for the search): the edge ids ``[E]`` in order (int64, on the graph's
        device) and their weights (on the host)."""
        self.take(len(self._weight))
        if self._running is not None:
            self._running.result()  # its thread's end (and its time)
        assert self._ids is not None and self._positions is not None
        ids, at = self._ids[: self.given], self._positions[: self.given]
        return ids, host_copy(self._weight[at])


def greedy_search(csr: SearchCsr, plans: LevelPlans | None = None) -> GreedyOrder:
    """The greedy order of a graph (:meth:`explorer.graph.TokenGraph.search_csr`): its device part now
    (sorts and ranks, or all of it for a large graph on a GPU, with ``plans`` if the random control's
    search left them: :meth:`RandomControl.take_plans`); the host part runs when the order is waited for
    (outside the model's lock), or from :meth:`GreedyOrder.start` on, beside other work."""
    on_device, search, _ = _search(csr.layout, csr.node_ptr, lambda: csr.weight, plans)
    return GreedyOrder(csr, search, on_device.to(csr.weight.device) if on_device is not None else None)


class _RandomOrders:
    """The random control's orders, kept for the last shapes traced (up to ``max_bytes`` of edge ids).

    The random control searches the graph with random keys (METHOD.md section 5), so its order depends on
    the graph's shape and the seed only: every prompt of one length shares it."""

    def __init__(self, max_bytes: int = 1 << 29):
        self.max_bytes = max_bytes
        self._orders: OrderedDict[tuple[EdgeLayout, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    def __call__(self, layout: EdgeLayout, seed: int, device) -> np.ndarray | torch.Tensor:
        """Edge ids ``[E]`` in the random control's order; the sorts run on ``device``. A read-only host
        array, kept; an order larger than ``max_bytes`` stays on ``device`` (int32 where every edge id fits:
        :func:`_compact_ids`), not kept: it would not fit the cache, and a long prompt's order would cross
        to the host and back for nothing."""
        return self.with_plans(layout, seed, device)[0]

    def with_plans(self, layout: EdgeLayout, seed: int, device) -> tuple[np.ndarray | torch.Tensor, LevelPlans | None]:
        """The order, as :meth:`__call__` gives it, and the level plans when it was searched on the device
        just now (a kept order: ``None``)."""
        key = (layout, seed)
        with self._lock:
            if key in self._orders:
                self._orders.move_to_end(key)
                return self._orders[key], None
        device = torch.device(device)
        # a search on the device runs before the forward pass, on the trace's stream: a stream of its own
        # would keep its freed buffers in a memory pool of their own
        with nullcontext() if searched_on_device(layout, device) else self._stream(device):
            is_attention = lambda: layout.csr_ids(device) < layout.n_attention_ids
            at, search, plans = _search(layout, layout.node_ptr(device), lambda: random_keys(is_attention(), seed))
            if search is not None:
                at = torch.from_numpy(search.run())
            assert at is not None
            on_device = _edge_ids(layout, at.to(device))
            if on_device.nbytes > self.max_bytes:
                return _compact_ids(on_device, layout), plans
            order = host_copy(on_device)
        order.flags.writeable = False  # shared by every trace of this shape
        with self._lock:
            self._orders[key] = order
            while sum(o.nbytes for o in self._orders.values()) > self.max_bytes and len(self._orders) > 1:
                self._orders.popitem(last=False)
        return order, plans

    def clear(self) -> None:
        with self._lock:
            self._orders.clear()

    def _stream(self, device: torch.device):
        """On a GPU, a stream of this cache's own, so the sorts run beside a trace's forward pass rather
        than after it."""
        if device.type != "cuda":
            return nullcontext()
        with self._lock:
            if device not in self._streams:
                self._streams[device] = torch.cuda.Stream(device)
            return torch.cuda.stream(self._streams[device])


random_control_order = _RandomOrders()
_background = ThreadPoolExecutor(4, thread_name_prefix="random-control")


def _compact_ids(ids: torch.Tensor, layout: EdgeLayout) -> torch.Tensor:
    """Edge ids of ``layout`` (int64) as int32 where every id fits (ids run to ``n_ids``, about twice the
    edges: past 2**31 of them, as on the 8B shape at 2,048 tokens, they stay int64)."""
    return ids.int() if layout.n_ids <= 2**31 else ids


@dataclass
class RandomControl:
    """The random control's order being made (``order``: a future of the edge ids) and, when its graph was
    searched on the device, the level plans, for the greedy search of the same shape to take."""

    order: Future
    plans: LevelPlans | None = None

    def take_plans(self) -> LevelPlans | None:
        """The level plans, handed over: not held here afterwards."""
        plans, self.plans = self.plans, None
        return plans


def start_random_control(layout: EdgeLayout, seed: int, device) -> RandomControl:
    """:func:`random_control_order` on a background thread, so that it runs beside a trace's forward pass
    and greedy search. A graph searched on the device is searched now, before the forward pass (beside
    it, or beside the greedy search, the peaks would add up), and its level plans are kept for the greedy
    search: they depend on the shape only."""
    if not searched_on_device(layout, device):
        return RandomControl(_background.submit(random_control_order, layout, seed, device))
    done: Future = Future()
    plans = None
    try:
        order, plans = random_control_order.with_plans(layout, seed, device)
        done.set_result(order)
    except Exception as err:  # raised where the order is waited for, as from the thread
        done.set_exception(err)
    return RandomControl(done, plans)
