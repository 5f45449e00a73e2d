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

from dataclasses import dataclass

import torch

from explorer.range_sort import gather, stable_sort_by

MAX_ROUNDS = 64
CHUNK = 1 << 26
"""Edges per step of the whole-graph elementwise work (the heap keys): each step's int64 temporaries are
``CHUNK`` long, not ``M``."""
GATHER = 1 << 25
"""Most entries of one ``[edges, depth]`` gather of chains (256 MiB of int64); a level's larger gathers
are made in parts."""


class NotSettled(RuntimeError):
    """The push counters did not agree within ``MAX_ROUNDS`` rounds (the heap search still can)."""


def chain_order(node_ptr, src, rank, node_level, root: int) -> torch.Tensor:
    """The CSR positions of the edges in greedy order, ``[M']`` int64 on the graph's device: the order in
    which :func:`explorer.search.run_search` returns their labels.

    CSR arrays by target node in push order (tensors on one device, or arrays): ``node_ptr [N+1]``,
    ``src [M]`` (or its :class:`LevelPlans`, which are all the search needs of it: a caller that plans
    first can free it), ``rank [M]`` int32, the dense rank of each edge's weight (0 the heaviest, equal
    weights one rank: :func:`explorer.range_sort.dense_rank`, so that a caller can free the weights);
    ``node_level [N]``: 0 for ``root`` and, for every edge ``u -> v``, ``node_level[u] > node_level[v]``.
    Edges whose target cannot reach the root are left out, as the search never meets them.

    Memory beyond the inputs: the level plans (two int32 entries per edge) and the keys' order (one),
    held across rounds, each round's trie (an int32 parent, an int16 depth and an int32 position
    per edge), and temporaries of some 13 bytes per edge (by count) plus one step's: sorts go a range of
    values at a time (:mod:`explorer.range_sort`), whole-graph elementwise work in steps of ``CHUNK`` edges, a
    level's chain comparisons in parts of ``GATHER`` entries (``bench/memory_bench.py --search-parts``
    measures the parts' peaks)."""
    rank = torch.as_tensor(rank)
    dev = rank.device
    if len(rank) == 0:
        return torch.zeros(0, dtype=torch.long, device=dev)
    ptr = torch.as_tensor(node_ptr, device=dev).long()
    level = torch.as_tensor(node_level, device=dev).long()
    n = len(ptr) - 1
    deg = ptr.diff()
    dst = _Targets(ptr)
    levels = (src if isinstance(src, LevelPlans) else plan_levels(ptr, src, level)).levels
    depth_cap = int(level.max()) + 2  # a chain has at most one key per level
    # first guess of the order of reaching nodes: by level, then node id
    offset = _push_bases(torch.argsort(level * n + torch.arange(n, device=dev)), deg) - ptr[:-1]
    key_order = _argsort_keys(rank, dst, offset)
    live_order = None  # the edges in the trie, in key order; which edges those are does not depend on the keys
    for _ in range(MAX_ROUNDS):
        position, reach = _trie_positions(rank, dst, offset, key_order, levels, root, n, depth_cap)
        offset = _push_bases(_reach_order(position, reach, root), deg) - ptr[:-1]
        if live_order is None:
            live = position[key_order] >= 0
            live_order = key_order if bool(live.all()) else key_order[live]
            del live
        # the result depends on the keys' order only: same order, same result
        if _increasing(rank, dst, offset, live_order):
            order = torch.empty(len(live_order), dtype=torch.long, device=dev)
            for i in range(0, len(live_order), CHUNK):
                at = live_order[i : i + CHUNK].long()
                order[position[at].long()] = at
            return order
        position = live_order = key_order = None  # room for the next sort
        key_order = _argsort_keys(rank, dst, offset)
    raise NotSettled(f"push counters did not settle in {MAX_ROUNDS} rounds")


class _Targets:
    """Each edge's target node, looked up in ``node_ptr`` when asked (``dst[at]``: int64 like ``at``)
    rather than held as an ``[M]`` array."""

    def __init__(self, node_ptr: torch.Tensor):
        self.node_ptr = node_ptr

    def __getitem__(self, at: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.node_ptr, at.long(), right=True) - 1


def _keys(rank, dst, offset, at: torch.Tensor) -> torch.Tensor:
    """The heap keys ``rank << 32 | push counter`` of the edges ``at`` ``[K]`` (int64), the push counter of
    edge ``i`` being ``offset[dst[i]] + i``."""
    at = at.long()
    return (rank[at].long() << 32) | (offset[dst[at]] + at)


