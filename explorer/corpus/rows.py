"""One prompt's rows in a corpus run's results, built in one place for every way of tracing prompts.

:func:`prompt_rows` turns a prompt's traces (one per ablation mode, as :func:`explorer.trace.trace_modes`
returns them) into rows with every column of :data:`explorer.corpus.schema.SCHEMA`: one row per mode and
size, the per-prompt columns repeated on each. :func:`trace_rows` traces a prompt and builds its rows;
the local tracer calls it in this process, each Ray actor on its own node.

An all-positions run (``corpus --all-positions``) traces every position of each text instead
(:func:`explorer.text.trace_text`, once per mode) and stores one row per position and mode
(:func:`position_rows`, the columns of :data:`explorer.corpus.schema.POSITIONS_SCHEMA`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from explorer.corpus.frequency import Frequencies
from explorer.corpus.sources import Prompt
from explorer.graph import layout_for
from explorer.options import RECOVERY_LEVELS, check_modes
from explorer.results import Settings, TextTrace, Trace
from explorer.search import strata_edges
from explorer.text import trace_text
from explorer.trace import trace_modes

if TYPE_CHECKING:
    from explorer.models.loading import LoadedModel


def _opt(x):
    return None if x is None else float(x)


def prompt_rows(
    traces: list[Trace], prompt: Prompt, index: int, freq: Frequencies | None, seconds: float
) -> list[dict]:
    """Rows (one per mode and size, every column of :data:`explorer.corpus.schema.SCHEMA`) of one prompt's
    traces, one trace per mode as :func:`explorer.trace.trace_modes` returns them. ``index``: the prompt's
    place in the corpus; ``freq``: the token frequencies of the ``*_freq`` columns (``None``: null);
    ``seconds``: the time the traces took."""
    rows = []
    for tr in traces:
        sizes = [s.size for s in tr.strata]
        full_top = tr.full.top[0]
        has_random = all("random" in s.outputs for s in tr.strata)
        base = {
            "prompt_id": prompt.id,
            "prompt_index": index,
            "text": prompt.text,
            "gold": prompt.gold,
            "category": prompt.category,
            "mode": tr.settings.mode,
            "n_tokens": len(tr.tokens),
            "n_edges": tr.n_edges,
            "density": tr.density_of("trace", "log"),
            "density_linear": tr.density_of("trace", "linear"),
            "density_random": tr.density_of("random", "log") if has_random else None,
            "entropy": tr.full.entropy,
            "full_top1_id": full_top.id,
            "full_top1_token": full_top.token,
            "full_top1_prob": full_top.prob,
            "full_top1_freq": float(freq.per_million([full_top.id])[0]) if freq else None,
            "full_gold_ce": _opt(tr.full.gold_ce),
            **{f"recovery_{k}": _opt(tr.recovery.get(k)) for k in RECOVERY_LEVELS},
            "seconds": seconds,
        }
        top1_freq = freq.per_million([s.trace.top[0].id for s in tr.strata]) if freq else [None] * len(sizes)
        for s, f in zip(tr.strata, top1_freq):
            out, inv, rnd = s.trace, s.outputs.get("inverse"), s.outputs.get("random")
            rows.append(
                {
                    **base,
                    "size": s.size,
                    "stratum_edges": s.n_edges,
                    "tv": out.tv,
                    "shared_nucleus": out.shared_nucleus,
                    "stratum_entropy": out.entropy,
                    "top1_id": out.top[0].id,
                    "top1_token": out.top[0].token,
                    "top1_freq": _opt(f),
                    "top_ids": [t.id for t in out.top],
                    "top_tokens": [t.token for t in out.top],
                    "top_probs": [t.prob for t in out.top],
                    "gold_ce": _opt(out.gold_ce),
                    "tv_inverse": inv.tv if inv else None,
                    "tv_random": rnd.tv if rnd else None,
                    "nucleus_inverse": inv.shared_nucleus if inv else None,
                    "nucleus_random": rnd.shared_nucleus if rnd else None,
                    "attention_edges": s.kinds["attention"],
                    "mlp_edges": s.kinds["mlp"],
                    "residual_edges": s.kinds["residual"],
                }
            )
    return rows


def trace_rows(
    lm: LoadedModel, prompt: Prompt, index: int, settings: Settings, modes: tuple[str, ...], freq: Frequencies | None
) -> list[dict]:
    """Trace ``prompt`` on ``lm`` in every mode of ``modes`` and return its :func:`prompt_rows` (whose
    ``seconds`` column is the time the traces took). Raises what :func:`explorer.trace.trace_modes`
    raises (:class:`~explorer.errors.BadPrompt` for a prompt the model cannot take: too short, or longer
    than the smaller of ``settings.max_tokens`` and the model's context,
    :func:`explorer.models.loading.effective_max_tokens`)."""
    t0 = time.perf_counter()
    traces = trace_modes(lm, prompt.text, settings, check_modes(modes), gold=prompt.gold)
    return prompt_rows(traces, prompt, index, freq, time.perf_counter() - t0)


def position_rows(
    texts: list[TextTrace],
    prompt: Prompt,
    index: int,
    freq: Frequencies | None,
    seconds: list[float],
    edges: Callable[[int], int],
) -> list[dict]:
    """Rows (one per mode and traced position, every column of
    :data:`explorer.corpus.schema.POSITIONS_SCHEMA`) of one text traced at every position, one
    :class:`~explorer.results.TextTrace` per mode (``seconds``: the time of each). A position's row is its
    :class:`~explorer.results.PositionSummary`, with ``n_context = position + 1``, its graph's edges
    (``edges(n_context)``) and the sizes evaluated there, and the next token's id and frequency per million
    in ``freq`` (``None``: null)."""
    rows = []
    for text, took in zip(texts, seconds):
        n_edges = {p.position: edges(p.position + 1) for p in text.positions}
        ids = text.token_ids
        next_ids = [ids[p.position + 1] if p.position + 1 < len(ids) else None for p in text.positions]
        known = [i for i in next_ids if i is not None]
        per_million = iter(freq.per_million(known).tolist() if freq and known else [])
        for p, nxt in zip(text.positions, next_ids):
            rows.append(
                {
                    "prompt_id": prompt.id,
                    "prompt_index": index,
                    "text": prompt.text,
                    "gold": prompt.gold,
                    "category": prompt.category,
                    "mode": text.settings.mode,
                    "n_tokens": len(ids),
                    "position": p.position,
                    "n_context": p.position + 1,
                    "n_edges": n_edges[p.position],
                    "n_sizes": len(strata_edges(text.settings.sizes, n_edges[p.position])),
                    "token": p.token,
                    "next_token": p.next_token,
                    "next_token_id": nxt,
                    "next_token_prob": _opt(p.next_token_prob),
                    "next_token_rank": p.next_token_rank,
                    "next_token_freq": next(per_million) if freq and nxt is not None else None,
                    "entropy": p.entropy,
                    "top1": p.top1,
                    "top1_prob": p.top1_prob,
                    "density": p.density,
                    "density_linear": p.density_linear,
                    **{f"recovery_{k}": _opt(p.recovery.get(k)) for k in RECOVERY_LEVELS},
                    "seconds": took,
                }
            )
    return rows


def trace_position_rows(
    lm: LoadedModel, prompt: Prompt, index: int, settings: Settings, modes: tuple[str, ...], freq: Frequencies | None
) -> list[dict]:
    """Trace every position of ``prompt`` (from 1, :func:`explorer.text.trace_text`) in each mode of
    ``modes`` and return its :func:`position_rows`. Raises what ``trace_text`` raises
    (:class:`~explorer.errors.BadPrompt` for a text the model cannot take)."""
    texts, seconds = [], []
    for mode in check_modes(modes):
        t0 = time.perf_counter()
        texts.append(trace_text(lm, prompt.text, replace(settings, mode=mode), keep_traces=False))
        seconds.append(time.perf_counter() - t0)
    return position_rows(texts, prompt, index, freq, seconds, lambda n: layout_for(lm.adapter, n).n_edges)
