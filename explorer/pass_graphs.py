"""Forward passes replayed as CUDA graphs where a prompt length and a batch's shape repeat.

On a GPU the passes of short prompts are bound by kernel launches: some 2,000 per masked pass on the
SmolLM2 shape and as many for the recorded pass and the graph's weights, about 17 us of host time each
(bench/RESULTS.md). :class:`PassGraphs` records them once as CUDA graphs and then replays them, one launch
each: the recorded pass with :func:`explorer.graph.build_graph` per length and weighting
(:meth:`PassGraphs.forward_graph`), and the masked passes for every later batch of the same
:attr:`~explorer.intervene.BatchColumns.structure` (with its MLP rows) at the same prompt length and number of
orders:

- the first batch of a (length, structure) runs eagerly, which also warms that shape up; the second is
  captured, and it and every later one are replayed;
- a graph reads its inputs from fixed addresses: the length's token ids ``[1, T]`` and edge ranks
  (copied in by each call) and the batch's :class:`~explorer.intervene.BatchColumns` (refilled per
  batch); it writes its logits into one ``[B, V]`` buffer per batch size, which every graph shares;
- every graph allocates from one memory pool, and nothing a graph allocates outlives its replay, so the
  pool holds about one pass's activations and one block of its attention masks: inside a graph they are
  built for as many layers at a time as fit in :data:`RECORDED_BLOCK_BYTES` (every layer of a short
  prompt), a few launches for the model rather than a few (up to a dozen, in a batch of several orders)
  per layer.

A replay runs the eager pass's kernels on the same shapes and the masks are exactly 0 or 1 however they
are built, so its logits are the eager pass's bit for bit (``python -m bench.gpu_bench --graphs`` checks
it on the GPU; the tests check the buffers' plumbing on the CPU with a stand-in for the capture). Only
passes at the last position are recorded, for lengths whose ranks fit in :data:`MAX_RANK_BYTES`; the
least recently used lengths are dropped beyond :data:`MAX_GRAPHS` graphs or :data:`MAX_STATIC_BYTES` of
inputs, the least recently used recorded passes beyond :data:`MAX_FORWARDS` or as many bytes of outputs.
A capture that fails switches recording off for the model, with a warning.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from explorer.graph import TokenGraph, build_graph, layout_for
from explorer.intervene import BatchColumns, EdgeRanks, MaskSpec, RankMasks, masked_pass
from explorer.models.hooks import Instrumentation

MAX_RANK_BYTES = 1 << 26  # a length's ranks (all orders); longer prompts are not bound by launches
MAX_STATIC_BYTES = 1 << 29  # the ranks and ids of every length kept; apart from them, the recorded graphs' outputs
MAX_GRAPHS = 256  # a corpus of 40-word windows: ~18 lengths x up to 6 batch structures
MAX_FORWARDS = 32  # recorded passes and graphs (one per length and weighting)
RECORDED_BLOCK_BYTES = 1 << 27  # a recorded pass's attention masks at a time (8B shape, 48 tokens, batch 32: 75 MB)


_DEVICE_WIDE = threading.Lock()
"""Held while a pass is captured. A device-wide call from another thread (synchronising the device,
emptying the allocator's cache) in that time would invalidate the capture, and fail that thread's own
work too: such calls go through :func:`device_wide`. (Seen with two corpus workers: one worker's timing
sync during the other's capture.)"""


def device_wide(call: Callable[[], None]) -> None:
    """Run ``call``, a device-wide CUDA call, when no pass is being captured."""
    with _DEVICE_WIDE:
        call()


def synchronize(device: torch.device) -> None:
    """Wait for all work on ``device`` (a CUDA device; nothing to wait for on others)."""
    if device.type == "cuda":
        device_wide(lambda: torch.cuda.synchronize(device))


def empty_cache() -> None:
    """Return the CUDA allocator's unused cached memory to the device."""
    if torch.cuda.is_available():
        device_wide(torch.cuda.empty_cache)


class Replayable(Protocol):
    def replay(self) -> None: ...


Capture = Callable[[Callable[[], None]], Replayable]  # runs the pass once while recording it


@dataclass
class _Graph:
    recorded: Replayable
    columns: BatchColumns
    out: torch.Tensor  # [B, V] float32: written by each replay


@dataclass
class _Forward:
    """The recorded pass and graph of one length and weighting: fixed ids in, fixed outputs written."""

    recorded: Replayable
    ids: torch.Tensor  # [1, T]
    logits: torch.Tensor  # [V] float32
    graph: TokenGraph


@dataclass
class _Length:
    """The fixed inputs of one prompt length and number of orders, and the graphs that read them."""

    ids: torch.Tensor  # [1, T]
    ranks: EdgeRanks
    graphs: dict[tuple, _Graph] = field(default_factory=dict)
    seen: set[tuple] = field(default_factory=set)  # structures run eagerly once

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + _ranks_nbytes(self.ranks)


def _ranks_nbytes(ranks: EdgeRanks) -> int:
    return sum(t.nbytes for t in ranks.tables())


def _weights(graph: TokenGraph) -> tuple[torch.Tensor, ...]:
    return graph.attention, graph.residual_attn, graph.residual_mlp, graph.mlp


def _empty_like(ranks: EdgeRanks) -> EdgeRanks:
    return EdgeRanks(*(torch.empty_like(t) for t in ranks.tables()))


class CudaCapture:
    """Records a pass as a CUDA graph on one side stream, from one memory pool shared by every graph.
    The first capture runs the pass once on that stream beforehand, so that the libraries' lazy set-up
    for a new stream (cuBLAS's workspace) happens outside a capture. (``torch.cuda.graph`` would also
    collect garbage and empty the allocator's cache at each capture.)"""

    def __init__(self, device: torch.device):
        self.stream = torch.cuda.Stream(device)
        self.pool = torch.cuda.graph_pool_handle()
        self.warm = False

    def __call__(self, run: Callable[[], None]) -> Replayable:
        graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream(self.stream.device))
        with torch.cuda.stream(self.stream):
            if not self.warm:
                run()
                self.warm = True
            graph.capture_begin(pool=self.pool, capture_error_mode="thread_local")
            try:
                run()
            finally:
                graph.capture_end()
        torch.cuda.current_stream(self.stream.device).wait_stream(self.stream)
        return graph


class PassGraphs:
    """:class:`explorer.models.hooks.PassReplay` by CUDA graphs for one instrumented model (see the module
    docstring). ``capture``: how a pass is recorded (default: a CUDA graph on ``device``)."""

    def __init__(self, inst: Instrumentation, device: torch.device, capture: Capture | None = None):
        self.inst = inst
        self.device = device
        self.capture = capture if capture is not None else CudaCapture(device)
        self.enabled = True
        self._lengths: OrderedDict[tuple, _Length] = OrderedDict()
        self._outs: dict[int, torch.Tensor] = {}  # batch size -> [B, V] float32
        self._forwards: OrderedDict[tuple, _Forward] = OrderedDict()  # (T, weighting)
        self._forwards_seen: set[tuple] = set()
        self.captures = 0  # counters, for the benchmark
        self.replays = 0

    @property
    def n_graphs(self) -> int:
        return sum(len(length.graphs) for length in self._lengths.values())

    def clear(self) -> None:
        """Drop every graph and fixed input (their pool's memory returns to the allocator's cache)."""
        self._lengths.clear()
        self._outs.clear()
        self._forwards.clear()

    def forward_graph(self, input_ids: torch.Tensor, weighting: str) -> tuple[torch.Tensor, TokenGraph] | None:
        """The recorded pass's logits at the last position (``[V]`` float32) and the prompt's graph
        (:func:`explorer.graph.build_graph`) for ``input_ids [1, T]``, replayed from a CUDA graph where
        this length and weighting were seen before (the outputs are copies); ``None`` the first time, or
        where the graph's weights would exceed :data:`MAX_RANK_BYTES` (the caller then runs them itself)."""
        layout = layout_for(self.inst.adapter, input_ids.shape[1])
        key = (input_ids.shape[1], weighting)
        if not self.enabled or input_ids.device != self.device or 4 * layout.n_ids > MAX_RANK_BYTES:
            return None
        forward = self._forwards.get(key)
        if forward is None:
            if key not in self._forwards_seen:
                self._forwards_seen.add(key)
                return None
            forward = self._record_forward(input_ids, weighting)
            if forward is None:
                return None
        self._forwards.move_to_end(key)
        forward.ids.copy_(input_ids)
        forward.recorded.replay()
        self.replays += 1
        g = forward.graph
        copies = (t.clone() for t in _weights(g))
        return forward.logits.clone(), TokenGraph(g.layout, g.weighting, *copies)

    def _record_forward(self, input_ids: torch.Tensor, weighting: str) -> _Forward | None:
        adapter = self.inst.adapter
        layout = layout_for(adapter, input_ids.shape[1])
        L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
        head = adapter.model.get_output_embeddings()
        if not isinstance(head, torch.nn.Linear):  # no plain output head to size the logits by
            return None
        ids = input_ids.clone()
        vocab = head.weight.shape[0]
        new = lambda *shape: torch.empty(shape, dtype=torch.float32, device=self.device)
        logits = new(vocab)
        graph = TokenGraph(layout, weighting, new(L, H, T, T), new(L, T), new(L, T), new(L, T))

        def run() -> None:
            out, records = self.inst.recorded_forward(ids, logits_to_keep=1)
            logits.copy_(out[0, -1])
            for fixed, t in zip(_weights(graph), _weights(build_graph(adapter, records, weighting))):
                fixed.copy_(t)

        recorded = self._capture_or_stop(run)
        if recorded is None:
            return None
        forward = _Forward(recorded, ids, logits, graph)
        self._forwards[(T, weighting)] = forward
        held = lambda: sum(f.logits.nbytes + f.graph.attention.nbytes for f in self._forwards.values())
        while len(self._forwards) > 1 and (len(self._forwards) > MAX_FORWARDS or held() > MAX_STATIC_BYTES):
            self._forwards.popitem(last=False)
        return forward

    def _capture_or_stop(self, run: Callable[[], None]) -> Replayable | None:
        """``run`` recorded, or ``None`` (with recording switched off for this model) if it cannot be."""
        try:
            with _DEVICE_WIDE:
                recorded = self.capture(run)
        except Exception as exc:  # a forward that cannot be captured: run this model's passes eagerly
            self.enabled = False
            self.clear()
            warnings.warn(f"masked passes are not replayed as CUDA graphs on this model: {exc}", stacklevel=3)
            return None
        self.captures += 1
        return recorded

    def make_room(self, rank_bytes: int) -> None:
        if rank_bytes > MAX_RANK_BYTES:
            self.clear()

    def logits(
        self,
        input_ids: torch.Tensor,
        ranks: EdgeRanks,
        specs: list[MaskSpec],
        batch_size: int,
        mlp_rows: np.ndarray | None = None,
    ) -> torch.Tensor | None:
        if not self.enabled or ranks.attention.device != self.device or _ranks_nbytes(ranks) > MAX_RANK_BYTES:
            return None
        length = self._length(input_ids, ranks)
        dtype = next(self.inst.adapter.model.parameters()).dtype
        out = []
        for start in range(0, len(specs), batch_size):
            chunk = specs[start : start + batch_size]
            counted = None if mlp_rows is None else mlp_rows[start : start + batch_size]
            structure = BatchColumns.structure_for(chunk, input_ids.shape[1], counted)
            graph = length.graphs.get(structure)
            if graph is None and structure in length.seen and self.enabled:
                graph = self._record(length, BatchColumns.of(chunk, length.ranks, counted), structure, dtype)
            if graph is None:
                length.seen.add(structure)
                masks = RankMasks(length.ranks, BatchColumns.of(chunk, length.ranks, counted), dtype)
                logits = masked_pass(self.inst, length.ids, masks)
                if len(chunk) not in self._outs:
                    self._outs[len(chunk)] = torch.empty_like(logits)
                out.append(logits)
                continue
            graph.columns.load(chunk, structure)
            graph.recorded.replay()
            self.replays += 1
            out.append(graph.out.clone())
        return torch.cat(out)

    def _length(self, input_ids: torch.Tensor, ranks: EdgeRanks) -> _Length:
        """The fixed inputs of this length, filled with this call's ids and ranks."""
        key = (input_ids.shape[1], tuple(ranks.attention.shape), ranks.attention.dtype)
        length = self._lengths.get(key)
        if length is None:
            length = _Length(torch.empty_like(input_ids), _empty_like(ranks))
            self._lengths[key] = length
        self._lengths.move_to_end(key)
        length.ids.copy_(input_ids)
        for fixed, table in zip(length.ranks.tables(), ranks.tables()):
            fixed.copy_(table)
        self._evict()
        return length

    def _evict(self) -> None:
        """Drop the least recently used lengths (never the current one) beyond the caps."""
        while len(self._lengths) > 1 and (
            self.n_graphs > MAX_GRAPHS or sum(length.nbytes for length in self._lengths.values()) > MAX_STATIC_BYTES
        ):
            self._lengths.popitem(last=False)

    def _record(self, length: _Length, columns: BatchColumns, structure: tuple, dtype: torch.dtype) -> _Graph | None:
        out = self._outs[columns.values.shape[1]]

        def run() -> None:
            masks = RankMasks(length.ranks, columns, dtype, block_bytes=RECORDED_BLOCK_BYTES)
            out.copy_(masked_pass(self.inst, length.ids, masks))

        recorded = self._capture_or_stop(run)
        if recorded is None:
            return None
        graph = _Graph(recorded, columns, out)
        length.graphs[structure] = graph
        self._evict()
        return graph


def enable(inst: Instrumentation, device: torch.device, capture: Capture | None = None) -> PassGraphs | None:
    """Replay ``inst``'s masked passes as CUDA graphs on ``device`` (a CUDA device, or any device with a
    ``capture`` stand-in). Returns the :class:`PassGraphs`, or ``None`` where there is nothing to do."""
    if capture is None and device.type != "cuda":
        return None
    if device.type == "cuda" and device.index is None:  # compared with tensors' devices, which have one
        device = torch.device("cuda", torch.cuda.current_device())
    graphs = PassGraphs(inst, device, capture)
    inst.replay = graphs
    return graphs


def disable(inst: Instrumentation) -> None:
    """Run ``inst``'s masked passes eagerly again (its graphs are dropped)."""
    replay: Any = inst.replay
    if isinstance(replay, PassGraphs):
        replay.clear()
    inst.replay = None