def _argsort_keys(rank, dst, offset) -> torch.Tensor:
    """``[M]`` int32: the edges by increasing heap key, that is by rank, ties by push counter. The push
    counters number the edges ``0 .. M-1`` (each node's in-edges take the next ``deg`` counters, reached
    nodes or not), so the edges by counter are one scatter, and one stable sort of their int32 ranks
    finishes the order: no ``[M]`` int64 key is formed."""
    m = len(rank)
    dev = rank.device
    by_counter = torch.empty(m, dtype=torch.int32, device=dev)
    for i in range(0, m, CHUNK):
        at = torch.arange(i, min(i + CHUNK, m), device=dev)
        by_counter[offset[dst[at]] + at] = at.int()
    return stable_sort_by(by_counter, rank)


def _increasing(rank, dst, offset, order) -> bool:
    """Whether the heap keys of the edges ``order [K]`` increase along it."""
    ok = torch.ones((), dtype=torch.bool, device=rank.device)
    for i in range(0, len(order), CHUNK):
        k = _keys(rank, dst, offset, order[max(i - 1, 0) : i + CHUNK])  # one edge of overlap with the last step
        ok &= (k[1:] > k[:-1]).all()
    return bool(ok)


@dataclass
class _LevelPlan:
    """The fixed structure of one level's out-edges, the same in every round.

    ``edges [E_l]`` (int32) sorted by source, then target; ``pair [E_l]`` (int32): the (source, target)
    pair of each edge; ``pair_target [P]``; ``sources [S]`` (distinct, ascending) and ``source_first
    [S]``, the first pair of each; ``rounds``: per tournament round, the pair slots that take on the slot
    ``step`` further, and ``step``.
    """

    edges: torch.Tensor
    pair: torch.Tensor
    pair_target: torch.Tensor
    sources: torch.Tensor
    source_first: torch.Tensor
    rounds: list[tuple[torch.Tensor, int]]


@dataclass
class LevelPlans:
    """A graph's :class:`_LevelPlan` for each level with out-edges, from level 1 up (the order they are
    processed in): they depend on the graph's shape only, so one shape's two searches (the random
    control's, the greedy one) can share them. Two int32 entries per edge."""

    levels: list[_LevelPlan]


def plan_levels(node_ptr, src, node_level) -> LevelPlans:
    """The level plans of the CSR graph ``node_ptr [N+1]``, ``src [M]`` with ``node_level [N]`` (as
    :func:`chain_order` takes them), on ``src``'s device."""
    src = torch.as_tensor(src)
    dev = src.device
    dst = _Targets(torch.as_tensor(node_ptr, device=dev).long())
    level = torch.as_tensor(node_level, device=dev).long()
    n = len(level)
    top = int(level.max()) + 1
    # by (source level, source), ties in CSR order, which is by target: int32 keys while they fit
    key = torch.empty(len(src), dtype=torch.int32 if top * n < 2**31 else torch.long, device=dev)
    per_level = torch.zeros(top, dtype=torch.long, device=dev)  # out-edges per level of their source
    for i in range(0, len(src), CHUNK):
        u = src[i : i + CHUNK].long()
        key[i : i + CHUNK] = level[u] * n + u
        per_level += torch.bincount(level[u], minlength=top)
    if key.dtype == torch.int32:
        by_source = stable_sort_by(torch.arange(len(src), dtype=torch.int32, device=dev), key)
    else:
        by_source = torch.argsort(key, stable=True).int()
    del key
    counts = per_level.tolist()
    plans, start = [], counts[0]
    for lv in range(1, len(counts)):
        e = by_source[start : start + counts[lv]]
        start += counts[lv]
        if len(e) == 0:
            continue
        u, v = src[e].long(), dst[e]
        new_pair = _group_starts(u, v)
        pair = (torch.cumsum(new_pair, 0, dtype=torch.int32) - 1).int()
        pair_source, pair_target = u[new_pair], v[new_pair]
        del u, v, new_pair
        new_source = _group_starts(pair_source)
        idx = torch.arange(len(pair_source), device=dev)
        place = idx - _at_group_start(idx, new_source, 0)  # place among its source's pairs
        group = torch.cumsum(new_source.long(), 0) - 1
        group_size = torch.bincount(group)[group]
        rounds, step, longest = [], 1, int(group_size.max())
        while step < longest:
            slots = torch.nonzero((place % (2 * step) == 0) & (place + step < group_size)).squeeze(1)
            rounds.append((slots.int(), step))
            step *= 2
        sources, source_first = pair_source[new_source].int(), idx[new_source].int()
        plans.append(_LevelPlan(e, pair, pair_target.int(), sources, source_first, rounds))
    return LevelPlans(plans)


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
    first = torch.where(reach >= 0, position[reach.clamp_min(0)].long(), len(position) + 1)
    first[root] = -1
    return torch.argsort(first * n + torch.arange(n, device=reach.device))


