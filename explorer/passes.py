"""The masked passes of a trace's strata (METHOD.md sections 4-5): which subgraphs each position needs, in
the order they are batched, and the batches run as the greedy order's edges they read become known.

A stratum of ``n`` edges reads only the greedy order's first ``n`` edges (the inverse control too: it drops
them), and the random control reads the random control's order only, which is ready before the greedy
search ends. So the passes are planned item by item as the random controls first, then the other
subgraphs stratum by stratum, smallest first: while the host search pops the greedy order, the first
batches already run on the device (:func:`run_batches`), and only the last waits for the search's end.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace

import numpy as np
import torch

from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.models.hooks import Instrumentation
from explorer.options import VARIANTS, Mode, Variant
from explorer.outputs import summaries
from explorer.results import Settings, Stratum
from explorer.tally import OrderTally


@dataclass(frozen=True)
class PlannedPass:
    """One subgraph to evaluate: stratum ``stratum`` of item ``item`` (a position) in ablation mode
    ``mode``, as ``variant``; ``spec.order_index`` indexes every item's orders together (the ranks' ``O``).
    ``needs``: how many of the item's greedy order's first edges it reads (0: the random control's order
    only)."""

    item: int
    mode: Mode
    stratum: int
    variant: Variant
    spec: MaskSpec
    needs: int


def variants(settings: Settings, mode: Mode, n: int) -> list[tuple[Variant, MaskSpec]]:
    """The masked passes of one stratum of ``n`` edges in one ablation mode (order 0: the greedy order,
    1: the random control's)."""
    keep_attn = mode == "attention-kept"
    out: list[tuple[Variant, MaskSpec]] = [("trace", MaskSpec(n, keep_attention=keep_attn))]
    if settings.compare_modes:
        out.append(("other_mode", MaskSpec(n, keep_attention=not keep_attn)))
    if settings.controls:
        out.append(("inverse", MaskSpec(n, invert=True, keep_residual=True, keep_attention=keep_attn)))
        out.append(("random", MaskSpec(n, order_index=1, keep_residual=True, keep_attention=keep_attn)))
    return out


def orders_per_item(settings: Settings) -> int:
    """How many orders each item (position) has in the ranks: item ``k``'s greedy order is at index
    ``orders_per_item(settings) * k``, its random control's (with controls) right after it."""
    return 1 + settings.controls


def plan_passes(strata: Sequence[Sequence[int]], settings: Settings, modes: Sequence[Mode]) -> list[PlannedPass]:
    """Every subgraph of every item (``strata[k]``: item ``k``'s strata edge counts, ascending) in every
    mode of ``modes``, in batching order: item by item, the random controls first, then stratum by
    stratum (each mode's variants in :data:`~explorer.options.VARIANTS` order). The specs' order indices
    are the items' own (:func:`orders_per_item`)."""
    plan: list[PlannedPass] = []
    for k, counts in enumerate(strata):
        first = orders_per_item(settings) * k
        every = [
            PlannedPass(
                k, mode, i, variant, replace(spec, order_index=first + spec.order_index), n * (spec.order_index == 0)
            )
            for i, n in enumerate(counts)
            for mode in modes
            for variant, spec in variants(settings, mode, n)
        ]
        plan += [p for p in every if p.variant == "random"]
        plan += [p for p in every if p.variant != "random"]
    return plan


def batch_bounds(n: int, batch_size: int, beside_search: bool) -> list[tuple[int, int]]:
    """Where each masked pass of a plan of ``n`` subgraphs starts and ends: ``batch_size`` at a time. A
    plan that fits one pass is cut in two when it reads a greedy order that may still be searched
    (``beside_search``): its first half (the random controls, the smallest strata) then runs while the
    search ends, not after it."""
    if beside_search and 1 < n <= batch_size:
        return [(0, (n + 1) // 2), ((n + 1) // 2, n)]
    return [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


KindCounts = tuple[int, int, int]
"""Edges by kind: attention, MLP, residual."""


def kept_edges(spec: MaskSpec, item: int, below: KindCounts, edges: KindCounts) -> tuple:
    """What a subgraph keeps, in a form that two subgraphs with the same masks share: per kind
    (attention, MLP, residual) ``"all"``, ``"none"`` or ``(order, inverted, count)``, and the item (its
    position). ``below``: the order's edges of each kind among its first ``spec.n_keep``; ``edges``: the
    item's graph's. Nested strata keep the same edges of a kind wherever the order has none of that kind
    between them: a stratum's inverse control and the one before it (only residual edges between them),
    the ``attention-kept`` strata and random controls past the last MLP edge (all equal to the full
    model). Ids that are not edges (the last layer's other tokens, the tokens after a position) do not
    reach the output, so keeping them or not changes nothing there."""

    def kind(kept_all: bool, inverted: bool, k: int):
        if kept_all:
            return "all"
        if below[k] in (0, edges[k]):
            return "all" if (below[k] == edges[k]) != inverted else "none"
        return (spec.order_index, inverted, below[k])

    return (
        item,
        kind(spec.keep_attention, spec.invert, 0),
        kind(False, spec.invert, 1),
        kind(spec.keep_residual, False, 2),
    )


def run_batches(
    inst: Instrumentation,
    input_ids: torch.Tensor,
    ranks: EdgeRanks,
    plan: list[PlannedPass],
    batch_size: int,
    positions: list[int] | None,
    ready: Callable[[EdgeRanks, list[PlannedPass]], None],
    hold: Callable[[], AbstractContextManager],
    tallies: Sequence[OrderTally] | None,
    edges: Sequence[KindCounts],
    beside_search: bool = False,
) -> torch.Tensor:
    """The logits ``[len(plan), V]`` of every planned subgraph of ``input_ids [1, T]``, at most
    ``batch_size`` per masked pass (:func:`batch_bounds`; :func:`explorer.intervene.masked_logits`;
    ``positions``: each one's, or ``None`` for the last). Before a batch is made up, ``ready(ranks,
    passes)`` places the edges its passes read in ``ranks`` (waiting for the search where it must), and
    counts them in ``tallies`` (one per order) if there are any. A pass that keeps the edges of one before it
    (:func:`kept_edges`; ``edges[k]``: item ``k``'s graph's edges by kind) is not run again but takes
    its logits, and the batch is filled up with the next passes; its MLPs run on the rows it keeps
    (``mlp_rows`` of :func:`explorer.intervene.masked_logits`). Both only with ``tallies`` (where the
    passes are sparse, :func:`explorer.cost.sparse_passes`); else every pass runs as planned, on every
    row. Each batch runs
    inside ``hold()`` (the model's lock, where the caller does not hold it throughout).
    ``beside_search``: a greedy search still runs (:func:`batch_bounds`)."""
    sizes = [end - start for start, end in batch_bounds(len(plan), batch_size, beside_search)]
    first: dict[tuple, int] = {}  # what a subgraph keeps -> the pass that computes it
    source = list(range(len(plan)))  # the pass whose logits each one takes
    rows: dict[int, torch.Tensor] = {}
    mlp_rows: dict[int, np.ndarray] = {}  # [L]: the rows of each layer whose MLP a pass keeps
    at = 0
    for size in itertools.chain(sizes, itertools.repeat(batch_size)):
        if at == len(plan):
            break
        batch: list[int] = []
        while at < len(plan) and len(batch) < size:
            look = list(range(at, min(at + size - len(batch), len(plan))))
            at = look[-1] + 1
            ready(ranks, [plan[j] for j in look])
            for j in look:
                spec = plan[j].spec
                if tallies is not None:
                    attention, mlp, residual = tallies[spec.order_index].below(spec.n_keep)
                    counts = (attention, int(mlp.sum()), residual)
                    source[j] = first.setdefault(kept_edges(spec, plan[j].item, counts, edges[plan[j].item]), j)
                    mlp_rows[j] = input_ids.shape[1] - mlp if spec.invert else mlp
                if source[j] == j:
                    batch.append(j)
        if batch:
            at_positions = None if positions is None else [positions[j] for j in batch]
            specs = [plan[j].spec for j in batch]
            counted = None if tallies is None else np.stack([mlp_rows[j] for j in batch])
            with hold():
                logits = masked_logits(inst, input_ids, ranks, specs, batch_size, at_positions, counted)
            rows.update(zip(batch, logits))
    return torch.stack([rows[source[j]] for j in range(len(plan))])


def by_variant(passes: list[tuple[PlannedPass, object]]) -> dict:
    """``{variant: value}`` for one stratum's passes, in :data:`~explorer.options.VARIANTS` order."""
    return dict(sorted(((p.variant, v) for p, v in passes), key=lambda pv: VARIANTS.index(pv[0])))


def strata_of(lm, items, strata, counts, plan, q_all, top_k: int, modes) -> list[list[Stratum]]:
    """The strata of :func:`explorer.trace.evaluate`: of each item (``items``, its ``strata``: ``(size,
    n)`` pairs, ``counts``: its strata's edges by component and kind) and mode, from the distributions
    ``q_all [len(plan), V]`` of the planned passes; ``[item][mode]`` flattened item-major."""
    result = []
    for k, item in enumerate(items):
        rows = [j for j, p in enumerate(plan) if p.item == k]
        p = torch.softmax(item.logits.float(), -1)
        outs = dict(zip(rows, summaries(lm, p, q_all[rows], item.probes, top_k)))
        comps, kinds = counts[k]
        names = item.layout.component_names()
        for mode in modes:
            result.append(
                [
                    Stratum(
                        size=size,
                        n_edges=n,
                        outputs=by_variant(
                            [(plan[j], outs[j]) for j in rows if plan[j].mode == mode and plan[j].stratum == i]
                        ),
                        kinds={"attention": int(kinds[i, 0]), "mlp": int(kinds[i, 1]), "residual": int(kinds[i, 2])},
                        components={names[c]: int(comps[i, c]) for c in np.nonzero(comps[i])[0]},
                    )
                    for i, (size, n) in enumerate(strata[k])
                ]
            )
    return result
