"""The two edge orders a trace needs: the greedy order of one prompt's graph (METHOD.md section 3) and
the random control's order (section 5), which depends on the graph's shape only and is kept per shape.

Both are prepared on the graph's device (:func:`explorer.search.prepare_search`) and searched on the host
(:func:`explorer.search.run_search`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext

import numpy as np
import torch

from explorer.graph import EdgeLayout, TokenGraph
from explorer.search import PreparedSearch, SearchGraph, prepare_search, random_priorities, run_search


def search_graph(graph: TokenGraph) -> tuple[SearchGraph, np.ndarray]:
    """The CSR search graph on the host, and the edge id of each of its edges (for the plain reference
    search and the benchmark's reference-style pipeline)."""
    ptr, src, w, ids = graph.csr()
    return SearchGraph(ptr.cpu().numpy(), src.cpu().numpy(), w.cpu().numpy(), graph.layout.output_node), ids.cpu().numpy()


def greedy_job(graph: TokenGraph) -> PreparedSearch:
    """The device part of the greedy search: CSR, per-node sorts and weight ranks on the graph's device,
    one copy to the host. :func:`explorer.search.run_search` then returns edge ids."""
    ptr, src, w, ids = graph.csr()
    return prepare_search(ptr, src, w, ids, graph.layout.output_node)


class _RandomOrders:
    """The random control's orders, kept for the last shapes traced (up to ``max_bytes`` of edge ids).

    The random control searches the graph with random keys (METHOD.md section 5), so its order depends on
    the graph's shape and the seed only: every prompt of one length shares it."""

    def __init__(self, max_bytes: int = 1 << 29):
        self.max_bytes = max_bytes
        self._orders: OrderedDict[tuple[EdgeLayout, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._streams: dict[torch.device, torch.cuda.Stream] = {}

    def __call__(self, layout: EdgeLayout, seed: int, device) -> np.ndarray:
        """Edge ids ``[E]`` in the random control's order; the sorts run on ``device``."""
        key = (layout, seed)
        with self._lock:
            if key in self._orders:
                self._orders.move_to_end(key)
                return self._orders[key]
        device = torch.device(device)
        with self._stream(device):
            ptr, src, ids = layout.csr(device)
            keys = random_priorities((ids < layout.n_attention_ids).cpu().numpy(), seed)
            job = prepare_search(ptr, src, torch.as_tensor(keys, device=device), ids, layout.output_node)
        order = run_search(job)
        order.flags.writeable = False  # shared by every trace of this shape
        with self._lock:
            self._orders[key] = order
            while sum(o.nbytes for o in self._orders.values()) > self.max_bytes and len(self._orders) > 1:
                self._orders.popitem(last=False)
        return order

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


def start_random_control(layout: EdgeLayout, seed: int, device) -> Future:
    """:func:`random_control_order` on a background thread, so that it runs beside a trace's forward pass
    and greedy search; the future's result is the order."""
    return _background.submit(random_control_order, layout, seed, device)
