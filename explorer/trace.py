"""The pipeline: :func:`trace_prompt` computes the :class:`explorer.results.Trace` of the prediction at one
position of a prompt (default: after its last token) by tying the steps together:

1. one recorded forward pass (full logits, attention, per-layer terms);
2. edge weights (:mod:`explorer.graph`);
3. the greedy edge order (:mod:`explorer.search`), and the random control's order, which depends on the
   graph's shape only: computed beside steps 1-3 on a background thread and kept per shape;
4. strata, controls and (optionally) the other ablation mode, evaluated in batched masked passes
   (:mod:`explorer.passes`, :mod:`explorer.intervene`): the random controls first and the strata smallest
   first, each batch as soon as the greedy search, still running on the host, has popped the edges it
   reads (a stratum needs only the order's first edges);
5. metrics and density (:mod:`explorer.outputs`, :mod:`explorer.metrics`), moved to the host once.

Steps 4-5 take any number of positions of one text (:class:`Searched`, one per position), so that
:func:`explorer.text.trace_text` shares them: the masked passes of every position go through the same
batches, each read at its own position.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch

from explorer.cost import sparse_passes
from explorer.density import density, recovery_sizes
from explorer.edges import EdgeLayout, stratum_counts
from explorer.graph import TokenGraph, build_graph, layout_for
from explorer.inputs import (
    check_prompt_text,
    first_token_id,
    holding,
    memory_message,
    resolve_position,
    token_text,
    tokenize,
)
from explorer.intervene import EdgeRanks
from explorer.models.limits import check_memory, check_settings
from explorer.models.loading import LoadedModel
from explorer.options import MODES, Mode, check_modes
from explorer.orders import GreedyOrder, greedy_search, host_copy, start_random_control
from explorer.outputs import Probes, summaries
from explorer.pass_graphs import synchronize
from explorer.passes import PlannedPass, orders_per_item, plan_passes, run_batches, strata_of
from explorer.results import Output, Settings, Stratum, Trace
from explorer.search import strata_edges
from explorer.tally import OrderTally, csr_codes, kind_codes


def trace_prompt(
    lm: LoadedModel,
    prompt: str,
    settings: Settings | None = None,
    gold: str | None = None,
    progress=None,
    position: int | None = None,
    target: str | None = None,
    foil: str | None = None,
) -> Trace:
    """Compute the s-Trace of the prediction after token ``position`` of ``prompt`` (default: the last;
    negative counts from the end) over ``settings.sizes``: the same as tracing the prompt's tokens cut
    after that one.

    ``gold``: the true next token's text (its first token is used) for cross-entropy. ``target`` /
    ``foil``: tokens whose probability (and logit difference) each subgraph is measured on; the target
    defaults to the text's actual next token, else the full model's top-1. ``progress``: optional callable
    ``(fraction, message)``.
    """
    settings = settings or Settings()
    return trace_modes(lm, prompt, settings, (settings.mode,), gold, progress, position, target, foil)[0]


@dataclass
class Searched:
    """One position's graph after the search's device part: what its masked passes and its :class:`Trace`
    need, in ``layout`` (the position's own, ``position + 1`` tokens). ``greedy``: its greedy order, whose
    host search may still be running (:meth:`finish` waits for it); ``random``: the random control's
    order (``[E]`` edge ids on the device), if any; ``logits [V]``: the full model there. Once finished:
    ``ids``, the greedy order's ``[E]`` edge ids on the device, and ``order`` / ``order_weights``, the
    same and their weights on the host, and ``search_seconds``, the host search's own time.
    :func:`evaluate` releases the device orders once it has ranked them."""

    position: int
    layout: EdgeLayout
    greedy: GreedyOrder | None
    random: torch.Tensor | None
    logits: torch.Tensor
    probes: Probes
    ids: torch.Tensor | None = None
    order: np.ndarray | None = None
    order_weights: np.ndarray | None = None
    search_seconds: float = 0.0

    def finish(self) -> None:
        """Wait for the greedy search (if not done yet) and keep its order, on the device and the host."""
        if self.greedy is not None:
            self.ids, self.order_weights = self.greedy.result()
            self.order = host_copy(self.ids)
            self.search_seconds = self.greedy.seconds
            self.greedy = None


def _to_device(order: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """A random control's order on ``device``: a kept one (read-only, shared by every trace of its shape)
    without a host copy (the tensor is only read, to copy it); one already there as it is."""
    if torch.is_tensor(order):
        return order.to(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(order).to(device, copy=True)


def search_position(
    layout: EdgeLayout,
    greedy: GreedyOrder,
    position: int,
    logits: torch.Tensor,
    probes: Probes,
    random_order,
    device,
    finish: bool = True,
) -> Searched:
    """One position's graph of ``layout`` searched (``greedy``, from :func:`explorer.orders.greedy_search`:
    its host part runs here, outside the model's lock; with ``finish=False`` it is left to run, as
    :meth:`GreedyOrder.start` runs it, for :func:`evaluate` to read as it goes) and the random control's
    order on ``device`` (``random_order``: a future of it, or ``None``)."""
    with memory_message():
        random = _to_device(random_order.result(), device) if random_order is not None else None
    item = Searched(position, layout, greedy, random, logits, probes)
    if finish:
        item.finish()
    return item


def evaluate(
    lm: LoadedModel,
    input_ids: torch.Tensor,
    items: list[Searched],
    settings: Settings,
    modes: tuple[Mode, ...],
    hold: Callable[[], AbstractContextManager] = nullcontext,
) -> list[list[Stratum]]:
    """Every stratum, control and mode of every position in ``items`` in shared batched masked passes over
    ``input_ids [1, T]`` (``T`` at least each position + 1; each pass read at its own position), with
    their metrics: one list of strata per item and mode, ``[item][mode]`` flattened item-major.

    An item whose greedy search still runs is read as it goes (:mod:`explorer.passes`): each batch waits
    only for the edges it reads. The others' orders are ranked, counted by stratum and released before
    the passes: beside a long prompt's passes they would hold 12-16 bytes per edge. ``hold``: the model's
    lock, taken for the device work (the caller holds it throughout when it passes none)."""
    layout = layout_for(lm.adapter, input_ids.shape[1])
    strata = [strata_edges(settings.sizes, item.layout.n_edges) for item in items]
    plan = plan_passes([[n for _, n in s] for s in strata], settings, modes)
    per_item = orders_per_item(settings)  # item k's greedy order at per_item * k, its random one next
    here = lambda k, ids: ids if items[k].layout == layout else items[k].layout.translate(ids, layout)
    counts: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def settle(k: int) -> None:
        item = items[k]
        item.finish()
        assert item.ids is not None
        counts[k] = stratum_counts(item.layout, item.ids, [n for _, n in strata[k]])

    for item in items:
        if item.greedy is None or item.greedy.done:
            item.finish()  # its host copies, outside the lock
    # where the passes' MLP FLOPs bind, they are made up from the orders' edges by kind (explorer/tally.py)
    sparse = sparse_passes(lm.adapter.model.config, input_ids.shape[1], settings.batch_size, lm.device)
    bounds = lambda o: [p.spec.n_keep for p in plan if p.spec.order_index == o]
    tallies = [OrderTally(layout.n_layers, bounds(o)) for o in range(per_item * len(items))] if sparse else None

    def place(ranks: EdgeRanks, order: int, ids: torch.Tensor, start: int = 0, positions: np.ndarray | None = None):
        """Place order ``order``'s edges ``ids`` from rank ``start`` on, and count them where the passes are
        sparse (``positions``: their CSR positions on the host, where a host search popped them)."""
        ranks.fill(order, ids, start)
        if tallies is not None:
            host = positions is not None
            codes = csr_codes(items[order // per_item].layout)[torch.from_numpy(positions)] if host else None
            tallies[order].add(kind_codes(layout, ids) if codes is None else codes)

    with hold():
        ranks = EdgeRanks.empty(layout, per_item * len(items), lm.device)
        for k, item in enumerate(items):
            if item.random is not None:
                place(ranks, per_item * k + 1, here(k, item.random))
                item.random = None
            if item.greedy is None:
                settle(k)
                place(ranks, per_item * k, here(k, item.ids))
                item.ids = None

    def ready(ranks: EdgeRanks, batch: list[PlannedPass]) -> None:
        for k in sorted({p.item for p in batch}):
            greedy, n = items[k].greedy, max(p.needs for p in batch if p.item == k)
            if greedy is not None and greedy.given < n:
                start = greedy.given
                ids = here(k, greedy.take(n))
                place(ranks, per_item * k, ids, start, greedy.host_positions(start, greedy.given))

    positions = [items[p.item].position for p in plan]
    last = all(t == input_ids.shape[1] - 1 for t in positions)
    inst = lm.instrumentation
    searching = any(item.greedy is not None for item in items)
    at = None if last else positions
    by_kind = [item.layout.counts_by_kind() for item in items]
    edges = [(c["attention"], c["mlp"], c["residual"]) for c in by_kind]
    q_logits = run_batches(
        inst, input_ids, ranks, plan, settings.batch_size, at, ready, hold, tallies, edges, searching
    )
    del ranks
    for item in items:
        item.finish()  # the rest of the search (the largest stratum may not need it all), outside the lock
    with hold():
        for k, item in enumerate(items):
            if k not in counts:
                settle(k)
            item.ids = None
        return strata_of(lm, items, strata, counts, plan, torch.softmax(q_logits, -1), settings.top_k, modes)


def recorded_graph(lm: LoadedModel, input_ids: torch.Tensor, weighting: str) -> tuple[torch.Tensor, TokenGraph]:
    """The full model's logits at the last position (``[V]`` float32) and the graph of ``input_ids [1, T]``:
    one recorded forward pass, or its replay (``lm.instrumentation.replay``), which gives the same."""
    replay = lm.instrumentation.replay
    replayed = replay.forward_graph(input_ids, weighting) if replay is not None else None
    if replayed is not None:
        return replayed
    logits, records = lm.instrumentation.recorded_forward(input_ids, logits_to_keep=1)
    return logits[0, -1].float(), build_graph(lm.adapter, records, weighting)


def full_output(lm: LoadedModel, item: Searched, k: int) -> Output:
    """The full model's own output at ``item``'s position."""
    p = torch.softmax(item.logits.float(), -1)
    return summaries(lm, p, p[None], item.probes, k)[0]


def _finished(a: np.ndarray | None) -> np.ndarray:
    assert a is not None, "the item's search is finished (Searched.finish)"
    return a


def make_trace(
    lm: LoadedModel,
    prompt: str,
    token_ids: list[int],
    item: Searched,
    full: Output,
    strata: list[Stratum],
    settings: Settings,
    gold: str | None,
    timings: dict[str, float],
) -> Trace:
    """The :class:`Trace` of one position and mode from its evaluated strata."""
    t = item.position
    sizes = [s.size for s in strata]
    actual = [s.n_edges / item.layout.n_edges for s in strata]  # density integrates over these
    text = lambda i: None if i is None else token_text(lm, i)
    return Trace(
        model_id=lm.model_id,
        revision=lm.revision,
        prompt=prompt,
        tokens=[token_text(lm, i) for i in token_ids[: t + 1]],
        token_ids=token_ids[: t + 1],
        gold=gold,
        settings=settings,
        layout=item.layout,
        full=full,
        strata=strata,
        density=density(actual, [s.trace.tv for s in strata], settings.density_axis),
        recovery=recovery_sizes(sizes, [s.trace.shared_nucleus for s in strata]),
        timings=dict(timings),
        order=_finished(item.order),
        order_weights=_finished(item.order_weights),
        position=t,
        next_token=text(token_ids[t + 1]) if t + 1 < len(token_ids) else None,
        target=text(item.probes.target),
        foil=text(item.probes.foil),
    )


def probes_for(
    lm: LoadedModel,
    token_ids: list[int],
    position: int,
    logits: torch.Tensor,
    gold: str | None,
    target: str | None,
    foil: str | None,
) -> Probes:
    """The probes of one position: the target defaults to the text's next token, else the full top-1."""
    target_id = first_token_id(lm, target, "target")
    if target_id is None:
        target_id = token_ids[position + 1] if position + 1 < len(token_ids) else int(logits.argmax())
    return Probes(first_token_id(lm, gold, "gold token"), target_id, first_token_id(lm, foil, "foil"))


