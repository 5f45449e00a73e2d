"""The greedy edge order (METHOD.md section 3) computed level by level on the graph's device.

The heap search pops one edge at a time. This module gets the same order from a property of it: give each
edge its heap key ``rank << 32 | push counter`` (``rank`` the dense rank of its weight, heaviest first;
the push counter is where it entered the heap) and its *reach path*, the edges that first reached each
node from the output down to it. Its *chain* is the keys on that path that are larger than every key after
them, output first. The greedy order sorts the edges by their chains, lexicographically, a proper prefix
first (``tests/test_search.py`` checks this against the plain heap).

So, with nodes processed in levels from the output (every edge goes from a later level to an earlier one):

1. an edge ``e = (u -> v)`` has chain ``chain(v)[:k] + [key(e)]``, ``k`` the number of keys of ``chain(v)``
   above ``key(e)``; the node ``u`` takes the chain of its smallest out-edge (a tournament per node);
2. every edge is a node of the trie of chains (parent: the edge at depth ``k - 1`` of ``chain(v)``), and
   the order is the trie's pre-order with children by key;
3. push counters depend on the order in which nodes are reached, so they are guessed, the order computed,
   and the counters recomputed from it until the keys' order stops changing (without ties in weight the
   first round is final).

Each level costs a few hundred small tensor operations however many edges it has, so this pays for
large graphs on a GPU; the compiled heap search (:mod:`explorer.search`) is faster for small ones
(:func:`explorer.orders.searched_on_device` chooses).
"""

from __future__ import annotations

import numpy as np
import torch

MAX_ROUNDS = 64


class NotSettled(RuntimeError):
    """The push counters did not agree within ``MAX_ROUNDS`` rounds (the heap search still can)."""


def chain_order(node_ptr, src, weight, label, node_level, root: int) -> np.ndarray:
    """The labels of the edges in greedy order, as :func:`explorer.search.run_search` returns them.

    CSR arrays by target node in push order (tensors on one device, or arrays): ``node_ptr [N+1]``,
    ``src [M]``, ``weight [M]`` (no NaN), ``label [M]``; ``node_level [N]``: 0 for ``root`` and, for every
    edge ``u -> v``, ``node_level[u] > node_level[v]``. Edges whose target cannot reach the root are left
    out, as the search never meets them.
    """
    w = torch.as_tensor(weight) + 0.0  # -0.0 becomes 0.0: equal weights share a rank
    if torch.isnan(w).any():
        raise ValueError("edge weights contain NaN")
    dev = w.device
    if len(w) == 0:
        return np.zeros(0, dtype=np.int64)
    ptr = torch.as_tensor(node_ptr, device=dev).long()
    src = torch.as_tensor(src, device=dev).long()
    level = torch.as_tensor(node_level, device=dev).long()
    n = len(ptr) - 1
    deg = ptr.diff()
    dst = torch.repeat_interleave(torch.arange(n, device=dev), deg)
    pos = torch.arange(len(src), device=dev) - ptr[dst]
    rank = torch.unique(-w, sorted=True, return_inverse=True)[1]
    # edges by the level of their source, then source, then target
    by_source = torch.argsort((level[src] * n + src) * n + dst)
    # first guess of the order of reaching nodes: by level, then node id
    reach_order = torch.argsort(level * n + torch.arange(n, device=dev))
    key = (rank << 32) | (_push_bases(reach_order, deg)[dst] + pos)
    for _ in range(MAX_ROUNDS):
        position, reach = _trie_positions(key, src, dst, level, by_source, root)
        base = _push_bases(_reach_order(position, reach, root), deg)
        settled = (rank << 32) | (base[dst] + pos)
        live = position >= 0
        # the result depends on the keys' order only: same order, same result
        if torch.equal(torch.argsort(key[live]), torch.argsort(settled[live])):
            order = torch.empty(int(live.sum()), dtype=torch.long, device=dev)
            order[position[live]] = torch.as_tensor(label, device=dev).long()[live]
            return order.cpu().numpy()
        key = settled
    raise NotSettled(f"push counters did not settle in {MAX_ROUNDS} rounds")


