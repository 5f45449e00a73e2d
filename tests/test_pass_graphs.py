"""Replayed masked passes (explorer/pass_graphs.py) against eager ones, and the device-only mask function.

A CUDA graph cannot be captured on the CPU; these tests record a pass with a stand-in that, like a graph,
runs nothing when recording and re-runs the same code on the same buffers at each replay. They check what
the CUDA path shares with it: which inputs are fixed, refilled and copied where, when a pass is recorded,
and the caps. ``python -m bench.gpu_bench --graphs`` checks real graphs on a GPU.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import explorer.intervene as intervene
import explorer.pass_graphs as pass_graphs
from explorer.edges import EdgeLayout
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.models.hooks import strace_mask
from explorer.results import Settings
from explorer.trace import trace_modes
from tests.helpers import tiny_loaded


class Rerun:
    """A recorded pass: nothing runs when it is recorded; each replay runs it again."""

    def __init__(self, run):
        self.run = run

    def replay(self):
        self.run()


def rerun_capture(run):
    return Rerun(run)


def _ranks(layout: EdgeLayout, seed: int) -> EdgeRanks:
    rng = np.random.default_rng(seed)
    return EdgeRanks.from_orders(layout, [rng.permutation(layout.n_edges) for _ in range(2)], "cpu")


def _specs(layout: EdgeLayout, seed: int) -> list[MaskSpec]:
    """A trace's kinds of subgraph (trace, inverse, random control; both modes) at random sizes."""
    rng = np.random.default_rng(seed)
    out = []
    for keep_attention in (False, True):
        for n in rng.integers(0, layout.n_edges + 1, 5):
            n = int(n)
            out += [
                MaskSpec(n, keep_attention=keep_attention),
                MaskSpec(n, invert=True, keep_residual=True, keep_attention=keep_attention),
                MaskSpec(n, order_index=1, keep_residual=True, keep_attention=keep_attention),
            ]
    return out


def _layout(lm, n_tokens: int) -> EdgeLayout:
    a = lm.adapter
    return EdgeLayout(a.n_layers, a.n_heads, n_tokens, a.parallel_residual)


@pytest.fixture
def lm(monkeypatch):
    """The tiny Llama, its eager passes on the shapes a recorded pass keeps (as on CUDA, where passes are
    recorded; the stand-in records them on the CPU)."""
    monkeypatch.setattr(intervene, "shapes_repeat", lambda device: True)
    lm, _ = tiny_loaded("llama")
    yield lm
    pass_graphs.disable(lm.instrumentation)


