"""Explain every token of a text: :func:`trace_text` traces many positions of one text at once, and
:func:`trace_continuation` the model's own continuation of a prompt, a density per generated token.

Tracing position ``t`` explains the next-token distribution after tokens ``0..t``: the graph rooted at the
output node ``(2L, t)``, the same as tracing the text cut after token ``t``. The model is causal, so one
recorded forward pass over the whole text serves every position: position ``t``'s graph is built from the
first ``t + 1`` tokens of each layer's record. The searches run per position; the masked passes of the
positions of a group go through the same batches over the group's longest prefix, each read at its own
position. Groups are cut so that their rank tables and graphs take about what the longest position alone
would (:func:`plan_groups`), and one group's host searches run (on a thread pool) while the previous
group's masked passes run on the device.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import torch

from explorer.errors import BadSetting
from explorer.graph import build_graph, layout_for
from explorer.inputs import check_prompt_text, holding, resolve_position, token_text, tokenize
from explorer.models.hooks import LayerRecord
from explorer.models.limits import check_settings, effective_max_tokens
from explorer.models.loading import LoadedModel
from explorer.orders import greedy_search, start_random_control
from explorer.results import PositionSummary, Settings, TextTrace, Trace
from explorer.trace import evaluate, full_output, make_trace, probes_for, search_position


def parse_positions(spec: str | None, n_tokens: int) -> list[int]:
    """Positions from a command-line spec: ``None`` or ``""`` every position (1 to ``T - 1``); ``5``,
    ``-1``; a slice ``5:``, ``:10``, ``2:20:2``; or a comma-separated list of these. Negative counts from
    the end; a slice's end is exclusive, as in Python."""
    if not spec:
        return list(range(1, n_tokens))
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        try:
            if ":" in part:
                bounds = [int(x) if x.strip() else None for x in part.split(":")]
                if len(bounds) > 3:
                    raise ValueError(part)
                out |= {t for t in range(n_tokens)[slice(*bounds)] if t >= 1}
            else:
                out.add(resolve_position(int(part), n_tokens))
        except ValueError as exc:
            raise BadSetting(f"positions: '{part}' is not a position, a slice such as 5: or a list of them") from exc
    if not out:
        raise BadSetting(f"positions: '{spec}' selects none of the text's positions 1 to {n_tokens - 1}")
    return sorted(out)


def _prefix(record: LayerRecord, n: int) -> LayerRecord:
    """The record of the first ``n`` tokens: what the layer computed on the text cut there (causal)."""
    cut = lambda x: None if x is None else x[:n]
    return LayerRecord(
        x=cut(record.x),
        attn=cut(record.attn),
        attn_raw=cut(record.attn_raw),
        mlp=cut(record.mlp),
        probs=None if record.probs is None else record.probs[:, :n, :n],
        values=None if record.values is None else record.values[:, :n],
    )


def plan_groups(positions: list[int], cost, fill: float = 0.9) -> list[list[int]]:
    """Positions (ascending) cut into groups evaluated together, from the longest down: a group over the
    prefix of its longest position ``u`` takes ``cost(u, k)`` bytes for ``k`` positions; each group stays
    within what the longest position of the text alone takes (two groups are alive at a time: one
    searched, one evaluated), and holds positions whose own prefix is
    at least ``fill`` of the group's (the masked passes of a group run over its longest prefix)."""
    budget = cost(positions[-1], 1)
    groups, rest = [], sorted(positions, reverse=True)
    while rest:
        longest, k = rest[0], 1
        while k < len(rest) and cost(longest, k + 1) <= budget and rest[k] + 1 >= fill * (longest + 1):
            k += 1
        groups.append(sorted(rest[:k]))
        rest = rest[k:]
    return groups


def _summary(
    lm: LoadedModel, trace: Trace, token_ids: list[int], probs: torch.Tensor, generated: bool
) -> PositionSummary:
    """The per-position row of :class:`TextTrace` from a position's trace and its full distribution."""
    t = trace.position
    nxt = token_ids[t + 1] if t + 1 < len(token_ids) else None
    return PositionSummary(
        position=t,
        token=trace.tokens[-1],
        next_token=trace.next_token,
        next_token_prob=None if nxt is None else float(probs[nxt]),
        next_token_rank=None if nxt is None else int((probs > probs[nxt]).sum()) + 1,
        entropy=trace.full.entropy,
        top1=trace.full.top[0].token,
        top1_prob=trace.full.top[0].prob,
        density=trace.density_of("trace", "log"),
        density_linear=trace.density_of("trace", "linear"),
        recovery=dict(trace.recovery),
        generated=generated,
    )