def _trie_positions(rank, dst, offset, key_order, levels: list[_LevelPlan], root: int, n: int, depth_cap: int):
    """Each edge's position in the order (-1 when its target is never reached) ``[M]`` int32 and each
    node's reaching edge (-1 for the root and unreached nodes) ``[N]``, for the heap keys given by
    ``rank``, ``dst`` and ``offset`` (see :func:`_keys`), whose order is ``key_order``."""
    dev = rank.device
    m = len(rank)
    # each reached node's chain [N, W]: its keys (decreasing, padded with -1) and their edges; W is kept
    # one above the longest chain so far (chains are short: 12 keys at most on a 0.6B model's 2,048
    # tokens, of 58 possible), since the per-edge gathers of rows cost W entries each
    chain_key = torch.full((n, 2), -1, dtype=torch.long, device=dev)
    chain_edge = torch.full((n, 2), -1, dtype=torch.long, device=dev)
    reached = torch.zeros(n, dtype=torch.bool, device=dev)
    reached[root] = True
    reach = torch.full((n,), -1, dtype=torch.long, device=dev)
    parent = torch.full((m,), -1, dtype=torch.int32, device=dev)  # trie parent: an edge, -1 the root
    depth = torch.full((m,), -1, dtype=torch.int16, device=dev)  # -1: never reached
    for plan in levels:
        e = plan.edges.long()
        v, k_e = dst[e], _keys(rank, dst, offset, e)
        live = reached[v]
        above = _count_above(chain_key, v, k_e)  # keys of chain(v) above key(e)
        depth[e] = torch.where(live, above, -1).to(torch.int16)
        parent[e] = torch.where(live & (above > 0), chain_edge[v, (above - 1).clamp_min(0)], -1).int()
        # of the edges from one source into one target the smallest key has the smallest chain
        pair = plan.pair.long()
        n_pairs = len(plan.pair_target)
        smallest = torch.full((n_pairs,), torch.iinfo(torch.long).max, device=dev)
        smallest.scatter_reduce_(0, pair, k_e, "amin")
        first = torch.full((n_pairs,), -1, dtype=torch.long, device=dev)
        first.scatter_reduce_(0, pair, torch.where(k_e == smallest[pair], torch.arange(len(e), device=dev), -1), "amax")
        # a tournament among each source's pairs: slot a takes on slot a + step
        pv, pa, pl = plan.pair_target, above[first], reached[plan.pair_target]
        best = torch.arange(n_pairs, device=dev)
        for a, step in plan.rounds:
            ia, ib = best[a], best[a + step]
            best[a] = torch.where(_less(ib, ia, pv, pa, smallest, pl, chain_key, chain_edge), ib, ia)
        win_pair = best[plan.source_first]
        win, got, vw, kw = e[first[win_pair]], pl[win_pair], pv[win_pair], pa[win_pair]
        keep = torch.arange(chain_key.shape[1], device=dev)[None, :] < kw[:, None]
        row_key = torch.where(keep, chain_key[vw], -1).scatter_(1, kw[:, None], smallest[win_pair][:, None])
        row_edge = torch.where(keep, chain_edge[vw], -1).scatter_(1, kw[:, None], win[:, None])
        u = plan.sources
        chain_key[u] = torch.where(got[:, None], row_key, -1)
        chain_edge[u] = torch.where(got[:, None], row_edge, -1)
        reached[u] = got
        reach[u] = torch.where(got, win, -1)
        chain_key, chain_edge = (_widened(c, int(kw.max()) + 2, depth_cap) for c in (chain_key, chain_edge))
    return _preorder(key_order, parent, depth), reach


def _widened(chains: torch.Tensor, width: int, cap: int) -> torch.Tensor:
    """``chains [N, W]`` padded with -1 to at least ``width`` columns (doubling, at most ``cap``): a
    chain of length ``k`` needs ``k + 1`` columns, so that the next level can append to it."""
    if width <= chains.shape[1]:
        return chains
    wider = torch.full(
        (len(chains), min(max(width, 2 * chains.shape[1]), cap)), -1, dtype=chains.dtype, device=chains.device
    )
    wider[:, : chains.shape[1]] = chains
    return wider


