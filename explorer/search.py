"""Greedy best-first s-Trace extraction (METHOD.md section 3) and the strata over a size grid.

The reference algorithm keeps a max-heap of edges keyed by weight (ties: first pushed wins), pops the
best, and pushes the in-edges of its source node when that node is reached for the first time.

:func:`greedy_order` gives exactly the same order without one heap entry per edge: edges pushed
together (the in-edges of one node) leave the heap in their own (weight desc, push order) order, so it
sorts each node's in-edges once and keeps a heap of nodes keyed by their best remaining edge. The loop is
compiled with numba; no Python object is made per edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from explorer.errors import BadSetting

DEFAULT_SIZES: tuple[float, ...] = (
    1e-5, 2e-5, 4e-5, 8e-5, 1e-4, 2e-4, 4e-4, 8e-4, 1e-3, 1.2e-3, 1.4e-3, 2e-3, 3e-3, 4e-3, 6e-3,
    8e-3, 1e-2, 2e-2, 4e-2, 6e-2, 8e-2, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0,
)


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


@numba.njit(cache=True)
def _better(w, s, i, j):
    return w[i] > w[j] or (w[i] == w[j] and s[i] < s[j])


@numba.njit(cache=True)
def _sift_down(hw, hs, hv, size, i):
    while True:
        left = 2 * i + 1
        if left >= size:
            return
        best = left
        right = left + 1
        if right < size and _better(hw, hs, right, left):
            best = right
        if not _better(hw, hs, best, i):
            return
        hw[i], hw[best] = hw[best], hw[i]
        hs[i], hs[best] = hs[best], hs[i]
        hv[i], hv[best] = hv[best], hv[i]
        i = best


@numba.njit(cache=True)
def _sift_up(hw, hs, hv, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _better(hw, hs, i, parent):
            return
        hw[i], hw[parent] = hw[parent], hw[i]
        hs[i], hs[parent] = hs[parent], hs[i]
        hv[i], hv[parent] = hv[parent], hv[i]
        i = parent


@numba.njit(cache=True)
def _greedy(node_ptr, src, weight, root):
    n_nodes = node_ptr.shape[0] - 1
    m = node_ptr[n_nodes]
    # Each node's in-edges by (weight desc, push position asc): a stable sort of -weight.
    perm = np.empty(m, np.int64)
    for v in range(n_nodes):
        a = node_ptr[v]
        b = node_ptr[v + 1]
        if b > a:
            p = np.argsort(-weight[a:b], kind="mergesort")
            for i in range(b - a):
                perm[a + i] = a + p[i]
    cursor = node_ptr[:n_nodes].copy()
    base = np.zeros(n_nodes, np.int64)
    reached = np.zeros(n_nodes, np.bool_)
    hw = np.empty(n_nodes, np.float64)
    hs = np.empty(n_nodes, np.int64)
    hv = np.empty(n_nodes, np.int64)
    order = np.empty(m, np.int64)
    size = 0
    k = 0
    counter = 0
    reached[root] = True
    if node_ptr[root + 1] > node_ptr[root]:
        e = perm[cursor[root]]
        hw[0] = weight[e]
        hs[0] = e - node_ptr[root]
        hv[0] = root
        size = 1
    counter = node_ptr[root + 1] - node_ptr[root]
    while size > 0:
        v = hv[0]
        e = perm[cursor[v]]
        order[k] = e
        k += 1
        cursor[v] += 1
        if cursor[v] < node_ptr[v + 1]:
            nxt = perm[cursor[v]]
            hw[0] = weight[nxt]
            hs[0] = base[v] + nxt - node_ptr[v]
        else:
            size -= 1
            hw[0] = hw[size]
            hs[0] = hs[size]
            hv[0] = hv[size]
        _sift_down(hw, hs, hv, size, 0)
        u = src[e]
        if not reached[u]:
            reached[u] = True
            base[u] = counter
            deg = node_ptr[u + 1] - node_ptr[u]
            counter += deg
            if deg > 0:
                first = perm[cursor[u]]
                hw[size] = weight[first]
                hs[size] = base[u] + first - node_ptr[u]
                hv[size] = u
                size += 1
                _sift_up(hw, hs, hv, size - 1)
    return order[:k]


def greedy_order(graph: SearchGraph) -> np.ndarray:
    """Edge positions (indices into the CSR arrays) in the order the greedy search pops them."""
    if np.isnan(graph.weight).any():
        raise ValueError("edge weights contain NaN")
    return _greedy(
        np.ascontiguousarray(graph.node_ptr, dtype=np.int64),
        np.ascontiguousarray(graph.src, dtype=np.int64),
        np.ascontiguousarray(graph.weight, dtype=np.float64),
        int(graph.root),
    )


def random_priorities(is_attention: np.ndarray, seed: int) -> np.ndarray:
    """Keys for the random control's search (METHOD.md section 5): every residual and MLP edge
    (``1 + U``) comes before any attention edge (``U``), ``U`` uniform on ``[0, 1)`` from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.random(len(is_attention)) + np.where(is_attention, 0.0, 1.0)


def check_sizes(sizes) -> tuple[float, ...]:
    """Validate a size grid: each ``0 < s <= 1``; returned sorted, without repeats."""
    out = sorted({float(s) for s in sizes})
    if not out or out[0] <= 0 or out[-1] > 1:
        raise BadSetting("sizes must be numbers with 0 < s <= 1")
    return tuple(out)


def strata_edges(sizes, n_edges: int) -> list[tuple[float, int]]:
    """``(s, floor(s * E))`` for each size, skipping sizes whose edge count rounds to 0."""
    return [(s, int(np.floor(s * n_edges))) for s in check_sizes(sizes) if int(np.floor(s * n_edges)) > 0]