@torch.no_grad()
def trace_text(
    lm: LoadedModel,
    text: str,
    settings: Settings | None = None,
    positions: list[int] | str | None = None,
    *,
    token_ids: list[int] | None = None,
    generated_from: int | None = None,
    keep_traces: bool = True,
    progress=None,
) -> TextTrace:
    """Trace the prediction at each of ``positions`` of ``text`` (default: every position from 1; ints,
    negative from the end, or a spec for :func:`parse_positions`) in ``settings.mode``. Each position's
    :class:`Trace` equals :func:`explorer.trace.trace_prompt` with that ``position`` (up to the float
    rounding of one forward pass over the whole text against one over the cut text), target: the text's
    next token. ``token_ids`` gives the text's ids directly (a generated continuation is not re-tokenised);
    ``keep_traces=False`` keeps only the summaries. ``progress``: callable ``(fraction, message)``."""
    settings = settings or Settings()
    report = progress or (lambda frac, msg: None)
    timings = {"forward": 0.0, "graph": 0.0, "search": 0.0, "evaluate": 0.0}
    check_prompt_text(text)
    with holding(lm, report):
        clock = time.perf_counter()
        if token_ids is None:
            ids = tokenize(lm, text, settings.max_tokens)
        else:
            cap, reason = effective_max_tokens(lm, settings.max_tokens)
            if len(token_ids) > cap:
                raise BadSetting(f"the text has {len(token_ids)} tokens; the limit is {cap}, {reason}")
            ids = torch.tensor([token_ids], device=lm.device)
        all_ids = ids[0].tolist()
        n_tokens = len(all_ids)
        if isinstance(positions, str) or positions is None:
            wanted = parse_positions(positions, n_tokens)
        else:
            wanted = sorted({resolve_position(p, n_tokens) for p in positions})
        check_settings(lm, settings, wanted[0] + 1)
        report(0.02, "forward pass")
        logits, records = lm.instrumentation.recorded_forward(ids)
        logits = logits[0].float()  # [T, V]
        timings["forward"] = time.perf_counter() - clock

    n_orders = 2 if settings.controls else 1
    per_id = 8 * n_orders + 4  # an int64 rank per order, a float32 weight

    def cost(longest: int, k: int) -> int:
        return per_id * k * layout_for(lm.adapter, longest + 1).n_ids

    traces: dict[int, Trace] = {}
    summaries = []
    done = 0

    def prepare(group: list[int]) -> list[Future]:
        """Build the group's graphs and their searches' device part (under the model's lock); the host
        searches run on the pool (numba releases the GIL), beside the previous group's masked passes."""
        with holding(lm, report):
            clock = time.perf_counter()
            futures = []
            for t in group:
                probes = probes_for(lm, all_ids, t, logits[t], None, None, None)
                random = (
                    start_random_control(layout_for(lm.adapter, t + 1), settings.seed, lm.device)
                    if settings.controls
                    else None
                )
                csr = build_graph(lm.adapter, [_prefix(r, t + 1) for r in records], settings.weighting).search_csr()
                finish = greedy_search(csr, random.take_plans() if random else None)
                random_order = random.order if random else None
                futures.append(
                    pool.submit(search_position, csr.layout, finish, t, logits[t], probes, random_order, lm.device)
                )
            timings["graph"] += time.perf_counter() - clock
        return futures

    groups = plan_groups(wanted, cost)
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        upcoming = prepare(groups[0])
        for k, group in enumerate(groups):
            searching, upcoming = upcoming, (prepare(groups[k + 1]) if k + 1 < len(groups) else [])
            clock = time.perf_counter()
            items = [f.result() for f in searching]  # the wait for the host searches, not their sum
            timings["search"] += time.perf_counter() - clock
            with holding(lm, report):
                clock = time.perf_counter()
                strata = evaluate(lm, ids[:, : group[-1] + 1], items, settings, (settings.mode,))
                for item, item_strata in zip(items, strata):
                    trace = make_trace(
                        lm, text, all_ids, item, full_output(lm, item, settings.top_k), item_strata, settings, None, {}
                    )
                    probs = torch.softmax(logits[item.position], -1)
                    generated = generated_from is not None and item.position + 1 >= generated_from
                    summaries.append(_summary(lm, trace, all_ids, probs, generated))
                    if keep_traces:
                        traces[item.position] = trace
                timings["evaluate"] += time.perf_counter() - clock
            del items
            done += len(group)
            report(0.05 + 0.95 * done / len(wanted), f"{done} of {len(wanted)} positions")
    timings["total"] = sum(timings.values())
    summaries.sort(key=lambda s: s.position)
    return TextTrace(
        model_id=lm.model_id,
        revision=lm.revision,
        text=text,
        tokens=[token_text(lm, i) for i in all_ids],
        token_ids=all_ids,
        settings=settings,
        positions=summaries,
        traces=dict(sorted(traces.items())),
        generated_from=generated_from,
        timings=timings,
    )


