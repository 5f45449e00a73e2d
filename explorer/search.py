"""Greedy best-first s-Trace extraction (METHOD.md section 3) and the strata over a size grid.

The reference algorithm keeps a max-heap of edges keyed by weight (ties: first pushed wins), pops the
best, and pushes the in-edges of its source node when that node is reached for the first time.

:func:`greedy_order` gives exactly the same order without one heap entry per edge: edges pushed
together (the in-edges of one node) leave the heap in their own (weight desc, push order) order, so it
sorts each node's in-edges once and keeps a heap of nodes keyed by their best remaining edge. The loop is
compiled with numba; no Python object is made per edge. The per-node sort runs as two stable sorts on
the graph's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

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


def sort_within_nodes(node_ptr, weight) -> np.ndarray:
    """Permutation of the CSR arrays that orders each node's in-edges by weight (descending), ties in
    push order: two stable sorts, on the device of ``weight`` when it is a tensor. ``[M]`` int64."""
    w = torch.as_tensor(weight)
    ptr = torch.as_tensor(node_ptr, device=w.device)
    node = torch.repeat_interleave(torch.arange(len(ptr) - 1, device=w.device), ptr.diff())
    by_weight = torch.sort(-w, stable=True).indices
    by_node = torch.sort(node[by_weight], stable=True).indices
    return by_weight[by_node].cpu().numpy()


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


@numba.njit(cache=True, nogil=True)
def _greedy(node_ptr, sorted_src, sorted_weight, sorted_pos, root):
    """The search over in-edges already sorted within each node; returns positions in sorted order."""
    n_nodes = node_ptr.shape[0] - 1
    m = node_ptr[n_nodes]
    cursor = node_ptr[:n_nodes].copy()
    base = np.zeros(n_nodes, np.int64)
    reached = np.zeros(n_nodes, np.bool_)
    hw = np.empty(n_nodes, np.float64)
    hs = np.empty(n_nodes, np.int64)
    hv = np.empty(n_nodes, np.int64)
    order = np.empty(m, np.int64)
    size = 0
    k = 0
    reached[root] = True
    if node_ptr[root + 1] > node_ptr[root]:
        hw[0] = sorted_weight[cursor[root]]
        hs[0] = sorted_pos[cursor[root]]
        hv[0] = root
        size = 1
    counter = node_ptr[root + 1] - node_ptr[root]
    while size > 0:
        v = hv[0]
        c = cursor[v]
        order[k] = c
        k += 1
        cursor[v] = c + 1
        if c + 1 < node_ptr[v + 1]:
            hw[0] = sorted_weight[c + 1]
            hs[0] = base[v] + sorted_pos[c + 1]
        else:
            size -= 1
            hw[0] = hw[size]
            hs[0] = hs[size]
            hv[0] = hv[size]
        _sift_down(hw, hs, hv, size, 0)
        u = sorted_src[c]
        if not reached[u]:
            reached[u] = True
            base[u] = counter
            deg = node_ptr[u + 1] - node_ptr[u]
            counter += deg
            if deg > 0:
                first = cursor[u]
                hw[size] = sorted_weight[first]
                hs[size] = base[u] + sorted_pos[first]
                hv[size] = u
                size += 1
                _sift_up(hw, hs, hv, size - 1)
    return order[:k]


def greedy_order(graph: SearchGraph, perm: np.ndarray | None = None) -> np.ndarray:
    """Edge positions (indices into the CSR arrays) in the order the greedy search pops them.

    ``perm``: :func:`sort_within_nodes` of the graph, if already computed (for example on a GPU).
    """
    if np.isnan(graph.weight).any():
        raise ValueError("edge weights contain NaN")
    if perm is None:
        perm = sort_within_nodes(graph.node_ptr, graph.weight)
    ptr = np.ascontiguousarray(graph.node_ptr, dtype=np.int64)
    # push position of each edge within its node, in sorted order
    pos = perm - np.repeat(ptr[:-1], np.diff(ptr))
    sorted_order = _greedy(
        ptr,
        np.ascontiguousarray(graph.src[perm], dtype=np.int64),
        np.ascontiguousarray(graph.weight[perm], dtype=np.float64),
        pos,
        int(graph.root),
    )
    return perm[sorted_order]


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
