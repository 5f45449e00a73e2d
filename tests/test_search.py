"""The fast greedy search against the plain heap of METHOD.md section 3, and the strata it gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.chain_search import NotSettled, chain_order, plan_levels
from explorer.graph import build_graph
from explorer.options import DEFAULT_SIZES
from explorer.orders import greedy_search, random_control_order, search_graph
from explorer.search import SearchGraph, greedy_order, random_keys, random_priorities, rank_weights, strata_edges
from tests.helpers import record, tiny_loaded
from tests.reference import heap_greedy_order


def random_dag(rng, n_nodes, max_in, n_weight_levels=None):
    """A random DAG (edges from lower to higher node ids, parallel edges allowed), rooted at the last
    node. With ``n_weight_levels`` weights take few values, so ties are everywhere."""
    ptr, src = [0, 0], []
    for v in range(1, n_nodes):
        k = int(rng.integers(0, max_in + 1))
        src.extend(rng.integers(0, v, size=k).tolist())
        ptr.append(len(src))
    m = len(src)
    if n_weight_levels:
        w = rng.integers(0, n_weight_levels, m) / n_weight_levels
    else:
        w = rng.random(m)
    return SearchGraph(np.array(ptr), np.array(src, dtype=np.int64), w.astype(np.float64), n_nodes - 1)


@pytest.mark.parametrize("levels", [None, 1, 2, 3, 10])
def test_fast_search_equals_plain_heap_on_random_graphs(levels):
    rng = np.random.default_rng(levels or 0)
    for _ in range(150):
        g = random_dag(rng, int(rng.integers(2, 60)), int(rng.integers(1, 8)), levels)
        np.testing.assert_array_equal(greedy_order(g), heap_greedy_order(g))


def test_fast_search_equals_plain_heap_on_a_large_graph():
    rng = np.random.default_rng(7)
    n = 3000
    # dense enough that most nodes are reached from the root
    ptr = np.concatenate([[0], np.cumsum(np.r_[0, rng.integers(1, 12, n - 1)])])
    src = np.concatenate([rng.integers(max(0, v - 50), v, ptr[v + 1] - ptr[v]) for v in range(n)]).astype(np.int64)
    g = SearchGraph(ptr, src, rng.integers(0, 5, len(src)) / 5.0, n - 1)
    fast = greedy_order(g)
    assert len(fast) > 5000
    np.testing.assert_array_equal(fast, heap_greedy_order(g))


@pytest.mark.parametrize("family", ["llama", "pythia"])
@pytest.mark.parametrize("weighting", ["l1", "ifr"])
def test_model_graph_order_equals_heap_and_is_connected(family, weighting):
    lm, _ = tiny_loaded(family)
    _, records = record(lm)
    g = build_graph(lm.adapter, records, weighting)
    sg, ids = search_graph(g)
    pos = greedy_order(sg)
    np.testing.assert_array_equal(pos, heap_greedy_order(sg))
    levels = g.layout.node_levels("cpu")
    chain = chain_order(sg.node_ptr, sg.src, rank_weights(sg.weight)[1], levels, sg.root)
    np.testing.assert_array_equal(chain.numpy(), pos)
    # every edge is popped once: E edges in all
    assert sorted(pos.tolist()) == list(range(g.layout.n_edges))
    # each edge's target is the output node or the source of an earlier edge: every prefix (every
    # stratum) is connected to the output node
    dec = g.layout.decode(ids[pos])
    reached = {g.layout.output_node}
    for dst, src in zip(dec["dst_node"], dec["src_node"]):
        assert dst in reached
        reached.add(src)


def test_negative_zero_weights_tie_with_zero_weights():
    rng = np.random.default_rng(11)
    for _ in range(50):
        g = random_dag(rng, int(rng.integers(2, 40)), 6, n_weight_levels=2)
        signed = np.where(rng.random(len(g.weight)) < 0.5, -g.weight, g.weight)  # -0.0 for half the zeros
        g = SearchGraph(g.node_ptr, g.src, np.where(g.weight == 0, signed, g.weight), g.root)
        np.testing.assert_array_equal(greedy_order(g), heap_greedy_order(g))


def test_trace_and_random_control_jobs_follow_the_plain_heap():
    lm, _ = tiny_loaded("llama")
    _, records = record(lm)
    g = build_graph(lm.adapter, records, "l1")
    sg, ids = search_graph(g)
    trace_order, weights = greedy_search(g.search_csr()).result()
    trace_order = trace_order.numpy()
    np.testing.assert_array_equal(trace_order, ids[heap_greedy_order(sg)])
    np.testing.assert_array_equal(weights, sg.weight[heap_greedy_order(sg)].astype(np.float32))
    random_control_order.clear()
    random_order = random_control_order(g.layout, 5, "cpu")
    keys = random_priorities(ids < g.layout.n_attention_ids, 5)
    np.testing.assert_array_equal(random_order, ids[heap_greedy_order(SearchGraph(sg.node_ptr, sg.src, keys, sg.root))])
    assert not np.array_equal(trace_order, random_order)
    # kept per shape and seed: the same array again, another seed another order
    assert random_control_order(g.layout, 5, "cpu") is random_order
    assert not np.array_equal(random_control_order(g.layout, 6, "cpu"), random_order)


def test_a_random_control_order_too_large_to_keep_stays_on_its_device():
    from explorer.orders import _RandomOrders

    lm, _ = tiny_loaded("llama")
    _, records = record(lm)
    layout = build_graph(lm.adapter, records).layout
    kept = _RandomOrders()(layout, 5, "cpu")
    small = _RandomOrders(max_bytes=8 * layout.n_edges - 1)
    got = small(layout, 5, "cpu")
    assert isinstance(kept, np.ndarray) and not kept.flags.writeable
    assert isinstance(got, torch.Tensor) and not small._orders  # not kept
    assert got.dtype == torch.int32  # half the bytes of int64 ids while it waits for the masked passes
    np.testing.assert_array_equal(got.numpy(), kept)


def test_edge_ids_past_int32_stay_int64():
    """The 8B shape at 2,048 tokens has 2.08 G edges but ids up to 4.3 G: int32 would wrap them."""
    from explorer.edges import EdgeLayout
    from explorer.orders import _compact_ids

    wide, narrow = EdgeLayout(32, 32, 2048), EdgeLayout(28, 16, 2048)
    assert wide.n_edges < 2**31 < wide.n_ids
    ids = torch.tensor([0, 2**31 + 5, wide.n_ids - 1])
    assert _compact_ids(ids, wide).dtype == torch.int64 and torch.equal(_compact_ids(ids, wide), ids)
    assert _compact_ids(ids[:1], narrow).dtype == torch.int32


def test_random_control_takes_residual_and_mlp_edges_first():
    is_attn = np.array([True, False, True, False])
    keys = random_priorities(is_attn, seed=3)
    assert (keys[~is_attn] >= 1).all() and (keys[is_attn] < 1).all()
    np.testing.assert_array_equal(keys, random_priorities(is_attn, seed=3))


def test_random_keys_on_the_device_are_the_hosts_keys():
    """Drawn in steps (here 7 at a time, over 50 keys), the same float64 values as one host draw."""
    is_attn = np.random.default_rng(0).random(50) < 0.8
    got = random_keys(torch.from_numpy(is_attn), seed=9, step=7)
    assert got.dtype == torch.float64
    np.testing.assert_array_equal(got.numpy(), random_priorities(is_attn, seed=9))


def test_strata_are_nested_and_skip_empty_sizes():
    strata = strata_edges(DEFAULT_SIZES, 1000)
    sizes = [s for s, _ in strata]
    edges = [n for _, n in strata]
    assert sizes[0] == 1e-3 and sizes[-1] == 1.0  # 1e-5 .. 8e-4 of 1000 edges round to 0
    assert edges == sorted(edges) and edges[-1] == 1000
    assert len(DEFAULT_SIZES) == 27
    assert all(n == int(np.floor(s * 1000)) for s, n in strata)


def _chain_sorted(graph: SearchGraph, order: np.ndarray) -> np.ndarray:
    """The edges of ``order`` sorted by their chains: each edge's heap key is (weight rank, push counter);
    its reach path runs from the root through the edges that first reached each node down to the edge;
    its chain is the path's keys that are larger than every key after them, root first. Chains compare
    lexicographically, a proper prefix first."""
    n = len(graph.node_ptr) - 1
    dst = np.repeat(np.arange(n), np.diff(graph.node_ptr))
    pos = np.arange(len(graph.src)) - graph.node_ptr[dst]
    base, reach = {graph.root: 0}, {}
    counter = graph.node_ptr[graph.root + 1] - graph.node_ptr[graph.root]
    for e in order:  # push counters and reach edges, as the search made them
        u = int(graph.src[e])
        if u not in base:
            base[u], reach[u] = counter, e
            counter += graph.node_ptr[u + 1] - graph.node_ptr[u]
    rank = {w: i for i, w in enumerate(sorted(set((-graph.weight).tolist())))}

    def chain(e):
        path, v = [e], int(dst[e])
        while v != graph.root:
            path.append(reach[v])
            v = int(dst[reach[v]])
        out = []
        for f in reversed(path):
            k = (rank[-graph.weight[f]], base[int(dst[f])] + pos[f])
            while out and out[-1] < k:
                out.pop()
            out.append(k)
        return out

    return np.array(sorted(order.tolist(), key=chain), dtype=np.int64)


def test_greedy_order_sorts_edges_by_their_reach_chains():
    """A property a parallel search could build on: the greedy order is a sort by each edge's chain of
    bottleneck keys (see :func:`_chain_sorted`), ties in weight included."""
    rng = np.random.default_rng(12)
    for i in range(200):
        g = random_dag(rng, int(rng.integers(2, 40)), 5, n_weight_levels=int(rng.integers(1, 4)) if i % 2 else None)
        order = greedy_order(g)
        np.testing.assert_array_equal(_chain_sorted(g, order), order)


def _id_levels(graph: SearchGraph) -> np.ndarray:
    """Levels for :func:`chain_order` on a DAG whose edges go from lower to higher node ids."""
    return (len(graph.node_ptr) - 2) - np.arange(len(graph.node_ptr) - 1)


@pytest.mark.parametrize("levels", [None, 1, 2, 3, 10])
def test_chain_search_equals_plain_heap_on_random_graphs(levels):
    rng = np.random.default_rng(21)
    for _ in range(60):
        g = random_dag(rng, int(rng.integers(2, 40)), 6, n_weight_levels=levels)
        signed = np.where(rng.random(len(g.weight)) < 0.5, -g.weight, g.weight)  # -0.0 for half the zeros
        g = SearchGraph(g.node_ptr, g.src, np.where(g.weight == 0, signed, g.weight), g.root)
        got = chain_order(g.node_ptr, g.src, rank_weights(g.weight)[1], _id_levels(g), g.root).numpy()
        np.testing.assert_array_equal(got, heap_greedy_order(g))


@pytest.mark.parametrize("steps", [None, (5, 7)], ids=["whole", "in steps"])
def test_chain_search_on_a_layered_graph_with_many_ties(monkeypatch, steps):
    """Weights from four values over a model-shaped graph: push counters decide most ties, and are only
    known once nodes are reached (the search iterates until they agree). "in steps": the whole-graph work
    and the chains' gathers in steps of 5 edges and 7 entries, as a long prompt's are."""
    from explorer import chain_search, range_sort
    from explorer.edges import EdgeLayout
    from explorer.graph import TokenGraph

    if steps is not None:
        monkeypatch.setattr(chain_search, "CHUNK", steps[0])
        monkeypatch.setattr(range_sort, "CHUNK", steps[0])
        monkeypatch.setattr(chain_search, "GATHER", steps[1])
    gen = torch.Generator().manual_seed(3)
    L, H, T = 4, 3, 9
    q = lambda *shape: torch.randint(0, 4, shape, generator=gen).float()
    for parallel in (False, True):
        g = TokenGraph(EdgeLayout(L, H, T, parallel), "l1", q(L, H, T, T), q(L, T), q(L, T), q(L, T))
        sg, ids = search_graph(g)
        levels, rank = g.layout.node_levels("cpu"), rank_weights(sg.weight)[1]
        got = chain_order(sg.node_ptr, sg.src, rank, levels, sg.root).numpy()
        np.testing.assert_array_equal(got, heap_greedy_order(sg))
        plans = plan_levels(sg.node_ptr, sg.src, levels)  # made beforehand, as a trace hands them over
        np.testing.assert_array_equal(chain_order(sg.node_ptr, plans, rank, levels, sg.root).numpy(), got)


def test_traces_are_the_same_with_the_chain_search(monkeypatch):
    """The engine's choice of search (by graph size and device) changes no result: force the device
    search on the CPU for the greedy order and the random control."""
    from explorer import orders
    from explorer.results import Settings
    from explorer.trace import trace_prompt

    lm, _ = tiny_loaded("llama")
    settings = Settings(controls=True, sizes=(0.01, 0.1, 0.5, 1.0))
    random_control_order.clear()
    heap = trace_prompt(lm, "one two three four five", settings)
    monkeypatch.setattr(orders, "searched_on_device", lambda layout, device: True)
    planned = []
    monkeypatch.setattr(orders, "plan_levels", lambda *args: planned.append(1) or plan_levels(*args))
    random_control_order.clear()
    device = trace_prompt(lm, "one two three four five", settings)
    np.testing.assert_array_equal(device.order, heap.order)
    assert len(planned) == 1  # the random control's level plans were handed to the greedy search
    assert [s.outputs["random"].tv for s in device.strata] == [s.outputs["random"].tv for s in heap.strata]

    def unsettled(*args):
        raise NotSettled("test")

    # when the chain search gives up (out of memory, or counters that do not settle) the heap search runs
    monkeypatch.setattr(orders, "chain_order", unsettled)
    random_control_order.clear()
    fallback = trace_prompt(lm, "one two three four five", settings)
    random_control_order.clear()
    np.testing.assert_array_equal(fallback.order, heap.order)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dense_rank_by_ranges_of_values_equals_the_whole_sort(monkeypatch, dtype):
    """Past ``CHUNK`` edges the ranks are made a range of values at a time: the same ranks as one sort of
    all the weights, with ties, both zeros, infinities and one value that fills many ranges' worth."""
    from explorer import range_sort

    rng = np.random.default_rng(4)
    monkeypatch.setattr(range_sort, "CHUNK", 16)
    for n, levels in [(17, 3), (200, 1000), (500, 7), (1000, 0)]:
        w = rng.integers(0, levels, n).astype(float) if levels else rng.random(n)
        w[rng.random(n) < 0.1] = 0.0
        w[rng.random(n) < 0.1] = -0.0
        w[rng.random(n) < 0.02] = np.inf
        w[: n // 3] = 0.5  # one heavy value
        weight = torch.tensor(rng.permutation(w), dtype=dtype)
        np.testing.assert_array_equal(range_sort.dense_rank(weight).numpy(), rank_weights(weight)[1].numpy())
    with pytest.raises(ValueError, match="NaN"):
        range_sort.dense_rank(torch.tensor([1.0, float("nan")] * 20, dtype=dtype))


def teststable_sort_by_ranges_of_values_equals_one_stable_sort(monkeypatch):
    from explorer import range_sort

    rng = np.random.default_rng(5)
    monkeypatch.setattr(range_sort, "CHUNK", 8)
    for n, levels in [(9, 2), (300, 5), (300, 1000), (1000, 1)]:
        value = torch.tensor(rng.integers(-1, levels, n), dtype=torch.int32)
        value[rng.random(n) < 0.4] = 3  # one value with many items
        items = torch.tensor(rng.permutation(n), dtype=torch.int32)
        expected = items[torch.sort(value[items.long()], stable=True).indices]
        assert torch.equal(range_sort.stable_sort_by(items, value), expected)


def test_group_start_values_and_common_prefixes_equal_the_scans_they_replace():
    """``_at_group_start`` and ``_common_prefix`` (a gather and a reduction) give what ``torch.cummax`` of
    the start values and a cumulative product of equal columns gave, with and without a start at the
    first element, and with rows that are equal in every column."""
    from explorer import chain_search

    rng = np.random.default_rng(6)
    for n in (1, 2, 50, 400):
        x = torch.tensor(np.cumsum(rng.integers(0, 4, n)), dtype=torch.int32)
        start = torch.tensor(rng.random(n) < 0.2)
        for first in (False, True):
            start[0] = first
            before = torch.tensor(-7, dtype=torch.int32)
            scanned = torch.cummax(torch.where(start, x, 0), 0).values
            expected = torch.where(start.cumsum(0) > 0, scanned, before)
            assert torch.equal(chain_search._at_group_start(x, start, before), expected)
    a = torch.tensor(rng.integers(0, 3, (300, 5)))
    b = a.clone()
    b[rng.random((300, 5)) < 0.3] = 9
    expected = (a == b).long().cumprod(1).sum(1)
    assert (expected == 5).any() and (expected == 0).any()
    assert torch.equal(chain_search._common_prefix(a, b), expected)
