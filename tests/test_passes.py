"""The masked passes planned and run while the greedy search still pops its order (explorer/passes.py,
explorer.orders.GreedyOrder, explorer.search.HeapSearch)."""

from __future__ import annotations

import threading
from contextlib import nullcontext

import numpy as np
import pytest
import torch

import explorer.orders as orders
import explorer.passes as passes
from explorer.edges import ATTENTION, MLP, RESIDUAL_ATTN, RESIDUAL_MLP, EdgeLayout
from explorer.graph import TokenGraph, build_graph
from explorer.intervene import EdgeRanks, MaskSpec, kept_mlp_rows, masked_logits
from explorer.options import MODES
from explorer.orders import GreedyOrder, greedy_search, search_graph
from explorer.passes import batch_bounds, plan_passes
from explorer.results import Settings
from explorer.search import HeapSearch, prepare_search, run_search, strata_edges
from explorer.tally import OrderTally, csr_codes, device_segment_counts, host_segment_counts, kind_codes
from explorer.trace import trace_modes, trace_prompt
from tests.helpers import IDS, record, tiny_loaded
from tests.reference import heap_greedy_order
from tests.test_search import random_dag


def test_a_search_run_a_stretch_at_a_time_pops_the_same_order():
    rng = np.random.default_rng(4)
    for _ in range(30):
        g = random_dag(rng, int(rng.integers(2, 40)), 6, n_weight_levels=2)
        job = prepare_search(g.node_ptr, g.src, g.weight, np.arange(len(g.src)), g.root)
        search, plain = HeapSearch(job), heap_greedy_order(g)  # edges the root does not reach are never popped
        for stop in sorted(rng.integers(0, len(g.src) + 2, size=4).tolist()):
            assert search.advance(stop) == min(stop, len(plain)) == search.popped
        assert search.advance(len(g.src)) == len(plain) and search.done
        np.testing.assert_array_equal(search.order[: len(plain)], plain)
        np.testing.assert_array_equal(run_search(job), plain)


@pytest.mark.parametrize("background", [False, True])
def test_the_greedy_order_taken_a_prefix_at_a_time_is_the_whole_order(background, monkeypatch):
    monkeypatch.setattr(orders, "STRETCH", 5)
    lm, _ = tiny_loaded("llama")
    _, records = record(lm)
    csr = build_graph(lm.adapter, records, "l1").search_csr()
    whole, weights = greedy_search(csr).result()
    greedy = greedy_search(csr)
    if background:
        greedy.start()
    parts = []
    for n in (1, 3, 3, 40, 41, 200, len(whole) + 10):
        before = greedy.given
        parts.append(greedy.take(n).numpy())
        assert greedy.given >= min(n, len(whole)) and greedy.given == before + len(parts[-1])
    np.testing.assert_array_equal(np.concatenate(parts), whole.numpy())
    ids, again = greedy.result()
    np.testing.assert_array_equal(ids.numpy(), whole.numpy())
    np.testing.assert_array_equal(again, weights)


def test_a_failed_background_search_raises_where_its_order_is_waited_for(monkeypatch):
    lm, _ = tiny_loaded("llama")
    _, records = record(lm)
    greedy = greedy_search(build_graph(lm.adapter, records, "l1").search_csr())

    def broken(self, stop):
        raise RuntimeError("search broke")

    monkeypatch.setattr(HeapSearch, "advance", broken)
    greedy.start()
    with pytest.raises(RuntimeError, match="search broke"):
        greedy.take(10)


def test_the_plan_puts_random_controls_first_then_strata_smallest_first():
    settings = Settings(controls=True, compare_modes=True, sizes=(0.1, 0.5, 1.0))
    plan = plan_passes([[3, 10, 20], [5, 9]], settings, ("all", "attention-kept"))
    assert len(plan) == 3 * 2 * 4 + 2 * 2 * 4  # strata x modes x variants, per item
    first = plan[:24]
    assert [p.item for p in first] == [0] * 24
    assert all(p.variant == "random" and p.needs == 0 for p in first[:6])
    assert all(p.variant != "random" for p in first[6:])
    needs = [p.needs for p in first[6:]]
    assert needs == sorted(needs) and set(needs) == {3, 10, 20}
    assert {p.spec.order_index for p in plan[:24]} == {0, 1} and {p.spec.order_index for p in plan[24:]} == {2, 3}
    assert all(p.spec.n_keep == p.needs for p in plan if p.variant != "random")


