"""A corpus run: s-Trace of every prompt of a corpus in every requested ablation mode, each prompt's rows
written to the results store as soon as it is done, so that an interrupted run resumes where it stopped.

:func:`prompt_rows` turns one prompt's traces into rows; :func:`run_corpus` is the local loop over a
corpus (a sharded run, :mod:`explorer.corpus.distributed`, calls :func:`prompt_rows` on its workers and
writes through the same store).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path

import torch

from explorer.corpus.frequency import FILE as FREQUENCY_FILE
from explorer.corpus.frequency import Frequencies, count_tokens
from explorer.corpus.sources import Corpus, Prompt, Skipped, read_source
from explorer.corpus.store import ResultsStore, RunInfo, _atomic_text
from explorer.errors import BadPrompt, BadSetting, BadSource, OutOfMemory
from explorer.intervene import MODES
from explorer.models.loading import LoadedModel
from explorer.trace import Settings, Trace, trace_modes

RECOVERY_KS = (1, 10, 50, 90)
FAILED_FILE = "failed.jsonl"


@dataclass
class RunSummary:
    """What a call of :func:`run_corpus` did: prompts traced now, found already stored, and failed."""

    folder: Path
    traced: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    source_skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0


def run_info(lm: LoadedModel, corpus: Corpus, settings: Settings, modes, window: int | None = None,
             column: str = "text", limit: int | None = None) -> RunInfo:
    """The :class:`RunInfo` of a run of ``corpus`` on ``lm``."""
    s = asdict(settings)
    s["sizes"] = list(settings.sizes)
    for k in ("mode", "compare_modes", "batch_size"):  # the modes are listed apart; batching changes nothing
        s.pop(k)
    return RunInfo(model_id=lm.model_id, revision=lm.revision, dtype=str(lm.dtype).removeprefix("torch."),
                   source=corpus.source, window=window, column=column, modes=list(modes), settings=s,
                   device=str(lm.device), limit=limit)


def _opt(x):
    return None if x is None else float(x)


def prompt_rows(traces: list[Trace], prompt: Prompt, index: int, freq: Frequencies | None,
                seconds: float) -> list[dict]:
    """Rows (one per mode and size, every column of :data:`explorer.corpus.store.SCHEMA`) of one prompt's
    traces, one trace per mode as :func:`explorer.trace.trace_modes` returns them."""
    rows = []
    for tr in traces:
        sizes = [s.size for s in tr.strata]
        full_top = tr.full.top[0]
        has_random = all("random" in s.outputs for s in tr.strata)
        base = {
            "prompt_id": prompt.id, "prompt_index": index, "text": prompt.text, "gold": prompt.gold,
            "category": prompt.category, "mode": tr.settings.mode, "n_tokens": len(tr.tokens),
            "n_edges": tr.n_edges, "density": tr.density_of("trace", "log"),
            "density_linear": tr.density_of("trace", "linear"),
            "density_random": tr.density_of("random", "log") if has_random else None,
            "entropy": tr.full.entropy, "full_top1_id": full_top.id, "full_top1_token": full_top.token,
            "full_top1_prob": full_top.prob,
            "full_top1_freq": float(freq.per_million([full_top.id])[0]) if freq else None,
            "full_gold_ce": _opt(tr.full.gold_ce),
            **{f"recovery_{k}": _opt(tr.recovery.get(k)) for k in RECOVERY_KS},
            "seconds": seconds,
        }
        top1_freq = freq.per_million([s.trace.top[0].id for s in tr.strata]) if freq else [None] * len(sizes)
        for s, f in zip(tr.strata, top1_freq):
            out, inv, rnd = s.trace, s.outputs.get("inverse"), s.outputs.get("random")
            rows.append({
                **base,
                "size": s.size, "stratum_edges": s.n_edges, "tv": out.tv, "shared_nucleus": out.shared_nucleus,
                "stratum_entropy": out.entropy, "top1_id": out.top[0].id, "top1_token": out.top[0].token,
                "top1_freq": _opt(f), "top_ids": [t.id for t in out.top], "top_tokens": [t.token for t in out.top],
                "top_probs": [t.prob for t in out.top], "gold_ce": _opt(out.gold_ce),
                "tv_inverse": inv.tv if inv else None, "tv_random": rnd.tv if rnd else None,
                "nucleus_inverse": inv.shared_nucleus if inv else None,
                "nucleus_random": rnd.shared_nucleus if rnd else None,
                "attention_edges": s.kinds["attention"], "mlp_edges": s.kinds["mlp"],
                "residual_edges": s.kinds["residual"],
            })
    return rows


def corpus_frequencies(lm: LoadedModel, spec: str, column: str = "text") -> Frequencies:
    """Unigram counts of the whole source ``spec`` (no window, no limit) under the model's tokenizer; or,
    when ``spec`` is a saved ``frequency.parquet`` (or a results folder holding one) of the same model,
    those counts."""
    n_outputs = lm.model.get_output_embeddings().weight.shape[0]
    return source_frequencies(lm.tokenizer, n_outputs, lm.model_id, spec, column)


def source_frequencies(tokenizer, n_outputs: int, model_id: str, spec: str, column: str = "text") -> Frequencies:
    """:func:`corpus_frequencies` from the model's tokenizer, its number of output logits and its id alone
    (a sharded run's driver holds no copy of the model)."""
    saved = Path(spec).expanduser()
    if saved.name == FREQUENCY_FILE or (saved.is_dir() and (saved / FREQUENCY_FILE).exists()):
        freq = Frequencies.load(saved.parent if saved.name == FREQUENCY_FILE else saved)
        if freq is None:
            raise BadSource(f"no frequency table at {saved}")
        if freq.tokenizer != model_id:
            raise BadSource(f"{saved} counts {freq.tokenizer}'s tokens, not {model_id}'s")
        return freq
    texts = (p.text for p in read_source(spec, column=column).prompts)
    vocab = max(len(tokenizer), n_outputs)
    return count_tokens(tokenizer, texts, vocab, spec, model_id)


def write_failed(folder: Path | str, failed: list[tuple[str, str]], corpus: Corpus) -> Path | None:
    """Rewrite ``failed.jsonl`` in ``folder`` atomically: one line per prompt that failed in this run (id,
    index, text, reason); remove it when none did. A rerun retries them, as they have no rows."""
    path = Path(folder) / FAILED_FILE
    if not failed:
        path.unlink(missing_ok=True)
        return None
    where = {p.id: (i, p) for i, p in enumerate(corpus.prompts)}
    lines = []
    for pid, reason in failed:
        i, p = where.get(pid, (None, None))
        lines.append(json.dumps({"prompt_id": pid, "prompt_index": i, "text": p.text if p else None,
                                 "reason": reason}, ensure_ascii=False))
    _atomic_text(path, "\n".join(lines) + "\n")
    return path


def run_corpus(lm: LoadedModel, corpus: Corpus, folder: Path | str, settings: Settings,
               modes: tuple[str, ...] = MODES, frequencies: Frequencies | None = None, overwrite: bool = False,
               window: int | None = None, column: str = "text", limit: int | None = None,
               progress=None, workers: int = 1) -> RunSummary:
    """Trace every prompt of ``corpus`` not yet in ``folder`` and append its rows there.

    ``progress``: optional callable ``(done, total, message)`` called after each prompt. A prompt the
    model cannot take (too long, too short, out of memory) is reported in :attr:`RunSummary.failed`
    and in ``failed.jsonl`` (:func:`write_failed`), and skipped. ``workers``: prompts traced at once
    by threads sharing the model; its lock serialises the device work, so with 2 one prompt's host-side
    search overlaps another's masked passes (a GPU's gain; the rows are the same).
    """
    if workers < 1:
        raise BadSetting("workers must be at least 1")
    start = time.perf_counter()
    store = ResultsStore(folder, run_info(lm, corpus, settings, modes, window, column, limit), overwrite)
    if frequencies is not None:
        store.save_frequencies(frequencies)
    summary = RunSummary(Path(folder), source_skipped=list(corpus.skipped))
    stored = store.done_ids()
    todo = [(i, p) for i, p in enumerate(corpus.prompts) if p.id not in stored]
    summary.already = len(corpus.prompts) - len(todo)
    report = progress or (lambda done, total, message: None)
    report(summary.already, len(corpus.prompts), "resuming" if summary.already else "starting")

    def trace_one(i: int, prompt: Prompt):
        t0 = time.perf_counter()
        try:
            return i, prompt, trace_modes(lm, prompt.text, settings, tuple(modes), gold=prompt.gold), None, \
                time.perf_counter() - t0
        except (BadPrompt, OutOfMemory) as exc:  # this prompt cannot be traced here; the others may
            if lm.device.type == "cuda":
                torch.cuda.empty_cache()
            return i, prompt, None, str(exc), 0.0

    def keep(result) -> None:
        i, prompt, traces, error, seconds = result
        done = summary.already + summary.traced + len(summary.failed) + 1
        if error is not None:
            summary.failed.append((prompt.id, error))
            report(done, len(corpus.prompts), f"skipped {prompt.id}: {error}")
            return
        store.append(prompt_rows(traces, prompt, i, frequencies, seconds))
        summary.traced += 1
        report(done, len(corpus.prompts), prompt.id)

    if workers == 1:
        for i, prompt in todo:
            keep(trace_one(i, prompt))
    else:
        queue = iter(todo)
        with ThreadPoolExecutor(workers) as pool:
            pending = {pool.submit(trace_one, *job) for job in islice(queue, 2 * workers)}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    keep(future.result())
                    pending |= {pool.submit(trace_one, *job) for job in islice(queue, 1)}
    store.compact()
    write_failed(folder, summary.failed, corpus)
    summary.seconds = time.perf_counter() - start
    return summary
