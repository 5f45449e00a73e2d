"""The masked passes planned and run while the greedy search still pops its order (explorer/passes.py,
explorer.orders.GreedyOrder, explorer.search.HeapSearch)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import explorer.orders as orders
import explorer.passes as passes
from explorer.graph import build_graph
from explorer.orders import GreedyOrder, greedy_search
from explorer.passes import batch_bounds, plan_passes
from explorer.results import Settings
from explorer.search import HeapSearch, prepare_search, run_search
from explorer.trace import trace_modes, trace_prompt
from tests.helpers import record, tiny_loaded
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

    def checked(inst, input_ids, ranks, plan, batch_size, positions, ready, hold, beside_search):
        def checked_ready(r, batch):
            ready(r, batch)
            placed = int((r.table[0] < len(ref[0].order)).sum())
            seen.append((max(p.needs for p in batch), placed, searches[0].done))

        assert beside_search
        return run_batches(inst, input_ids, ranks, plan, batch_size, positions, checked_ready, hold, beside_search)

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
