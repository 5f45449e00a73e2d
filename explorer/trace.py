"""The pipeline: :func:`trace_prompt` computes the :class:`explorer.results.Trace` of one prompt by tying
the steps together:

1. one recorded forward pass (full logits, attention, per-layer terms);
2. edge weights (:mod:`explorer.graph`);
3. the greedy edge order (:mod:`explorer.search`), and the random control's order, which depends on the
   graph's shape only: computed beside steps 1-3 on a background thread and kept per shape;
4. strata, controls and (optionally) the other ablation mode, evaluated in batched masked passes
   (:mod:`explorer.intervene`);
5. metrics and density (:mod:`explorer.metrics`), moved to the host once.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
import torch

from explorer.errors import BadPrompt, BadSetting, OutOfMemory
from explorer.density import density, recovery_sizes
from explorer.edges import stratum_counts
from explorer.graph import build_graph, layout_for
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.metrics import entropy, shared_nucleus, total_variation
from explorer.models.loading import LoadedModel
from explorer.options import MODES, Mode, Variant
from explorer.orders import greedy_search, start_random_control
from explorer.results import Output, Settings, Stratum, TokenProb, Trace
from explorer.search import strata_edges


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def check_prompt_text(prompt: str) -> None:
    """Reject an empty prompt before anything is loaded."""
    if not prompt or not prompt.strip():
        raise BadPrompt("the prompt is empty")


def tokenize(lm: LoadedModel, prompt: str, max_tokens: int) -> torch.Tensor:
    """``[1, T]`` input ids, with the tokenizer's BOS where it adds one."""
    check_prompt_text(prompt)
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.shape[1] > max_tokens:
        raise BadPrompt(f"the prompt has {ids.shape[1]} tokens; the limit is {max_tokens}")
    if ids.shape[1] < 2:
        raise BadPrompt("the prompt needs at least 2 tokens")
    return ids.to(lm.device)


def _token_text(lm: LoadedModel, token_id: int) -> str:
    """The text of one token."""
    text = lm.tokenizer.decode([token_id])
    assert isinstance(text, str)  # decode returns a list only for a batch of sequences
    return text


@contextmanager
def _memory_message():
    """Out of memory becomes one message."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory("out of memory: try a shorter prompt, a smaller dtype or a smaller batch") from exc


@contextmanager
def _holding(lm: LoadedModel, report):
    """Hold the model's lock (saying so when another trace has it); out of memory becomes one message."""
    if not lm.lock.acquire(blocking=False):
        report(0.0, "waiting: another trace is using the model")
        lm.lock.acquire()
    try:
        with _memory_message():
            yield
    finally:
        lm.lock.release()


def _outputs(lm: LoadedModel, p: torch.Tensor, q: torch.Tensor, gold_id: int | None, k: int) -> list[Output]:
    """Summaries of ``q [B, V]`` against ``p [V]``, computed on the device and moved to the host in one
    transfer (a float64 table ``[B, 4 + 3k]``; token ids are exact in float64)."""
    top_p, top_i = q.topk(k, dim=-1)
    ce = -torch.log(q[:, gold_id].clamp_min(1e-45)) if gold_id is not None else torch.full_like(q[:, 0], float("nan"))
    columns = [total_variation(p, q), shared_nucleus(p, q), entropy(q), ce]
    table = torch.cat([torch.stack([c.double() for c in columns], 1), top_p.double(), top_i.double(),
                       q[:, p.topk(k).indices].double()], 1).cpu().numpy()
    tv, nuc, ent, ce = table[:, :4].T
    top_p, top_i, at_full_top = table[:, 4: 4 + k], table[:, 4 + k: 4 + 2 * k].astype(np.int64), table[:, 4 + 2 * k:]
    text = {i: _token_text(lm, i) for i in set(top_i.ravel().tolist())}  # subgraphs share most
    return [
        Output([TokenProb(text[i], i, float(pr)) for i, pr in zip(top_i[b].tolist(), top_p[b])],
               float(ent[b]), float(tv[b]), int(nuc[b]), None if gold_id is None else float(ce[b]),
               [float(x) for x in at_full_top[b]])
        for b in range(len(table))
    ]


def trace_prompt(
    lm: LoadedModel,
    prompt: str,
    settings: Settings | None = None,
    gold: str | None = None,
    progress=None,
) -> Trace:
    """Compute the s-Trace of ``prompt`` over ``settings.sizes``.

    ``gold``: the true next token's text (its first token is used) for cross-entropy. ``progress``:
    optional callable ``(fraction, message)``.
    """
    settings = settings or Settings()
    return trace_modes(lm, prompt, settings, (settings.mode,), gold, progress)[0]


def _variants(settings: Settings, mode: Mode, n: int) -> list[tuple[Variant, MaskSpec]]:
    """The masked passes of one stratum of ``n`` edges in one ablation mode."""
    keep_attn = mode == "attention-kept"
    out: list[tuple[Variant, MaskSpec]] = [("trace", MaskSpec(n, keep_attention=keep_attn))]
    if settings.compare_modes:
        out.append(("other_mode", MaskSpec(n, keep_attention=not keep_attn)))
    if settings.controls:
        out.append(("inverse", MaskSpec(n, invert=True, keep_residual=True, keep_attention=keep_attn)))
        out.append(("random", MaskSpec(n, order_index=1, keep_residual=True, keep_attention=keep_attn)))
    return out