def test_replayed_passes_equal_eager_ones_across_prompts_lengths_and_batches(lm):
    inst = lm.instrumentation
    cases = []
    for seed, n_tokens in [(0, 7), (1, 7), (2, 9), (3, 7), (4, 9), (5, 7)]:
        ids = torch.randint(0, 200, (1, n_tokens), generator=torch.Generator().manual_seed(seed))
        layout = _layout(lm, n_tokens)
        cases.append((ids, _ranks(layout, seed), _specs(layout, seed)))
    eager = [masked_logits(inst, ids, ranks, specs, batch_size=4) for ids, ranks, specs in cases]
    graphs = pass_graphs.enable(inst, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    replayed = [masked_logits(inst, ids, ranks, specs, batch_size=4) for ids, ranks, specs in cases]
    for a, b in zip(eager, replayed):
        assert torch.equal(a, b)
    # 30 specs in batches of 4: structures repeat within a call, so the first call already replays
    assert graphs.captures > 0 and graphs.replays > graphs.captures
    assert len(graphs._lengths) == 2


def test_a_structure_is_run_eagerly_once_then_recorded(lm):
    inst = lm.instrumentation
    graphs = pass_graphs.enable(inst, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    layout = _layout(lm, 6)
    ids = torch.arange(6)[None]
    specs = [MaskSpec(5), MaskSpec(9)]
    first = masked_logits(inst, ids, _ranks(layout, 0), specs, batch_size=2)
    assert (graphs.captures, graphs.replays) == (0, 0)
    second = masked_logits(inst, ids, _ranks(layout, 1), specs, batch_size=2)
    assert (graphs.captures, graphs.replays) == (1, 1)
    pass_graphs.disable(inst)
    assert torch.equal(first, masked_logits(inst, ids, _ranks(layout, 0), specs, batch_size=2))
    assert torch.equal(second, masked_logits(inst, ids, _ranks(layout, 1), specs, batch_size=2))


@pytest.mark.parametrize("block_bytes", [1, pass_graphs.RECORDED_BLOCK_BYTES])
def test_recorded_passes_build_their_attention_masks_a_block_of_layers_at_a_time(lm, monkeypatch, block_bytes):
    """A recorded pass builds the attention masks of as many layers at once as fit (every layer of a short
    prompt: a few launches for the model); a block of any size replays the eager logits exactly."""
    monkeypatch.setattr(pass_graphs, "RECORDED_BLOCK_BYTES", block_bytes)
    blocks = []

    class Counted(intervene.RankMasks):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if "block_bytes" in kwargs:  # a recorded pass's (an eager one takes the default)
                blocks.append(self.block_layers)

    monkeypatch.setattr(pass_graphs, "RankMasks", Counted)
    inst = lm.instrumentation
    layout = _layout(lm, 7)
    ids = torch.arange(7)[None]
    specs = _specs(layout, 3)  # several orders per batch, inverses, kept kinds
    calls = [(ids, _ranks(layout, seed), specs) for seed in range(3)]
    eager = [masked_logits(inst, *call, batch_size=5) for call in calls]
    graphs = pass_graphs.enable(inst, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    for call, expected in zip(calls, eager):
        assert torch.equal(masked_logits(inst, *call, batch_size=5), expected)
    assert graphs.replays > 0 and blocks
    assert set(blocks) == {1 if block_bytes == 1 else layout.n_layers}
    assert layout.n_layers > 1  # so that a block of every layer is more than one layer


def test_caps_drop_the_least_recent_lengths_and_results_stay_equal(lm, monkeypatch):
    monkeypatch.setattr(pass_graphs, "MAX_GRAPHS", 2)
    inst = lm.instrumentation
    calls = []
    for seed in range(8):
        n_tokens = 5 + seed % 3
        layout = _layout(lm, n_tokens)
        ids = torch.randint(0, 200, (1, n_tokens), generator=torch.Generator().manual_seed(seed))
        calls.append((ids, _ranks(layout, seed), _specs(layout, seed)[:6]))
    eager = [masked_logits(inst, *call, batch_size=3) for call in calls]
    graphs = pass_graphs.enable(inst, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    for call, expected in zip(calls, eager):
        assert torch.equal(masked_logits(inst, *call, batch_size=3), expected)
        assert graphs.n_graphs <= 2
    assert graphs.captures > 2  # lengths were dropped and recorded again


def test_long_prompts_are_not_recorded_and_free_the_recorded_ones(lm, monkeypatch):
    inst = lm.instrumentation
    graphs = pass_graphs.enable(inst, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    layout = _layout(lm, 6)
    ids = torch.arange(6)[None]
    for seed in range(3):
        masked_logits(inst, ids, _ranks(layout, seed), [MaskSpec(4)], batch_size=1)
    assert graphs.n_graphs == 1
    monkeypatch.setattr(pass_graphs, "MAX_RANK_BYTES", _ranks(layout, 0).attention.nbytes)
    graphs.make_room(EdgeRanks.nbytes_for(layout, 2))
    assert graphs.n_graphs == 0
    for seed in range(3):
        masked_logits(inst, ids, _ranks(layout, seed), [MaskSpec(4)], batch_size=1)
    assert (graphs.n_graphs, graphs.captures) == (0, 1)


def test_a_failed_capture_switches_recording_off_and_loses_nothing(lm):
    inst = lm.instrumentation

    def refuse(run):
        raise RuntimeError("operation not permitted when stream is capturing")

    layout = _layout(lm, 6)
    ids = torch.arange(6)[None]
    specs = _specs(layout, 0)
    expected = masked_logits(inst, ids, _ranks(layout, 0), specs, batch_size=5)
    graphs = pass_graphs.enable(inst, torch.device("cpu"), refuse)
    assert graphs is not None
    assert torch.equal(masked_logits(inst, ids, _ranks(layout, 0), specs, batch_size=5), expected)
    with pytest.warns(UserWarning, match="not replayed as CUDA graphs"):  # the second time a structure is seen
        got = masked_logits(inst, ids, _ranks(layout, 0), specs, batch_size=5)
    assert torch.equal(got, expected)
    assert not graphs.enabled and graphs.captures == 0


def test_a_whole_trace_is_the_same_with_replayed_passes(lm):
    settings = Settings(controls=True, batch_size=7)
    prompts = ["the cat sat on", "a dog ran off!", "the cat sat up"]  # two of one length
    eager = [trace_modes(lm, p, settings) for p in prompts]
    graphs = pass_graphs.enable(lm.instrumentation, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    replayed = [trace_modes(lm, p, settings) for p in prompts]
    assert graphs.replays > 0
    for a, b in zip(eager, replayed):
        for ta, tb in zip(a, b):
            assert np.array_equal(ta.order, tb.order)
            assert [s.outputs for s in ta.strata] == [s.outputs for s in tb.strata]


def test_models_off_cuda_replay_nothing_by_default(lm):
    assert lm.instrumentation.replay is None
    assert pass_graphs.enable(lm.instrumentation, torch.device("cpu")) is None


def test_the_device_only_mask_is_transformers_eager_mask():
    """(Every tiny family's unmasked logits equal plain transformers' with it: tests/test_numerics.py.)"""
    from transformers.masking_utils import causal_mask_function, eager_mask, sliding_window_causal_mask_function

    for mask_function in (causal_mask_function, sliding_window_causal_mask_function(3)):
        for padding in (None, torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)):
            for dtype in (torch.float32, torch.bfloat16):
                kwargs = dict(batch_size=2, q_length=7, kv_length=7, mask_function=mask_function, dtype=dtype)
                expected = eager_mask(attention_mask=padding, **kwargs)
                got = strace_mask(attention_mask=padding, **kwargs)
                assert got is not None and got.dtype == expected.dtype
                assert torch.equal(got, expected.expand_as(got))


def _graph_tensors(graph):
    return (graph.attention, graph.residual_attn, graph.residual_mlp, graph.mlp)


@pytest.mark.parametrize("weighting", ["l1", "ifr"])
def test_the_replayed_forward_pass_and_graph_equal_eager_ones(lm, weighting):
    from explorer.trace import recorded_graph

    prompts = [torch.randint(0, 200, (1, 8), generator=torch.Generator().manual_seed(s)) for s in range(4)]
    eager = [recorded_graph(lm, ids, weighting) for ids in prompts]
    graphs = pass_graphs.enable(lm.instrumentation, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    replayed = [recorded_graph(lm, ids, weighting) for ids in prompts]
    assert (graphs.captures, graphs.replays) == (1, 3)  # the first of a length runs eagerly
    for (logits_a, graph_a), (logits_b, graph_b) in zip(eager, replayed):
        assert torch.equal(logits_a, logits_b)
        assert graph_b.layout == graph_a.layout and graph_b.weighting == weighting
        for a, b in zip(_graph_tensors(graph_a), _graph_tensors(graph_b)):
            assert torch.equal(a, b)
    # each replay's outputs are its own: the next replay does not write over them
    assert not torch.equal(replayed[1][1].attention, replayed[2][1].attention)
    assert torch.equal(replayed[1][1].attention, eager[1][1].attention)


def test_recorded_passes_beyond_the_cap_are_dropped_least_recent_first(lm, monkeypatch):
    from explorer.trace import recorded_graph

    monkeypatch.setattr(pass_graphs, "MAX_FORWARDS", 2)
    graphs = pass_graphs.enable(lm.instrumentation, torch.device("cpu"), rerun_capture)
    assert graphs is not None
    for n_tokens in (5, 6, 7, 5, 6, 7):  # each length seen twice: recorded on the second
        expected = None
        for seed in range(2):
            ids = torch.randint(0, 200, (1, n_tokens), generator=torch.Generator().manual_seed(seed))
            logits, _ = recorded_graph(lm, ids, "l1")
            if seed == 0:
                expected = logits
        assert expected is not None
        assert len(graphs._forwards) <= 2
    assert [key[0] for key in graphs._forwards] == [6, 7]


def test_device_wide_calls_from_other_threads_wait_for_a_capture(lm):
    """Synchronising the device or emptying the allocator's cache during another thread's capture would
    invalidate it (and fail that thread's work): they wait until the capture is over."""
    import threading

    events, threads = [], []

    def capture_while_another_thread_syncs(run):
        other = threading.Thread(target=pass_graphs.device_wide, args=(lambda: events.append("device-wide"),))
        other.start()
        threads.append(other)
        other.join(timeout=0.5)  # it would have run by now, were it not waiting
        events.append("captured")
        return Rerun(run)

    graphs = pass_graphs.enable(lm.instrumentation, torch.device("cpu"), capture_while_another_thread_syncs)
    assert graphs is not None
    layout = _layout(lm, 6)
    for seed in range(2):
        masked_logits(lm.instrumentation, torch.arange(6)[None], _ranks(layout, seed), [MaskSpec(3)], batch_size=1)
    threads[0].join(timeout=5)
    assert events == ["captured", "device-wide"]
