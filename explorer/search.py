"""Greedy best-first s-Trace extraction (METHOD.md section 3) and the strata over a size grid.

The reference algorithm keeps a max-heap of edges keyed by weight (ties: first pushed wins), pops the
best, and pushes the in-edges of its source node when that node is reached for the first time.

:func:`greedy_order` gives exactly the same order without one heap entry per edge: edges pushed
together (the in-edges of one node) leave the heap in their own (weight desc, push order) order, so it
sorts each node's in-edges once and keeps a heap of nodes keyed by their best remaining edge. Weights
become dense integer ranks, so a heap key is one int64 (rank, then push counter). The sorts and ranks
are computed on the graph's device (:func:`prepare_search`); the loop is compiled with numba and makes
no Python object per edge.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
import torch

from explorer.options import check_sizes


@dataclass(frozen=True)
class SearchGraph:
    """A graph in CSR form by target node.

    The in-edges of node ``v`` are ``ptr[v]:ptr[v+1]`` in push order; ``src [M]`` is each edge's source
    node, ``weight [M]`` its weight (float64, no NaN). The search starts at ``root``.
    """

    node_ptr: np.ndarray
    src: np.ndarray
    weight: np.ndarray
    root: int


@dataclass(frozen=True)
class PreparedSearch:
    """A search graph made ready for the compiled loop, on the host: each node's in-edges sorted in the
    order they leave the heap (weight descending, ties in push order).

    ``edges [M, 3]`` int64, one row per sorted position ``i`` (node ``v``'s rows are
    ``node_ptr[v]:node_ptr[v+1]``), kept together so that one cache line serves a pop:

    - ``key``: ``rank << 32 | pos``, ``rank`` the dense rank of the edge's weight among all weights
      (0 = heaviest, equal weights share a rank) and ``pos`` its push position within its node; the
      heap key is ``key + (push counter when the node was reached)``;
    - ``src``: the edge's source node;
    - ``label``: what the search returns for it (an edge id, or its CSR position).
    """

    node_ptr: np.ndarray
    edges: np.ndarray
    root: int


def check_weights(w: torch.Tensor) -> None:
    """Edge weights a search can rank: no NaN, fewer than 2**31 (ValueError otherwise)."""
    if torch.isnan(w).any():
        raise ValueError("edge weights contain NaN")
    if w.numel() >= 2**31:
        raise ValueError(f"{w.numel()} edges: the search handles fewer than 2**31")


def rank_weights(weight) -> tuple[torch.Tensor, torch.Tensor]:
    """Edge weights ``[M]`` (a tensor, on its device, or an array) checked and ranked: the edges heaviest
    first, ties in edge order (``[M]`` int64), and each edge's dense rank (0 = heaviest; equal weights,
    -0.0 and 0.0 included, share a rank; ``[M]`` int32). NaN, or 2**31 edges or more, raise ValueError."""
    w = torch.as_tensor(weight)
    check_weights(w)
    # -(w + 0.0) is -0.0 for both zeros: equal weights must sort as equal
    negated = w + 0.0
    descending, by_weight = torch.sort(negated.neg_(), stable=True)
    del negated
    dense = torch.zeros(len(descending), dtype=torch.int32, device=w.device)
    dense[1:] = descending[1:] != descending[:-1]
    del descending
    dense = torch.cumsum(dense, 0, dtype=torch.int32)
    rank = torch.empty_like(dense)
    rank[by_weight] = dense
    return by_weight, rank


def prepare_search(node_ptr, src, weight, label, root: int) -> PreparedSearch:
    """Sort each node's in-edges and rank the weights, on the device of ``weight`` when it is a tensor,
    then copy the ``[M, 3]`` table to the host at once.

    ``node_ptr [N+1]``, ``src [M]``, ``weight [M]`` (no NaN) and ``label [M]`` are CSR arrays by target
    node in push order, as tensors or arrays.
    """
    by_weight, rank = rank_weights(weight)
    dev = rank.device
    ptr = torch.as_tensor(node_ptr, device=dev).long()
    node = torch.repeat_interleave(torch.arange(len(ptr) - 1, device=dev), ptr.diff())
    perm = by_weight[torch.sort(node[by_weight], stable=True).indices]
    pos = perm - ptr[node]  # the sort keeps each node's range in place
    edges = torch.stack(
        [
            (rank[perm].long() << 32) | pos,
            torch.as_tensor(src, device=dev).long()[perm],
            torch.as_tensor(label, device=dev).long()[perm],
        ],
        1,
    )
    return PreparedSearch(ptr.cpu().numpy(), edges.cpu().numpy(), int(root))


@numba.njit(cache=True, nogil=True)
def _advance(node_ptr, edges, counts, cursor, base, reached, hk, hv, order, stop):
    """The search over in-edges sorted within each node, from the state of an earlier call (``counts``:
    heap size, edges popped, push counter; ``cursor``, ``base``, ``reached`` per node; the heap ``hk``
    / ``hv``; the labels popped so far in ``order``) until ``stop`` edges have been popped or the heap is
    empty.

    The heap holds one entry per reached node with edges left: a 4-ary min-heap of one int64 key (the
    node's best remaining edge: larger weight first, then first pushed), moved with a hole rather than
    swaps.
    """
    size, k, counter = counts[0], counts[1], counts[2]
    while size > 0 and k < stop:
        v = hv[0]
        c = cursor[v]
        order[k] = edges[c, 2]
        u = edges[c, 1]
        k += 1
        cursor[v] = c + 1
        # the root's entry becomes the node's next edge, or the heap's last entry; sift it down
        if c + 1 < node_ptr[v + 1]:
            key = edges[c + 1, 0] + base[v]
            node = v
        else:
            size -= 1
            key = hk[size]
            node = hv[size]
        i = 0
        while True:
            first = 4 * i + 1
            if first >= size:
                break
            best = first
            best_key = hk[first]
            for j in range(first + 1, min(first + 4, size)):
                if hk[j] < best_key:
                    best_key = hk[j]
                    best = j
            if best_key >= key:
                break
            hk[i] = best_key
            hv[i] = hv[best]
            i = best
        if size > 0:
            hk[i] = key
            hv[i] = node
        # the edge's source, reached for the first time, brings its best in-edge; sift it up
        if not reached[u]:
            reached[u] = True
            base[u] = counter
            deg = node_ptr[u + 1] - node_ptr[u]
            counter += deg
            if deg > 0:
                key = edges[cursor[u], 0] + base[u]
                i = size
                size += 1
                while i > 0:
                    parent = (i - 1) >> 2
                    if hk[parent] <= key:
                        break
                    hk[i] = hk[parent]
                    hv[i] = hv[parent]
                    i = parent
                hk[i] = key
                hv[i] = u
    counts[0], counts[1], counts[2] = size, k, counter
    return size == 0


class HeapSearch:
    """The greedy loop over a :class:`PreparedSearch`, run a stretch at a time (:meth:`advance`), so that
    the first edges of the order can be used while the rest is searched. ``order [M]``: the labels in pop
    order, the first :attr:`popped` of them final."""

    def __init__(self, job: PreparedSearch):
        self.job = job
        ptr, root = job.node_ptr, job.root
        n_nodes = len(ptr) - 1
        self.order = np.empty(len(job.edges), np.int64)
        cursor, reached = ptr[:n_nodes].copy(), np.zeros(n_nodes, np.bool_)  # each node's next edge
        heap_keys, heap_nodes = np.empty(n_nodes, np.int64), np.empty(n_nodes, np.int64)
        # the root reached, its best in-edge on the heap; pushes so far: its in-edges
        reached[root] = True
        degree = int(ptr[root + 1] - ptr[root])
        if degree:
            heap_keys[0], heap_nodes[0] = job.edges[cursor[root], 0], root
        self._counts = np.array([int(degree > 0), 0, degree], np.int64)  # heap size, popped, push counter
        base = np.zeros(n_nodes, np.int64)  # the push counter when the node was reached
        self._state = (cursor, base, reached, heap_keys, heap_nodes)
        self.done = degree == 0

    @property
    def popped(self) -> int:
        return int(self._counts[1])

    def advance(self, stop: int) -> int:
        """Pop edges until ``stop`` have been popped or none is left (compiled; releases the GIL);
        returns how many have been popped."""
        if not self.done:
            job = self.job
            self.done = bool(_advance(job.node_ptr, job.edges, self._counts, *self._state, self.order, stop))
        return self.popped

    def run(self) -> np.ndarray:
        """The rest of the search: every label, in pop order."""
        return self.order[: self.advance(len(self.order))]


def run_search(job: PreparedSearch) -> np.ndarray:
    """The labels of the edges in the order the greedy search pops them (compiled; releases the GIL)."""
    return HeapSearch(job).run()


def greedy_order(graph: SearchGraph) -> np.ndarray:
    """Edge positions (indices into the CSR arrays) in the order the greedy search pops them, for a
    host-side :class:`SearchGraph` in one call: the form the tests compare with the plain heap of
    ``tests/reference.py`` (traces go through :mod:`explorer.orders`)."""
    return run_search(prepare_search(graph.node_ptr, graph.src, graph.weight, np.arange(len(graph.src)), graph.root))


def random_priorities(is_attention: np.ndarray, seed: int) -> np.ndarray:
    """Keys for the random control's search (METHOD.md section 5): every residual and MLP edge
    (``1 + U``) comes before any attention edge (``U``), ``U`` uniform on ``[0, 1)`` from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.random(len(is_attention)) + np.where(is_attention, 0.0, 1.0)


DRAWERS = min(8, os.cpu_count() or 1)
"""Host threads drawing the random control's uniforms (numpy's generator releases the GIL while it draws)."""


def _draw(seed: int, start: int, out: np.ndarray, wait=None) -> None:
    """The uniforms ``start .. start + len(out)`` of ``np.random.default_rng(seed).random(M)`` into
    ``out``: that generator's bit generator advanced by ``start`` (PCG64 draws one 64-bit word per
    float64). ``wait``: an event to wait for first (the last copy out of ``out``'s buffer)."""
    if wait is not None:
        wait.synchronize()
    bits = np.random.PCG64(seed)  # what default_rng(seed) holds
    bits.advance(start)
    np.random.Generator(bits).random(out=out)


def random_keys(is_attention: torch.Tensor, seed: int, step: int = 1 << 23) -> torch.Tensor:
    """:func:`random_priorities` on the device of ``is_attention [M]`` (bool), the same float64 values,
    with no ``[M]`` array on the host: the uniforms are drawn ``step`` at a time, each step by its own
    copy of the seed's generator advanced to it (:func:`_draw`), ``DRAWERS`` steps at once. On a CUDA
    device each step is drawn into a pinned buffer (twice as many buffers as threads) and copied from it
    while later steps are drawn; the ``1`` of the residual and MLP edges is added on the device."""
    n, dev = len(is_attention), is_attention.device
    keys = torch.empty(n, dtype=torch.float64, device=dev)
    starts = range(0, n, step)
    if len(starts) == 1:  # a short prompt's: no threads, no pinned buffers
        host = np.empty(n)
        _draw(seed, 0, host)
        keys.copy_(torch.from_numpy(host))
    else:
        _draw_steps(keys, seed, step)
    for i in range(0, n, 1 << 26):
        keys[i : i + (1 << 26)] += ~is_attention[i : i + (1 << 26)]
    return keys


def _draw_steps(keys: torch.Tensor, seed: int, step: int) -> None:
    """:func:`random_keys`' uniforms into ``keys [M]`` (float64), ``step`` at a time, ``DRAWERS`` steps at
    once."""
    n, dev = len(keys), keys.device
    starts = range(0, n, step)
    with ThreadPoolExecutor(DRAWERS) as pool:
        if dev.type != "cuda":
            host = keys.numpy()
            list(pool.map(lambda i: _draw(seed, i, host[i : i + step]), starts))
        else:
            count, size = min(2 * DRAWERS, len(starts)), min(step, n)
            buffers = [torch.empty(size, dtype=torch.float64, pin_memory=True) for _ in range(count)]
            copied: list = [None] * len(buffers)  # the event after each buffer's last copy
            drawn: dict[int, Future] = {}

            def submit(j: int) -> None:
                i, b = starts[j], j % len(buffers)
                out = buffers[b][: min(step, n - i)].numpy()
                drawn[j] = pool.submit(_draw, seed, i, out, copied[b])

            for j in range(min(len(buffers), len(starts))):
                submit(j)
            for j, i in enumerate(starts):
                drawn.pop(j).result()
                b = j % len(buffers)
                keys[i : i + step].copy_(buffers[b][: min(step, n - i)], non_blocking=True)
                copied[b] = torch.cuda.Event()
                copied[b].record()
                if j + len(buffers) < len(starts):
                    submit(j + len(buffers))
            torch.cuda.current_stream(dev).synchronize()  # the buffers are free once their copies are done


def strata_edges(sizes, n_edges: int) -> list[tuple[float, int]]:
    """``(s, floor(s * E))`` for each size, skipping sizes whose edge count rounds to 0."""
    return [(s, int(np.floor(s * n_edges))) for s in check_sizes(sizes) if int(np.floor(s * n_edges)) > 0]
