"""The pipeline: :func:`trace_prompt` computes the :class:`explorer.results.Trace` of the prediction at one
position of a prompt (default: after its last token) by tying the steps together:

1. one recorded forward pass (full logits, attention, per-layer terms);
2. edge weights (:mod:`explorer.graph`);
3. the greedy edge order (:mod:`explorer.search`), and the random control's order, which depends on the
   graph's shape only: computed beside steps 1-3 on a background thread and kept per shape;
4. strata, controls and (optionally) the other ablation mode, evaluated in batched masked passes
   (:mod:`explorer.intervene`);
5. metrics and density (:mod:`explorer.metrics`), moved to the host once.

Steps 4-5 take any number of positions of one text (:class:`Searched`, one per position), so that
:func:`explorer.text.trace_text` shares them: the masked passes of every position go through the same
batches, each read at its own position.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

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
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.metrics import entropy, shared_nucleus, tie_rtol, total_variation
from explorer.models.limits import check_memory, check_settings
from explorer.models.loading import LoadedModel
from explorer.options import MODES, Mode, Variant, check_modes
from explorer.orders import greedy_search, host_copy, start_random_control
from explorer.pass_graphs import synchronize
from explorer.results import Output, Settings, Stratum, TokenProb, Trace
from explorer.search import strata_edges


@dataclass
class Probes:
    """Token ids measured in every output besides TV: ``gold`` (cross-entropy), ``target`` and ``foil``."""

    gold: int | None = None
    target: int | None = None
    foil: int | None = None


def _outputs(lm: LoadedModel, p: torch.Tensor, q: torch.Tensor, probes: Probes, k: int) -> list[Output]:
    """Summaries of ``q [B, V]`` against ``p [V]``, computed on the device and moved to the host in one
    transfer (a float64 table ``[B, 7 + 3k]``; token ids are exact in float64)."""
    top_p, top_i = q.topk(k, dim=-1)
    at = lambda i: q[:, i].double() if i is not None else torch.full_like(q[:, 0], float("nan"), dtype=torch.float64)
    columns = [
        total_variation(p, q),
        shared_nucleus(p, q, tie_rtol(lm.dtype)),
        entropy(q),
        -torch.log(at(probes.gold).clamp_min(1e-45)),
        at(probes.target),
        at(probes.foil),
        torch.log(at(probes.target).clamp_min(1e-300)) - torch.log(at(probes.foil).clamp_min(1e-300)),
    ]
    table = (
        torch.cat(
            [
                torch.stack([c.double() for c in columns], 1),
                top_p.double(),
                top_i.double(),
                q[:, p.topk(k).indices].double(),
            ],
            1,
        )
        .cpu()
        .numpy()
    )
    tv, nuc, ent, ce, target, foil, diff = table[:, :7].T
    top_p, top_i, at_full_top = table[:, 7 : 7 + k], table[:, 7 + k : 7 + 2 * k].astype(np.int64), table[:, 7 + 2 * k :]
    text = {i: token_text(lm, i) for i in set(top_i.ravel().tolist())}  # subgraphs share most
    given = lambda i, x: None if i is None else float(x)
    return [
        Output(
            [TokenProb(text[i], i, float(pr)) for i, pr in zip(top_i[b].tolist(), top_p[b])],
            float(ent[b]),
            float(tv[b]),
            int(nuc[b]),
            given(probes.gold, ce[b]),
            [float(x) for x in at_full_top[b]],
            given(probes.target, target[b]),
            given(probes.foil, foil[b]),
            given(probes.foil if probes.target is not None else None, diff[b]),
        )
        for b in range(len(table))
    ]


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


def _variants(settings: Settings, mode: Mode, n: int) -> list[tuple[Variant, MaskSpec]]:
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


@dataclass
class Searched:
    """One position's graph after the search: what its masked passes and its :class:`Trace` need.
    ``orders``: ``[E]`` edge ids on the device (the greedy order, then the random control's, if any;
    emptied by :func:`evaluate`), in ``layout`` (the position's own, ``position + 1`` tokens);
    ``logits [V]``: the full model there."""

    position: int
    layout: EdgeLayout
    orders: list[torch.Tensor]
    order: np.ndarray
    order_weights: np.ndarray
    logits: torch.Tensor
    probes: Probes


def _to_device(order: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    """A random control's order on ``device``: a kept one (read-only, shared by every trace of its shape)
    without a host copy (the tensor is only read, to copy it); one already there as it is."""
    if torch.is_tensor(order):
        return order.to(device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "The given NumPy array is not writable")
        return torch.from_numpy(order).to(device, copy=True)


def search_position(
    layout: EdgeLayout, finish_search, position: int, logits: torch.Tensor, probes: Probes, random_order, device
) -> Searched:
    """Finish the greedy search of one position's graph of ``layout`` (``finish_search``, from
    :func:`explorer.orders.greedy_search`: on the host, outside the model's lock) and gather its orders on
    ``device``. ``random_order``: a future of the random control's order, or ``None``."""
    order, weights = finish_search()
    with memory_message():
        random = [_to_device(random_order.result(), device)] if random_order is not None else []
    orders = [order.to(device), *random]
    return Searched(position, layout, orders, host_copy(order), weights, logits, probes)


def evaluate(
    lm: LoadedModel, input_ids: torch.Tensor, items: list[Searched], settings: Settings, modes: tuple[Mode, ...]
) -> list[list[Stratum]]:
    """Every stratum, control and mode of every position in ``items`` in shared batched masked passes over
    ``input_ids [1, T]`` (``T`` at least each position + 1; each pass read at its own position), with
    their metrics: one list of strata per item and mode, ``[item][mode]`` flattened item-major. The items'
    device orders are released once ranked (``item.orders`` is emptied): beside a long prompt's passes
    they would hold 12-16 bytes per edge."""
    layout = layout_for(lm.adapter, input_ids.shape[1])
    strata = [strata_edges(settings.sizes, item.layout.n_edges) for item in items]
    counts = [stratum_counts(item.layout, item.orders[0], [n for _, n in strata[k]]) for k, item in enumerate(items)]
    n_orders = [len(item.orders) for item in items]
    orders = [o if item.layout == layout else item.layout.translate(o, layout) for item in items for o in item.orders]
    for item in items:
        item.orders = []
    ranks = EdgeRanks.from_orders(layout, orders, lm.device)
    del orders
    specs: list[tuple[int, Mode, int, Variant, MaskSpec]] = []
    first = 0
    for k in range(len(items)):
        for mode in modes:
            for i, (_, n) in enumerate(strata[k]):
                for variant, spec in _variants(settings, mode, n):
                    specs.append((k, mode, i, variant, replace(spec, order_index=first + spec.order_index)))
        first += n_orders[k]
    positions = [items[k].position for k, *_ in specs]
    last = all(t == input_ids.shape[1] - 1 for t in positions)
    q_logits = masked_logits(
        lm.instrumentation, input_ids, ranks, [s for *_, s in specs], settings.batch_size, None if last else positions
    )
    del ranks
    q_all = torch.softmax(q_logits, -1)
    result = []
    for k, item in enumerate(items):
        rows = [j for j, spec in enumerate(specs) if spec[0] == k]
        p = torch.softmax(item.logits.float(), -1)
        outs = dict(zip(rows, _outputs(lm, p, q_all[rows], item.probes, settings.top_k)))
        comps, kinds = counts[k]
        names = item.layout.component_names()
        for mode in modes:
            result.append(
                [
                    Stratum(
                        size=size,
                        n_edges=n,
                        outputs={specs[j][3]: outs[j] for j in rows if specs[j][1] == mode and specs[j][2] == i},
                        kinds={"attention": int(kinds[i, 0]), "mlp": int(kinds[i, 1]), "residual": int(kinds[i, 2])},
                        components={names[c]: int(comps[i, c]) for c in np.nonzero(comps[i])[0]},
                    )
                    for i, (size, n) in enumerate(strata[k])
                ]
            )
    return result


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
    return _outputs(lm, p, p[None], item.probes, k)[0]


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
        order=item.order,
        order_weights=item.order_weights,
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
        finish_search = greedy_search(csr, random.take_plans() if random else None)
        del csr
    item = search_position(layout, finish_search, t, logits, probes, random.order if random else None, lm.device)
    del finish_search, random  # the search's tables, and the random order's future (its order is in item)
    lap("search")
    with holding(lm, report):
        clock = time.perf_counter()  # waiting for the lock is not part of any stage
        report(0.4, "masked forward passes")
        strata = evaluate(lm, input_ids, [item], settings, modes)
        full = full_output(lm, item, settings.top_k)
        lap("evaluate")
    report(1.0, "done")
    timings["total"] = sum(timings.values())
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
