"""Tracing a corpus run's prompts in this process: :class:`LocalTracer`, the :class:`~explorer.corpus.driver.Tracer`
of a model loaded here, and :func:`run_corpus`, a local run of an already loaded model (notebooks, tests).

With ``workers`` above 1, that many prompts are in flight on threads sharing the model: its lock
serialises the device work, so one prompt's host-side search overlaps another's masked passes (a GPU's
gain; the rows are the same).
"""

from __future__ import annotations

from collections.abc import Generator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from itertools import islice
from pathlib import Path

from explorer.corpus import rows
from explorer.corpus.driver import (
    Event,
    Failed,
    Job,
    ModelInfo,
    Progress,
    RunSummary,
    Traced,
    check_all_positions,
    drive,
    n_outputs,
    source_frequencies,
)
from explorer.corpus.frequency import Frequencies
from explorer.corpus.sources import Corpus
from explorer.errors import BadSetting, ExplorerError
from explorer.models.loading import LoadedModel
from explorer.options import MODES
from explorer.pass_graphs import empty_cache
from explorer.results import Settings


def failure_reason(exc: Exception) -> str:
    """One line for a prompt's failure: an explorer error's own message, else the exception's class and
    message (``IndexError: index out of range in self``)."""
    if isinstance(exc, ExplorerError):
        return str(exc)
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:300]


class LocalTracer:
    """Traces prompts on ``lm`` in this process, ``workers`` at a time (threads sharing the model). A
    prompt that raises anything (too long for the token cap or the model's context, too short, out of
    memory, any other error) fails with the reason and the run goes on; only an interrupt stops it.
    ``all_positions``: trace every position of each text (:func:`explorer.corpus.rows.trace_position_rows`;
    without controls, which its rows do not hold)."""

    def __init__(
        self,
        lm: LoadedModel,
        settings: Settings,
        modes: tuple[str, ...] = MODES,
        workers: int = 1,
        all_positions: bool = False,
    ):
        if workers < 1:
            raise BadSetting("workers must be at least 1")
        check_all_positions(settings, all_positions)
        self.lm, self.settings, self.modes, self._workers = lm, settings, tuple(modes), workers
        self.all_positions = all_positions

    @property
    def workers(self) -> int:
        return self._workers

    @property
    def deaths(self) -> int:
        return 0

    def tokenizer(self):
        return self.lm.tokenizer

    def load(self, notify) -> ModelInfo:
        return ModelInfo.of(self.lm)

    def _one(self, job: Job, freq: Frequencies | None) -> Event:
        try:
            trace = rows.trace_position_rows if self.all_positions else rows.trace_rows
            return Traced(job, trace(self.lm, job.prompt, job.index, self.settings, self.modes, freq))
        except Exception as exc:
            # others may not: recorded in failed.jsonl with the reason. KeyboardInterrupt still stops the run.
            if self.lm.device.type == "cuda":
                empty_cache()
            return Failed(job, failure_reason(exc))

    def trace(self, jobs: list[Job], frequencies: Frequencies | None) -> Generator[Event, None, None]:
        if self._workers == 1:
            for job in jobs:
                yield self._one(job, frequencies)
            return
        queue = iter(jobs)
        with ThreadPoolExecutor(self._workers) as pool:
            pending = {pool.submit(self._one, job, frequencies) for job in islice(queue, 2 * self._workers)}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
                    pending |= {pool.submit(self._one, job, frequencies) for job in islice(queue, 1)}

    def close(self) -> None:
        pass


def corpus_frequencies(lm: LoadedModel, spec: str, column: str = "text") -> Frequencies:
    """:func:`explorer.corpus.driver.source_frequencies` of ``spec`` under ``lm``'s tokenizer."""
    return source_frequencies(lm.tokenizer, n_outputs(lm), lm.model_id, spec, column)


def run_corpus(
    lm: LoadedModel,
    corpus: Corpus,
    folder: Path | str,
    settings: Settings,
    modes: tuple[str, ...] = MODES,
    frequencies: Frequencies | None = None,
    overwrite: bool = False,
    window: int | None = None,
    column: str = "text",
    limit: int | None = None,
    progress: Progress | None = None,
    workers: int = 1,
    all_positions: bool = False,
) -> RunSummary:
    """Trace every prompt of ``corpus`` not yet in ``folder`` on ``lm`` and store its rows there: the
    run of :func:`explorer.corpus.driver.drive` with a :class:`LocalTracer` (see both; ``all_positions``:
    every position of each text, one row per position and mode)."""
    return drive(
        LocalTracer(lm, settings, modes, workers, all_positions),
        corpus,
        folder,
        frequencies=frequencies,
        overwrite=overwrite,
        window=window,
        column=column,
        limit=limit,
        progress=progress,
    )