def test_each_batch_reads_only_edges_already_placed_and_the_trace_is_the_same(monkeypatch):
    """With the search slowed and its progress reported every 7 edges, the first batches run while it
    still pops, each with every edge it reads placed; the trace equals one whose search ran first."""
    lm, _ = tiny_loaded("llama")
    settings = Settings(controls=True, sizes=(0.01, 0.05, 0.1, 0.5, 1.0), batch_size=3)
    monkeypatch.setattr(GreedyOrder, "start", lambda self: self.result())  # the search done before the passes
    ref = trace_modes(lm, "a tiny prompt here", settings)
    monkeypatch.undo()

    monkeypatch.setattr(orders, "STRETCH", 7)
    advance, seen = HeapSearch.advance, []

    def slow(self, stop):
        threading.Event().wait(0.002)
        return advance(self, stop)

    run_batches = passes.run_batches

    def checked(inst, input_ids, ranks, plan, batch_size, positions, ready, hold, tallies, edges, beside_search):
        def checked_ready(r, batch):
            ready(r, batch)
            placed = int((r.table[0] < len(ref[0].order)).sum())
            seen.append((max(p.needs for p in batch), placed, searches[0].done))

        assert beside_search
        args = (inst, input_ids, ranks, plan, batch_size, positions, checked_ready, hold, tallies, edges)
        return run_batches(*args, beside_search)

    searches = []
    init = HeapSearch.__init__

    def remember(self, job):
        init(self, job)
        if threading.current_thread() is threading.main_thread():  # the greedy search, not a random control's
            searches.append(self)

    monkeypatch.setattr(HeapSearch, "advance", slow)
    monkeypatch.setattr(HeapSearch, "__init__", remember)
    monkeypatch.setattr("explorer.trace.run_batches", checked)
    got = trace_modes(lm, "a tiny prompt here", settings)
    assert all(needs <= placed for needs, placed, _ in seen)
    assert not seen[0][2]  # the first batch ran before the search was done
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a.order, b.order)
        np.testing.assert_array_equal(a.order_weights, b.order_weights)
        assert [s.outputs for s in a.strata] == [s.outputs for s in b.strata]
        assert [(s.kinds, s.components) for s in a.strata] == [(s.kinds, s.components) for s in b.strata]
    assert list(got[0].strata[0].outputs) == ["trace", "inverse", "random"]


def test_batches_hold_at_most_the_batch_size_and_one_pass_is_cut_in_two_beside_a_search():
    assert batch_bounds(81, 32, True) == batch_bounds(81, 32, False) == [(0, 32), (32, 64), (64, 81)]
    assert batch_bounds(81, 81, False) == [(0, 81)]
    assert batch_bounds(81, 81, True) == [(0, 41), (41, 81)]  # the first half runs while the search ends
    assert batch_bounds(1, 8, True) == [(0, 1)]


def test_a_trace_without_controls_runs_its_passes_as_the_search_goes():
    lm, _ = tiny_loaded("gpt2")
    tr = trace_prompt(lm, "a tiny prompt", Settings(sizes=(0.01, 0.1, 1.0), batch_size=1))
    assert list(tr.strata[0].outputs) == ["trace"] and tr.strata[-1].trace.tv < 1e-5