def _count_above(chain_key: torch.Tensor, v: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``[K]``: how many keys of the chain of node ``v[i]`` are larger than ``k[i]`` (rows of
    ``chain_key [N, D]`` decrease, padded with -1), gathered in parts of at most ``GATHER`` entries."""
    step = max(1, GATHER // chain_key.shape[1])
    parts = [(chain_key[v[i : i + step]] > k[i : i + step, None]).sum(1) for i in range(0, len(v), step)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _less(i, j, v, above, k_e, live, chain_key, chain_edge) -> torch.Tensor:
    """Whether candidate ``i``'s chain is smaller than ``j``'s (elementwise over index tensors)."""
    vi, vj = v[i], v[j]
    same = _common_prefix(chain_edge[vi], chain_edge[vj])  # of chain(v)s
    at = torch.minimum(torch.minimum(above[i], above[j]), same)
    ci = torch.where(at == above[i], k_e[i], chain_key[vi, at.clamp_max(chain_key.shape[1] - 1)])
    cj = torch.where(at == above[j], k_e[j], chain_key[vj, at.clamp_max(chain_key.shape[1] - 1)])
    return (live[i] & ~live[j]) | (live[i] & live[j] & (ci < cj))


def _preorder(key_order, parent, depth) -> torch.Tensor:
    """Position of each trie node (edge) in the pre-order with children by key (``key_order [M]``: the
    edges by increasing key), ``-1`` for edges outside the trie (``depth < 0``): ``[M]`` int32.

    A depth at a time: an edge's position is its parent's plus one plus the sizes of the subtrees of its
    siblings with smaller keys (a stable sort of that depth's edges, in key order, by parent). One
    ``[M]`` buffer holds the subtree sizes, then, a depth at a time, the positions (each depth's sizes are
    read before they are replaced, its parents' positions are already there)."""
    d = gather(depth, key_order)  # the depths in key order: one pass per depth finds its edges
    deepest = int(d.max()) if len(d) else -1
    buf = (depth >= 0).int()
    for k in range(deepest, 0, -1):  # subtree sizes, deepest first
        at = _at_depth(key_order, d, k)
        for i in range(0, len(at), CHUNK):
            buf.index_add_(0, parent[at[i : i + CHUNK]], buf[at[i : i + CHUNK]])
    for k in range(deepest + 1):  # positions, shallowest first
        at = stable_sort_by(_at_depth(key_order, d, k), parent)  # siblings next to each other, by key
        # in steps, carrying the running sum of sizes, the sum where the last group began, its parent
        total = first = torch.zeros((), dtype=torch.int32, device=parent.device)
        last = torch.full((), -2, dtype=torch.int32, device=parent.device)
        for i in range(0, len(at), CHUNK):
            a = at[i : i + CHUNK]
            p, sizes = parent[a], buf[a]
            x = torch.cumsum(sizes, 0, dtype=torch.int32) - sizes + total  # sizes before, in this depth
            start = _group_starts(p)
            start[0] = p[0] != last
            base = _at_group_start(x, start, first)  # first: before this step's first new group
            buf[a] = torch.where(p >= 0, buf[p.clamp_min(0)], -1) + 1 + x - base
            total, first, last = x[-1] + sizes[-1], base[-1], p[-1]
    return buf.masked_fill_(depth < 0, -1)


def _at_depth(key_order, d, k: int) -> torch.Tensor:
    """The edges at depth ``k``, in key order (int32), in steps of ``CHUNK``; ``d``: the depths of
    ``key_order``."""
    return torch.cat([key_order[i : i + CHUNK][d[i : i + CHUNK] == k] for i in range(0, len(d), CHUNK)])


def _group_starts(*columns: torch.Tensor) -> torch.Tensor:
    """``[K]`` bool: where a run of equal rows of ``columns`` (each ``[K]``, sorted into runs) begins."""
    start = torch.zeros_like(columns[0], dtype=torch.bool)
    start[:1] = True
    for c in columns:
        start[1:] |= c[1:] != c[:-1]
    return start


def _at_group_start(x: torch.Tensor, start: torch.Tensor, before) -> torch.Tensor:
    """``x [K]`` where each element's run begins (``start`` from :func:`_group_starts`; ``before`` for
    elements ahead of the first start): the runs numbered by a cumulative sum of ``start``, their first
    values gathered. (``torch.cummax`` of the start values gives the same for a non-decreasing ``x``, but
    its CUDA kernel took 40% of a long prompt's search.)"""
    run = start.cumsum(0, dtype=torch.int32)
    firsts = x[start]
    if not len(firsts):
        return torch.full_like(x, 0).add_(before)
    begun = run > 0
    return torch.where(begun, firsts[run.sub_(1).clamp_min_(0)], before)


def _common_prefix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[K]`` int64: the length of the common prefix of each row of ``a`` and ``b`` (``[K, D]``): the
    first column where they differ, or ``D`` (a reduction, where a cumulative product is a slow scan)."""
    differ = a != b
    return torch.where(differ.any(1), differ.to(torch.uint8).argmax(1), a.shape[1])