@torch.no_grad()
def generate(
    lm: LoadedModel,
    prompt: str,
    n_tokens: int,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    seed: int = 0,
    max_tokens: int | None = None,
) -> list[int]:
    """The prompt's token ids followed by up to ``n_tokens`` the model generates (stopping at its end of
    sequence token): greedy (the argmax each step, as ``transformers``' ``generate`` without sampling), or
    sampled at ``temperature`` from the nucleus of mass ``top_p`` with a generator seeded by ``seed``
    (reproducible, and independent of torch's global random state)."""
    if n_tokens < 1:
        raise BadSetting("generate: the number of tokens must be at least 1")
    if not greedy and not (temperature > 0 and 0 < top_p <= 1):
        raise BadSetting("generate: temperature must be above 0 and top-p in (0, 1]")
    check_prompt_text(prompt)
    cap, reason = effective_max_tokens(lm, max_tokens or Settings().max_tokens)
    with holding(lm, lambda *_: None):
        ids = tokenize(lm, prompt, cap)
        if ids.shape[1] + n_tokens > cap:
            raise BadSetting(
                f"the prompt's {ids.shape[1]} tokens and {n_tokens} generated exceed the limit of {cap}, {reason}"
            )
        eos = getattr(lm.model.generation_config, "eos_token_id", None)
        stop = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        rng = torch.Generator().manual_seed(seed)
        for _ in range(n_tokens):
            logits = lm.model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[0, -1].float()
            if greedy:
                nxt = int(logits.argmax())
            else:
                probs = torch.softmax(logits / temperature, -1).cpu()
                sorted_p, order = probs.sort(descending=True, stable=True)
                keep = (sorted_p.cumsum(0) - sorted_p) < top_p  # the smallest prefix reaching top_p
                sorted_p = torch.where(keep, sorted_p, 0.0)
                nxt = int(order[torch.multinomial(sorted_p / sorted_p.sum(), 1, generator=rng)])
            ids = torch.cat([ids, torch.tensor([[nxt]], device=ids.device)], 1)
            if nxt in stop:
                break
    return ids[0].tolist()


def trace_continuation(
    lm: LoadedModel,
    prompt: str,
    n_tokens: int,
    settings: Settings | None = None,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    seed: int = 0,
    keep_traces: bool = True,
    progress=None,
) -> TextTrace:
    """Generate ``n_tokens`` from ``prompt`` (:func:`generate`), then trace the prediction of every
    generated token: the positions from the prompt's last token to the one before the last generated."""
    settings = settings or Settings()
    ids = generate(
        lm,
        prompt,
        n_tokens,
        temperature=temperature,
        top_p=top_p,
        greedy=greedy,
        seed=seed,
        max_tokens=settings.max_tokens,
    )
    n_prompt = len(lm.tokenizer(prompt)["input_ids"])
    if len(ids) <= n_prompt:
        raise BadSetting("the model generated nothing (its first token ends the sequence)")
    text = lm.tokenizer.decode(ids)
    positions = [t for t in range(n_prompt - 1, len(ids) - 1) if t >= 1]
    return trace_text(
        lm,
        str(text),
        replace(settings),
        positions,
        token_ids=ids,
        generated_from=n_prompt,
        keep_traces=keep_traces,
        progress=progress,
    )