def _orders_with_runs(layout, seed):
    """Two orders of every edge of ``layout``'s graph that hold the runs the masks repeat over: the greedy
    one with residual edges first, then the rest shuffled; the random one with every residual and MLP
    edge before the attention edges (as the random control's)."""
    rng = np.random.default_rng(seed)
    L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
    g = TokenGraph(layout, "l1", torch.rand(L, H, T, T), torch.rand(L, T), torch.rand(L, T), torch.rand(L, T))
    _, ids = search_graph(g)
    kind = layout.kind(ids)
    residual = np.isin(kind, [RESIDUAL_ATTN, RESIDUAL_MLP])
    greedy = np.concatenate([rng.permutation(ids[residual])[: residual.sum() // 2], rng.permutation(ids[~residual])])
    greedy = np.concatenate([greedy, rng.permutation(np.setdiff1d(ids, greedy))])
    random = np.concatenate([rng.permutation(ids[kind != ATTENTION]), rng.permutation(ids[kind == ATTENTION])])
    return greedy, random


def _planned(family):
    """A tiny model, the ranks of two orders with runs (:func:`_orders_with_runs`), a plan over both modes
    with controls, the graph's edges by kind and the orders' tallies."""
    lm, _ = tiny_loaded(family)
    layout = EdgeLayout(lm.adapter.n_layers, lm.adapter.n_heads, IDS.shape[1], lm.adapter.parallel_residual)
    settings = Settings(controls=True, sizes=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0))
    orders = _orders_with_runs(layout, 3)
    ranks = EdgeRanks.from_orders(layout, orders, "cpu")
    plan = plan_passes([[n for _, n in strata_edges(settings.sizes, layout.n_edges)]], settings, MODES)
    edges = tuple(layout.counts_by_kind()[k] for k in ("attention", "mlp", "residual"))
    tallies = [OrderTally(layout.n_layers, [p.spec.n_keep for p in plan if p.spec.order_index == o]) for o in (0, 1)]
    for tally, order in zip(tallies, orders):
        for part in np.array_split(order, 7):  # given a part at a time, as a search pops it
            tally.add(kind_codes(layout, torch.from_numpy(part)))
    return lm, ranks, plan, edges, tallies


def _below(tallies, plan):
    """Each pass's edges by kind among its order's first ``n_keep``: attention, MLP, residual."""
    counted = [tallies[p.spec.order_index].below(p.spec.n_keep) for p in plan]
    return [(a, int(m.sum()), r) for a, m, r in counted]


def test_the_edges_below_each_stratum_are_counted_by_kind_and_layer():
    _, ranks, plan, _, tallies = _planned("llama")
    for p in plan:
        order, n = p.spec.order_index, p.spec.n_keep
        attention, mlp, residual = tallies[order].below(n)
        kinds = lambda table: (table[order] < n).sum(-1)
        assert attention == int(kinds(ranks.attention).sum())
        assert mlp.tolist() == kinds(ranks.mlp).tolist()  # [L]
        assert residual == int((kinds(ranks.residual_attn) + kinds(ranks.residual_mlp)).sum())


@pytest.mark.parametrize("count", [host_segment_counts, device_segment_counts])
def test_segment_counts_count_each_code_between_the_ends(count):
    """The host's bincounts and the device's scatter-add (run here on the host) against a plain count:
    ends at 0, repeated, negative and at the end."""
    codes = torch.from_numpy(np.random.default_rng(3).integers(0, 6, 50))
    for ends in ([], [0], [7, 7, 20], [-4, 3, 50], [50]):
        expect = np.zeros((len(ends) + 1, 6), dtype=np.int64)
        for i, code in enumerate(codes.tolist()):
            expect[sum(n <= i for n in ends), code] += 1  # the segment: the ends passed
        np.testing.assert_array_equal(count(codes, ends, 6), expect)


def test_kind_codes_follow_the_edges_kinds_and_layers():
    layout = EdgeLayout(3, 2, 5)
    ids = layout.csr_ids("cpu")
    kinds = layout.decode(ids.numpy())
    expect = np.where(kinds["kind"] == ATTENTION, 0, np.where(kinds["kind"] == MLP, 1 + kinds["layer"], 4))
    np.testing.assert_array_equal(csr_codes(layout).numpy(), expect)


@pytest.mark.parametrize("family", ["llama", "gemma2", "pythia"])
def test_passes_that_keep_the_same_edges_give_the_same_logits(family):
    """What :func:`explorer.passes.kept_edges` calls equal is equal: every pass of a plan run on its own,
    passes with one key agree to float rounding (and some keys are shared, so the test is not vacuous)."""
    lm, ranks, plan, edges, tallies = _planned(family)
    keys = [passes.kept_edges(p.spec, p.item, counts, edges) for p, counts in zip(plan, _below(tallies, plan))]
    logits = masked_logits(lm.instrumentation, IDS, ranks, [p.spec for p in plan], batch_size=1)
    groups: dict[tuple, list[int]] = {}
    for j, key in enumerate(keys):
        groups.setdefault(key, []).append(j)
    shared = [g for g in groups.values() if len(g) > 1]
    assert len(shared) >= 3, groups.keys()
    assert {plan[j].variant for g in shared for j in g} >= {"trace", "inverse", "random"}
    for g in shared:
        for j in g[1:]:
            torch.testing.assert_close(logits[j], logits[g[0]], atol=1e-6, rtol=1e-6)
    # and keys that differ are different subgraphs: the full model and the model without any edge differ
    full = groups[(0, "all", "all", "all")][0]
    empty = [g[0] for k, g in groups.items() if k[1:] == ("none", "none", "none")]
    assert not empty or (logits[full] - logits[empty[0]]).abs().max() > 1e-3


def test_a_plan_runs_each_kept_set_of_edges_once(monkeypatch):
    lm, ranks, plan, edges, tallies = _planned("llama")
    alone = masked_logits(lm.instrumentation, IDS, ranks, [p.spec for p in plan], batch_size=1)
    run, batches = passes.masked_logits, []

    def counted(inst, input_ids, ranks, specs, batch_size, positions=None, mlp_rows=None):
        batches.append(len(specs))
        # the rows counted on the host are those the device counts
        np.testing.assert_array_equal(mlp_rows, kept_mlp_rows(ranks, specs))
        return run(inst, input_ids, ranks, specs, batch_size, positions, mlp_rows)

    monkeypatch.setattr(passes, "masked_logits", counted)
    ready = lambda r, b: None
    got = passes.run_batches(lm.instrumentation, IDS, ranks, plan, 8, None, ready, nullcontext, tallies, [edges])
    torch.testing.assert_close(got, alone, atol=1e-5, rtol=1e-5)
    distinct = {passes.kept_edges(p.spec, p.item, c, edges) for p, c in zip(plan, _below(tallies, plan))}
    assert sum(batches) == len(distinct) < len(plan)
    assert all(b == 8 for b in batches[:-1])  # the batches are filled up with the next passes


def test_kept_edges_tell_orders_items_and_inverses_apart():
    edges = (100, 10, 20)
    key = lambda spec, below, item=0: passes.kept_edges(spec, item, below, edges)
    some = (5, 3, 7)
    assert key(MaskSpec(15), some) != key(MaskSpec(15, order_index=1), some)  # other orders: other edges
    assert key(MaskSpec(15), some) != key(MaskSpec(15), some, item=1)  # other positions
    assert key(MaskSpec(15), some) != key(MaskSpec(15, invert=True), some)
    # every edge of a kind or none: the same whatever the order, and an inverse's complement
    full, none = (100, 10, 20), (0, 0, 0)
    assert key(MaskSpec(130), full) == key(MaskSpec(130, order_index=1), full) == (0, "all", "all", "all")
    assert key(MaskSpec(130, invert=True, keep_residual=True), full) == (0, "none", "none", "all")
    assert key(MaskSpec(0, invert=True, keep_residual=True), none) == key(MaskSpec(130), full)
    assert key(MaskSpec(15, keep_attention=True), (5, 10, 20)) == key(MaskSpec(130), full)


def test_passes_that_are_not_sparse_run_as_planned_on_every_row(monkeypatch):
    lm, ranks, plan, edges, tallies = _planned("llama")
    run, seen = passes.masked_logits, []

    def counted(inst, input_ids, ranks, specs, batch_size, positions=None, mlp_rows=None):
        seen.append((specs, mlp_rows))
        return run(inst, input_ids, ranks, specs, batch_size, positions, mlp_rows)

    monkeypatch.setattr(passes, "masked_logits", counted)
    ready = lambda r, b: None
    passes.run_batches(lm.instrumentation, IDS, ranks, plan, 8, None, ready, nullcontext, None, [edges])
    assert [s for specs, _ in seen for s in specs] == [p.spec for p in plan]
    assert all(rows is None for _, rows in seen)
