"""Each stratum's numbers for the views, computed once per trace: edges and summed weight per component,
edges per quarter of the model's depth, and the flow between components with the arrows the node graph
draws. The strata are nested, so one pass over the greedy order serves them all (in chunks, so that the
decoded edges of a long prompt are never all in memory at once); a slider move then only reads them.

Flow: ``A -> B`` counts the edges of ``B`` that read a state ``A`` wrote into, directly or through the
trace's residual edges (the embeddings write the first states; the output node reads the last one). The
arrows drawn are the heaviest flows into each layer (:data:`ARROWS_PER_LAYER`), so that they cover the
whole depth rather than the lowest layers only.

:func:`per_trace` keeps such derived values beside a trace for as long as it lives.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from explorer.results import Trace
from explorer.views.labels import layer_quarter

MAX_ARROWS = 200
"""About the most arrows the node graph draws; each reading layer (and the output) gets an equal share."""
CHUNK = 1 << 20  # edges decoded at a time

T_ = TypeVar("T_")
_CACHE: dict[int, dict[str, Any]] = {}
_LOCK = threading.Lock()


def per_trace(trace: Trace, key: str, compute: Callable[[], T_]) -> T_:
    """``compute()``, once per ``trace`` and ``key``: kept until the trace is freed. Sessions that ask
    for the same key together wait for one computation (one lock per key, so that a computation may ask
    for another key)."""
    with _LOCK:
        slot = _CACHE.get(id(trace))
        if slot is None:
            slot = _CACHE[id(trace)] = {"values": {}, "locks": {}}
            weakref.finalize(trace, _CACHE.pop, id(trace), None)
        values = slot["values"]
        if key in values:
            return values[key]
        lock = slot["locks"].setdefault(key, threading.Lock())
    with lock:
        if key not in values:
            values[key] = compute()
        return values[key]


@dataclass(frozen=True)
class StratumData:
    """One stratum's numbers. ``C`` components as :meth:`EdgeLayout.component_names` orders them; index
    ``C`` stands for the embeddings as a writer and for the output node as a reader."""

    counts: np.ndarray
    """``[C]`` the trace's edges per component."""
    weights: np.ndarray
    """``[C]`` their summed weight."""
    quarters: np.ndarray
    """``[4]`` the trace's edges (residual ones included) per quarter of the depth, first to last."""
    arrows: np.ndarray
    """``[K, 3]`` int64 rows ``(writer, reader, links)``: the flows drawn, heaviest first within a layer."""


