"""What-if ablations: a trace's subgraph at one size (or the full graph) with components added or removed,
evaluated in one masked pass, without recomputing the sweep.

``evaluate_subgraph(lm, trace, size=0.01, remove=["a3.h2", "m5"])`` starts from the trace's subgraph at
``size`` (the evaluated size closest to it; ``None`` or ``"full"``: the full graph), adds every edge of the
components in ``add``, then removes every edge of those in ``remove`` (names as in
:mod:`explorer.components`: ``a3.h2``, ``a3`` / ``a3.*`` for all heads of layer 3, ``m5``, ``L3`` for the
whole layer, ``*`` for everything; removals apply after additions). A component's edges are all of its edges
in the graph, every query and source position, whether or not the subgraph reaches them. Residual edges
are never added or removed. In ablation mode ``attention-kept`` a subgraph keeps every attention edge
(METHOD.md section 4), and a head named in ``remove`` is removed all the same.

One masked pass of three subgraphs (the full graph, the subgraph as it was, and as changed) gives the new
next-token distribution's summary with its TV against the full model, beside the unchanged subgraph's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from explorer.components import check_model, component_edge_ids, parse_components, stratum_index
from explorer.edges import ATTENTION
from explorer.inputs import first_token_id, holding
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.models.loading import LoadedModel
from explorer.options import Mode
from explorer.outputs import Probes, summaries
from explorer.results import Output, Trace


@dataclass
class WhatIf:
    """A changed subgraph of a trace and its output. ``size``: the size it started from (1 for the full
    graph, ``from_full``); ``base_edges`` / ``n_edges``: edges kept before and after the change;
    ``added`` / ``removed``: the components named, as ``a{l}.h{h}`` / ``m{l}``; ``output``: the changed
    subgraph's next-token distribution against the full model (TV, shared nucleus, top tokens, probes);
    ``base``: the unchanged subgraph's, evaluated in the same pass; ``full``: the full model's."""

    size: float
    from_full: bool
    mode: Mode
    base_edges: int
    n_edges: int
    added: list[str]
    removed: list[str]
    output: Output
    base: Output
    full: Output

    def to_dict(self) -> dict:
        return asdict(self)


def _names(layout, components: list[int]) -> list[str]:
    names = layout.component_names()
    return [names[c] for c in components]


def changed_keep(
    trace: Trace, index: int | None, add: list[int], remove: list[int], mode: Mode
) -> tuple[np.ndarray, int, int]:
    """The edges of ``trace``'s subgraph at stratum ``index`` (``None``: the full graph) with the edges of
    components ``add`` added and then those of ``remove`` removed: ``(order, n_keep, n_before)``, a
    permutation of the graph's ``E`` edge ids whose first ``n_keep`` are the kept ones (in greedy order),
    and the number of edges the subgraph kept before the change (in mode ``attention-kept``, with every
    attention edge)."""
    layout = trace.layout
    order = np.asarray(trace.order, dtype=np.int64)
    keep = np.zeros(layout.n_ids, dtype=bool)
    n = trace.n_edges if index is None else trace.strata[index].n_edges
    keep[order[:n]] = True
    if mode == "attention-kept":
        keep[order[layout.kind(order) == ATTENTION]] = True
    n_before = int(keep.sum())
    keep[component_edge_ids(layout, add)] = True
    keep[component_edge_ids(layout, remove)] = False
    kept = keep[order]
    return np.concatenate([order[kept], order[~kept]]), int(kept.sum()), n_before


def probe_ids(lm: LoadedModel, trace: Trace) -> Probes:
    """The trace's gold, target and foil tokens as ids of ``lm``'s vocabulary."""
    return Probes(
        first_token_id(lm, trace.gold, "gold token"),
        first_token_id(lm, trace.target, "target"),
        first_token_id(lm, trace.foil, "foil"),
    )


@torch.no_grad()
def evaluate_subgraph(
    lm: LoadedModel,
    trace: Trace,
    size: float | str | None = None,
    add: str | Iterable[str] | None = (),
    remove: str | Iterable[str] | None = (),
) -> WhatIf:
    """The subgraph of ``trace`` at ``size`` with the components ``add`` added and ``remove`` removed,
    evaluated in one masked pass of ``lm`` (the trace's own model) in the trace's ablation mode. Names: a
    comma-separated string or a list (:mod:`explorer.components`); removals apply after additions, so
    ``add="L3", remove="a3.h2"`` is layer 3 without its head 2."""
    layout = trace.layout
    added, removed = parse_components(add, layout), parse_components(remove, layout)
    index = stratum_index(trace, size)
    check_model(lm, trace)
    mode = trace.settings.mode
    order, n_keep, n_before = changed_keep(trace, index, added, removed, mode)
    n_base = trace.n_edges if index is None else trace.strata[index].n_edges
    E = trace.n_edges
    specs = [
        MaskSpec(E),
        MaskSpec(n_base, keep_attention=mode == "attention-kept" and index is not None),
        MaskSpec(n_keep, order_index=1),
    ]
    probes = probe_ids(lm, trace)
    with holding(lm, lambda frac, msg: None):
        ids = torch.tensor([trace.token_ids], device=lm.device)
        ranks = EdgeRanks.from_orders(layout, [np.asarray(trace.order), order], lm.device)
        logits = masked_logits(lm.instrumentation, ids, ranks, specs, batch_size=len(specs))
        del ranks
        q = torch.softmax(logits, -1)
        full, base, changed = summaries(lm, q[0], q, probes, trace.settings.top_k)
    return WhatIf(
        size=1.0 if index is None else trace.strata[index].size,
        from_full=index is None,
        mode=mode,
        base_edges=n_before,
        n_edges=n_keep,
        added=_names(layout, added),
        removed=_names(layout, removed),
        output=changed,
        base=base,
        full=full,
    )