def _push_bases(reach_order: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
    """Push counter of each node's first in-edge when nodes are reached in ``reach_order`` (unreached
    nodes at the end): ``[N]``."""
    base = torch.empty_like(deg)
    base[reach_order] = torch.cumsum(deg[reach_order], 0) - deg[reach_order]
    return base


def _reach_order(position: torch.Tensor, reach: torch.Tensor, root: int) -> torch.Tensor:
    """Nodes in the order they are reached: the root, then by the position of the edge that reached them;
    unreached nodes last."""
    n = len(reach)
    first = torch.where(reach >= 0, position[reach.clamp_min(0)], torch.full_like(reach, len(position) + 1))
    first[root] = -1
    return torch.argsort(first * n + torch.arange(n, device=reach.device))


def _trie_positions(key, src, dst, level, by_source, root: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each edge's position in the order (-1 when its target is never reached) ``[M]`` and each node's
    reaching edge (-1 for the root and unreached nodes) ``[N]``, for fixed distinct ``key [M]``.
    ``by_source``: the edges sorted by their source's level, source and target."""
    dev = key.device
    m, n = len(key), len(level)
    n_levels = int(level.max()) + 1
    depth_cap = n_levels + 1
    # each reached node's chain [N, D]: its keys (decreasing, padded with -1) and their edges
    chain_key = torch.full((n, depth_cap), -1, dtype=torch.long, device=dev)
    chain_edge = torch.full((n, depth_cap), -1, dtype=torch.long, device=dev)
    reached = torch.zeros(n, dtype=torch.bool, device=dev)
    reached[root] = True
    reach = torch.full((n,), -1, dtype=torch.long, device=dev)
    parent = torch.full((m,), -1, dtype=torch.long, device=dev)  # trie parent: an edge id, -1 the root
    depth = torch.full((m,), -1, dtype=torch.long, device=dev)  # -1: never reached
    starts = torch.searchsorted(level[src][by_source], torch.arange(n_levels + 1, device=dev)).tolist()
    cols = torch.arange(depth_cap, device=dev)
    for lv in range(1, n_levels):
        e = by_source[starts[lv]: starts[lv + 1]]
        if len(e) == 0:
            continue
        u, v, k_e = src[e], dst[e], key[e]
        live = reached[v]
        above = (chain_key[v] > k_e[:, None]).sum(1)  # keys of chain(v) above key(e)
        depth[e] = torch.where(live, above, -1)
        parent[e] = torch.where(live & (above > 0), chain_edge[v, (above - 1).clamp_min(0)], -1)
        # of the edges from one source into one target the smallest key has the smallest chain
        pair_start = torch.ones_like(live)
        pair_start[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
        pair = torch.cumsum(pair_start.long(), 0) - 1
        smallest = torch.full((int(pair[-1]) + 1,), torch.iinfo(torch.long).max, device=dev)
        smallest.scatter_reduce_(0, pair, k_e, "amin")
        cand = (k_e == smallest[pair]).nonzero().squeeze(1)
        win = e[cand[_tournament(u[cand], v[cand], above[cand], k_e[cand], live[cand], chain_key, chain_edge)]]
        win = win[reached[dst[win]]]
        u, vw, kw = src[win], dst[win], depth[win]
        keep = cols[None, :] < kw[:, None]
        chain_key[u] = torch.where(keep, chain_key[vw], -1)
        chain_edge[u] = torch.where(keep, chain_edge[vw], -1)
        chain_key[u, kw] = key[win]
        chain_edge[u, kw] = win
        reached[u] = True
        reach[u] = win
    return _preorder(key, parent, depth), reach


def _tournament(u, v, above, k_e, live, chain_key, chain_edge) -> torch.Tensor:
    """Candidates grouped by source node ``u``, each the chain ``chain(v)[:above] + [k_e]``: for each
    source, the index of its smallest chain (candidates with an unreached target lose), in source order."""
    dev = u.device
    seg_start = torch.ones_like(u, dtype=torch.bool)
    seg_start[1:] = u[1:] != u[:-1]
    seg = torch.cumsum(seg_start.long(), 0) - 1
    idx = torch.arange(len(u), device=dev)
    p = idx - torch.cummax(torch.where(seg_start, idx, 0), 0).values  # place within the source's group
    seg_len = torch.bincount(seg)[seg]
    best = idx.clone()  # each slot's best candidate so far
    step, longest = 1, int(seg_len.max())
    while step < longest:
        a = torch.nonzero((p % (2 * step) == 0) & (p + step < seg_len)).squeeze(1)
        ia, ib = best[a], best[a + step]
        best[a] = torch.where(_less(ib, ia, v, above, k_e, live, chain_key, chain_edge), ib, ia)
        step *= 2
    return best[seg_start]


def _less(i, j, v, above, k_e, live, chain_key, chain_edge) -> torch.Tensor:
    """Whether candidate ``i``'s chain is smaller than ``j``'s (elementwise over index tensors)."""
    vi, vj = v[i], v[j]
    same = (chain_edge[vi] == chain_edge[vj]).long().cumprod(1).sum(1)  # common prefix of chain(v)s
    at = torch.minimum(torch.minimum(above[i], above[j]), same)
    ci = torch.where(at == above[i], k_e[i], chain_key[vi, at.clamp_max(chain_key.shape[1] - 1)])
    cj = torch.where(at == above[j], k_e[j], chain_key[vj, at.clamp_max(chain_key.shape[1] - 1)])
    return (live[i] & ~live[j]) | (live[i] & live[j] & (ci < cj))


def _preorder(key, parent, depth) -> torch.Tensor:
    """Position of each trie node (edge) in the pre-order with children by key, ``-1`` for edges outside
    the trie (``depth < 0``)."""
    dev = key.device
    m = len(key)
    in_trie = depth >= 0
    size = in_trie.long()
    max_depth = int(depth.max()) if m else -1
    for d in range(max_depth, 0, -1):  # subtree sizes, deepest first
        at = (depth == d).nonzero().squeeze(1)
        size.index_add_(0, parent[at], size[at])
    # children of one parent next to each other, by key
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(parent[order], stable=True)]
    order = order[in_trie[order]]
    sizes = size[order]
    par = parent[order]
    seg_start = torch.ones_like(par, dtype=torch.bool)
    seg_start[1:] = par[1:] != par[:-1]
    csum = torch.cumsum(sizes, 0) - sizes
    offset = csum - torch.cummax(torch.where(seg_start, csum, 0), 0).values
    before = torch.empty(m, dtype=torch.long, device=dev)  # nodes of the parent's subtree before this one
    before[order] = offset
    position = torch.full((m,), -1, dtype=torch.long, device=dev)
    for d in range(0, max_depth + 1):  # positions, shallowest first
        at = (depth == d).nonzero().squeeze(1)
        base = torch.where(parent[at] >= 0, position[parent[at].clamp_min(0)], -1)
        position[at] = base + 1 + before[at]
    return position