def arrows_per_layer(n_layers: int) -> int:
    """The arrows kept into each reading layer and into the output: an equal share of :data:`MAX_ARROWS`."""
    return max(2, MAX_ARROWS // (n_layers + 1))


def component_layers(n_layers: int, n_heads: int) -> np.ndarray:
    """``[C + 1]`` the layer of each component (heads, then MLPs), and -1 for the embeddings."""
    heads = np.repeat(np.arange(n_layers), n_heads)
    return np.concatenate([heads, np.arange(n_layers), [-1]])


def _select(
    flow: np.ndarray, readers: np.ndarray, writer_layer: np.ndarray, k: int, components: bool = True
) -> list[tuple[int, int, int]]:
    """The ``k`` heaviest flows ``flow [C + 1, len(readers)]`` into ``readers``, ties to the nearest writer;
    none from a component into itself (``components``: the readers are components, not the output)."""
    w, j = np.nonzero(flow)
    if components:
        keep = w != readers[j]
        w, j = w[keep], j[keep]
    links = flow[w, j]
    pick = np.lexsort((-writer_layer[w], -links))[:k]
    return [(int(w[i]), int(readers[j[i]]), int(links[i])) for i in pick]


def _decode(lay, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(component, layer, src_node, dst_node)`` of edge ids: :meth:`EdgeLayout.decode`'s, with the
    attention edges (nearly all of a long prompt's) done in fewer steps."""
    T, H = lay.n_tokens, lay.n_heads
    ids = np.asarray(ids, dtype=np.int64)
    comp = np.empty(len(ids), dtype=np.int64)
    layer, src, dst = np.empty_like(comp), np.empty_like(comp), np.empty_like(comp)
    attn = ids < lay.n_attention_ids
    a = ids[attn]
    c = a // (T * T)
    la = c // H
    comp[attn], layer[attn] = c, la
    src[attn] = 2 * la * T + a % T
    dst[attn] = (2 * la + 1) * T + (a // T) % T
    rest = ~attn
    if rest.any():
        e = lay.decode(ids[rest])
        comp[rest], layer[rest] = lay.component(ids[rest]), e["layer"]
        src[rest], dst[rest] = e["src_node"], e["dst_node"]
    return comp, layer, src, dst


def compute(trace: Trace) -> list[StratumData]:
    """Every stratum's :class:`StratumData`, in one pass over the greedy order."""
    lay = trace.layout
    L, H, T = lay.n_layers, lay.n_heads, lay.n_tokens
    C = lay.n_components
    order = np.asarray(trace.order)
    weights_all = np.asarray(trace.order_weights, dtype=np.float64)
    layer_of = component_layers(L, H)
    k = arrows_per_layer(L)
    counts = np.zeros(C)
    weights = np.zeros(C)
    quarters = np.zeros(4, dtype=np.int64)
    wrote = np.zeros((lay.n_nodes, C + 1), dtype=bool)  # direct writes into each node
    wrote[:T, C] = True  # the embeddings
    below = np.full(lay.n_nodes, -1, dtype=np.int64)  # source of each node's residual edge in the trace
    reads = np.zeros((lay.n_nodes, H + 1))  # each node's reads by the heads (0..H-1) and MLP (H) of its layer
    out: list[StratumData] = []
    done = 0
    for s in trace.strata:
        for lo in range(done, s.n_edges, CHUNK):
            ids = order[lo : min(s.n_edges, lo + CHUNK)]
            comp, layer, src_all, dst_all = _decode(lay, ids)
            quarters += np.bincount(layer_quarter(layer, L), minlength=4)
            res = comp < 0
            below[dst_all[res]] = src_all[res]
            c, src, dst = comp[~res], src_all[~res], dst_all[~res]
            counts += np.bincount(c, minlength=C)
            weights += np.bincount(c, weights=weights_all[lo : lo + len(ids)][~res], minlength=C)
            wrote[dst, c] = True
            local = np.where(c < L * H, c % H, H)
            reads += np.bincount(src * (H + 1) + local, minlength=lay.n_nodes * (H + 1)).reshape(-1, H + 1)
        done = max(done, s.n_edges)
        writers = wrote.copy()
        for g in range(1, 2 * L + 1):
            rows = np.arange(g * T, (g + 1) * T)
            rows = rows[below[rows] >= 0]
            writers[rows] |= writers[below[rows]]
        arrows: list[tuple[int, int, int]] = []
        for layer in range(L):
            rows = slice(2 * layer * T, (2 * layer + 2) * T)  # the states this layer's heads and MLP read
            flow = writers[rows].T.astype(np.float64) @ reads[rows]
            readers = np.concatenate([np.arange(layer * H, (layer + 1) * H), [L * H + layer]])
            arrows += _select(flow, readers, layer_of, k)
        into_output = writers[lay.output_node].astype(np.float64)[:, None]
        arrows += _select(into_output, np.array([C]), layer_of, k, components=False)
        out.append(
            StratumData(
                counts=counts.astype(np.int64),
                weights=weights.copy(),
                quarters=quarters.copy(),
                arrows=np.array(arrows, dtype=np.int64).reshape(-1, 3),
            )
        )
    return out


def strata_data(trace: Trace) -> list[StratumData]:
    """:func:`compute`, once per trace (:func:`per_trace`)."""
    return per_trace(trace, "strata", lambda: compute(trace))


POSITIONS_KEPT = 16
"""Components whose positions in the greedy order are kept per trace (the inspector's recent choices)..."""
POSITIONS_BYTES = 32 << 20
"""... within this many bytes (the last one asked for is always kept)."""


def _positions(trace: Trace, c: int, lo: int, hi: int) -> np.ndarray:
    """``[n]`` the positions in the whole greedy order of the edges with ids in ``[lo, hi)`` (component
    ``c``), ascending: found in one pass and kept for the components asked for last (:data:`POSITIONS_KEPT`,
    :data:`POSITIONS_BYTES`)."""
    kept: OrderedDict[int, np.ndarray] = per_trace(trace, "component_positions", OrderedDict)
    with _LOCK:
        found = kept.get(c)
        if found is not None:
            kept.move_to_end(c)
            return found
    ids = np.asarray(trace.order)
    found = np.nonzero((ids >= lo) & (ids < hi))[0]
    if len(ids) < 2**31:
        found = found.astype(np.int32)
    with _LOCK:
        kept[c] = found
        while len(kept) > 1 and (len(kept) > POSITIONS_KEPT or sum(a.nbytes for a in kept.values()) > POSITIONS_BYTES):
            kept.popitem(last=False)
    return found


def component_edge_ids(trace: Trace, index: int, name: str) -> np.ndarray:
    """The positions in the greedy order of the trace's edges of component ``name`` at stratum ``index``
    (its ids form one block of the layout, so no edge is decoded to find them). The strata are prefixes of
    the order, so the component's positions are found once and each stratum takes the first of them."""
    lay = trace.layout
    names = lay.component_names()
    if name not in names:
        return np.zeros(0, dtype=np.int64)
    c = names.index(name)
    T = lay.n_tokens
    if c < lay.n_layers * lay.n_heads:
        lo, hi = c * T * T, (c + 1) * T * T
    else:
        from explorer.edges import MLP

        lo = lay.block_id(MLP, c - lay.n_layers * lay.n_heads, 0)
        hi = lo + T
    found = _positions(trace, c, lo, hi)
    return found[: int(np.searchsorted(found, trace.strata[index].n_edges))].astype(np.int64)