@torch.no_grad()
def trace_modes(
    lm: LoadedModel,
    prompt: str,
    settings: Settings,
    modes: tuple[Mode, ...] = MODES,
    gold: str | None = None,
    progress=None,
    position: int | None = None,
    target: str | None = None,
    foil: str | None = None,
) -> list[Trace]:
    """The s-Trace of ``prompt`` in each ablation mode of ``modes`` (one :class:`Trace` each, whose
    ``settings.mode`` is that mode). The greedy order does not depend on the mode, so the forward pass,
    graph and search are done once and every mode's strata and controls go through the same batched
    masked passes. Arguments as :func:`trace_prompt`."""
    report = progress or (lambda frac, msg: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    check_modes(modes)

    def lap(name: str) -> None:
        nonlocal clock
        synchronize(lm.device)
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    check_prompt_text(prompt)
    # The model's lock is held for the device work only: while this trace's search runs on the host,
    # another thread's trace (a second session, the next prompt of a corpus) may use the model.
    with holding(lm, report):
        clock = time.perf_counter()
        text_ids = tokenize(lm, prompt, settings.max_tokens)
        t = resolve_position(position, text_ids.shape[1])
        check_settings(lm, settings, t + 1)
        # refuse, with the estimate, what would run out of memory; a smaller batch where only that fits
        settings = check_memory(lm, settings, t + 1)
        layout = layout_for(lm.adapter, t + 1)
        if lm.instrumentation.replay is not None:  # a long prompt: the recorded passes' memory is freed
            lm.instrumentation.replay.make_room(EdgeRanks.nbytes_for(layout, 1 + settings.controls))
        input_ids = text_ids[:, : t + 1]  # the text cut after the traced token
        token_ids = text_ids[0].tolist()
        random = start_random_control(layout, settings.seed, lm.device) if settings.controls else None
        report(0.05, "forward pass")
        logits, graph = recorded_graph(lm, input_ids, settings.weighting)
        probes = probes_for(lm, token_ids, t, logits, gold, target, foil)
        csr = graph.search_csr()
        del graph  # the graph's weights are freed: the search reads the CSR
        lap("graph")
        report(0.25, "greedy search")
        greedy = greedy_search(csr, random.take_plans() if random else None)
        del csr
    greedy.start()  # the host part, on a background thread: the first masked passes run beside it
    item = search_position(layout, greedy, t, logits, probes, random.order if random else None, lm.device, False)
    del greedy, random  # the random order's future (its order is in item)
    lap("search")
    report(0.4, "masked forward passes")
    strata = evaluate(lm, input_ids, [item], settings, modes, hold=lambda: holding(lm, report))
    with holding(lm, report):
        full = full_output(lm, item, settings.top_k)
    lap("evaluate")
    report(1.0, "done")
    timings["total"] = sum(timings.values())
    timings["host search"] = item.search_seconds  # in "search" and "evaluate": the passes run beside it
    return [
        make_trace(
            lm,
            prompt,
            token_ids,
            item,
            full,
            mode_strata,
            settings if mode == settings.mode else replace(settings, mode=mode),
            gold,
            timings,
        )
        for mode, mode_strata in zip(modes, strata)
    ]