@torch.no_grad()
def trace_modes(
    lm: LoadedModel,
    prompt: str,
    settings: Settings,
    modes: tuple[Mode, ...] = MODES,
    gold: str | None = None,
    progress=None,
) -> list[Trace]:
    """The s-Trace of ``prompt`` in each ablation mode of ``modes`` (one :class:`Trace` each, whose
    ``settings.mode`` is that mode). The greedy order does not depend on the mode, so the forward pass,
    graph and search are done once and every mode's strata and controls go through the same batched
    masked passes. Arguments as :func:`trace_prompt`."""
    report = progress or (lambda frac, msg: None)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    for mode in modes:
        if mode not in MODES:
            raise BadSetting(f"unknown ablation mode '{mode}'; choose one of {', '.join(MODES)}")

    def lap(name: str) -> None:
        nonlocal clock
        _sync(lm.device)
        now = time.perf_counter()
        timings[name] = now - clock
        clock = now

    check_prompt_text(prompt)
    # The model's lock is held for the device work only: while this trace's search runs on the host,
    # another thread's trace (a second session, the next prompt of a corpus) may use the model.
    with _holding(lm, report):
        clock = time.perf_counter()
        input_ids = tokenize(lm, prompt, settings.max_tokens)
        gold_id = None
        if gold:
            gold_ids = lm.tokenizer(gold, add_special_tokens=False)["input_ids"]
            gold_id = gold_ids[0] if gold_ids else None
        inst = lm.instrumentation
        random_order = None
        if settings.controls:
            random_order = start_random_control(layout_for(lm.adapter, input_ids.shape[1]), settings.seed, lm.device)
        report(0.05, "forward pass")
        logits, records = inst.recorded_forward(input_ids, logits_to_keep=1)
        logits = logits[0, -1].float()
        graph = build_graph(lm.adapter, records, settings.weighting)
        del records
        lap("graph")
        report(0.25, "greedy search")
        finish_search = greedy_search(graph)
    order = finish_search()  # on the host, outside the model's lock
    with _memory_message():
        orders = [order] + ([random_order.result()] if random_order is not None else [])
    lap("search")
    with _holding(lm, report):
        clock = time.perf_counter()  # waiting for the lock is not part of any stage
        layout = graph.layout
        on_device = [torch.tensor(o, device=lm.device) for o in orders]  # [E] edge ids each
        ranks = EdgeRanks.from_orders(layout, on_device, lm.device)

        report(0.4, "masked forward passes")
        strata = strata_edges(settings.sizes, layout.n_edges)
        specs: list[tuple[Mode, int, Variant, MaskSpec]] = [
            (mode, i, variant, spec)
            for mode in modes for i, (_, n) in enumerate(strata) for variant, spec in _variants(settings, mode, n)
        ]
        q_logits = masked_logits(inst, input_ids, ranks, [s for *_, s in specs], settings.batch_size)
        lap("evaluate")

        p = torch.softmax(logits, -1)
        q = torch.softmax(q_logits, -1)
        full = _outputs(lm, p, p[None], gold_id, settings.top_k)[0]
        outs = _outputs(lm, p, q, gold_id, settings.top_k)
        n_keeps = [n for _, n in strata]
        comps, kinds = stratum_counts(layout, on_device[0], n_keeps)
        names = layout.component_names()
        weights = graph.flat_weights()[on_device[0]].cpu().numpy()
        lap("metrics")
    report(1.0, "done")
    timings["total"] = sum(timings.values())
    tokens = [_token_text(lm, i) for i in input_ids[0].tolist()]
    traces = []
    for mode in modes:
        result_strata = []
        for i, (size, n) in enumerate(strata):
            nz = np.nonzero(comps[i])[0]
            result_strata.append(Stratum(
                size=size,
                n_edges=n,
                outputs={variant: outs[j] for j, (m, si, variant, _) in enumerate(specs) if m == mode and si == i},
                kinds={"attention": int(kinds[i, 0]), "mlp": int(kinds[i, 1]), "residual": int(kinds[i, 2])},
                components={names[c]: int(comps[i, c]) for c in nz},
            ))
        sizes = [s.size for s in result_strata]
        mode_settings = settings if mode == settings.mode else replace(settings, mode=mode)
        traces.append(Trace(
            model_id=lm.model_id,
            revision=lm.revision,
            prompt=prompt,
            tokens=tokens,
            token_ids=input_ids[0].tolist(),
            gold=gold,
            settings=mode_settings,
            layout=layout,
            full=full,
            strata=result_strata,
            density=density(sizes, [s.trace.tv for s in result_strata], settings.density_axis),
            recovery=recovery_sizes(sizes, [s.trace.shared_nucleus for s in result_strata]),
            timings=dict(timings),
            order=order,
            order_weights=weights,
        ))
    return traces
