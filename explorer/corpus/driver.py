"""The corpus run loop, written once for every way of tracing prompts.

:func:`drive` does a run's bookkeeping: it loads the model through a :class:`Tracer`, counts the token
frequencies, opens (or checks) the results store (:class:`~explorer.corpus.store.ResultsStore`,
``run.json``), skips the prompts already stored (resume), writes each prompt's rows as soon as it comes
back, records failures in ``failed.jsonl``, compacts the parts at the end and returns a
:class:`RunSummary`.

A :class:`Tracer` is the way the prompts are traced: :class:`explorer.corpus.local.LocalTracer` (the model
in this process, optionally several prompts in flight on threads) or
:class:`explorer.corpus.ray_tracer.RayTracer` (Ray actors, with retries and actor replacement). A tracer
turns jobs into a stream of :data:`Event`: a prompt's rows (:class:`Traced`), a prompt that failed for good
(:class:`Failed`), or a message for the progress callback (:class:`Notice`). The rows themselves are
built by :func:`explorer.corpus.rows.prompt_rows`, wherever the prompt was traced; a tracer whose
``all_positions`` is set traces every position of each text instead (:func:`explorer.corpus.rows.position_rows`,
one row per position and mode), and the run records it in ``run.json``.

The folder's write lock (:class:`~explorer.corpus.lock.WriterLock`) is taken before the model loads, so
a second writer is refused at once, and held until the run ends. A prompt that fails is recorded with its
reason and the run goes on; the token cap is the smaller of ``max_tokens`` and the model's context
(:mod:`explorer.corpus.context`), said once at the start.

Which tracer a run uses, and the model and source it reads, is decided by
:func:`explorer.corpus.start.start_corpus_run`, the entry point of the command line and the Corpus page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from explorer.atomic import atomic_write_text
from explorer.corpus.frequency import FILE as FREQUENCY_FILE
from explorer.corpus.frequency import Frequencies, count_tokens
from explorer.corpus.lock import WriterLock
from explorer.corpus.runinfo import prompts_digest
from explorer.corpus.sources import Corpus, Prompt, Skipped, read_source
from explorer.corpus.store import FAILED_FILE, ResultsStore, RunInfo
from explorer.errors import BadSetting, BadSource, UnsupportedArchitecture
from explorer.results import Settings

if TYPE_CHECKING:
    from explorer.models.loading import LoadedModel, Tokenizer

Progress = Callable[[int, int, str], None]
"""``progress(done, total, message)``: prompts finished (stored before, traced or failed) out of the
corpus, and what just happened (``"starting"``, ``"resuming"``, a prompt id, ``"failed ID: reason"``,
``"worker ..."``, ``"token cap: ..."``, ``"results: ..."`` (what the store found and repaired), or what
the run is loading)."""


@dataclass(frozen=True)
class ModelSpec:
    """A model to load, as :func:`explorer.models.loading.load_model` takes it (a Ray actor loads it on
    its node; a local run, in this process)."""

    model_id: str
    device: str = "auto"
    dtype: str = "auto"
    revision: str | None = None
    trust_remote_code: bool = False

    def load(self) -> LoadedModel:
        from explorer.models.loading import load_model

        return load_model(
            self.model_id,
            device=self.device,
            dtype=self.dtype,
            revision=self.revision,
            trust_remote_code=self.trust_remote_code,
        )

    def tokenizer(self):
        from explorer.models.loading import load_tokenizer

        return load_tokenizer(self.model_id, self.revision, self.trust_remote_code)


@dataclass(frozen=True)
class ModelInfo:
    """What a run records of the loaded model (``run.json``), its number of output logits (the
    frequency table's size), where it runs (``host``, ``pid``: a Ray actor's), and its context length
    (``None``: its config declares none)."""

    model_id: str
    revision: str | None
    dtype: str  # "float32", ...
    device: str  # "cpu", "cuda:0", ...
    n_outputs: int
    host: str = ""
    pid: int = 0
    context: int | None = None

    @classmethod
    def of(cls, lm: LoadedModel, host: str = "", pid: int = 0) -> ModelInfo:
        from explorer.models.limits import model_context

        return cls(
            lm.model_id,
            lm.revision,
            str(lm.dtype).removeprefix("torch."),
            str(lm.device),
            n_outputs(lm),
            host,
            pid,
            model_context(lm),
        )


def n_outputs(lm: LoadedModel) -> int:
    """The number of output logits of ``lm`` (its output embeddings' rows)."""
    head = lm.model.get_output_embeddings()
    if head is None:  # transformers' answer for a model without an LM head; a causal LM always has one
        raise UnsupportedArchitecture(f"{lm.model_id} has no output embeddings")
    return int(head.weight.shape[0])


@dataclass(frozen=True)
class Job:
    """A prompt to trace, and its place in the corpus (the rows' ``prompt_index``)."""

    index: int
    prompt: Prompt


@dataclass(frozen=True)
class Traced:
    """A job done: its rows (:func:`explorer.corpus.rows.prompt_rows`)."""

    job: Job
    rows: list[dict]


@dataclass(frozen=True)
class Failed:
    """A job given up, with the reason (it gets no rows; a rerun retries it)."""

    job: Job
    reason: str


@dataclass(frozen=True)
class Notice:
    """A message for the progress callback (a worker died, was restarted, was given up)."""

    message: str


Event = Traced | Failed | Notice
"""What a :class:`Tracer` yields."""


class Tracer(Protocol):
    """A way of tracing a run's prompts. :func:`drive` calls :meth:`tokenizer` (only when it counts token
    frequencies), then :meth:`load`, then :meth:`trace` once, and :meth:`close` at the end, also on
    error."""

    settings: Settings
    modes: tuple[str, ...]
    all_positions: bool
    """Whether each prompt's rows are one per position and mode (every position of the text traced)."""

    @property
    def workers(self) -> int:
        """Prompts traced at once: threads of a local run, actors started at first by a Ray run."""
        ...

    @property
    def deaths(self) -> int:
        """Workers that died during the run (a local run's never do)."""
        ...

    def tokenizer(self) -> Tokenizer:
        """The model's tokenizer, for counting token frequencies (before :meth:`load`)."""
        ...

    def load(self, notify: Callable[[str], None]) -> ModelInfo:
        """Make the model ready (load it, or start actors and wait for the first to load it); ``notify``
        takes progress messages meanwhile."""
        ...

    def trace(self, jobs: list[Job], frequencies: Frequencies | None) -> Generator[Event, None, None]:
        """Trace ``jobs``, yielding one :class:`Traced` or :class:`Failed` per job (in any order, as they
        finish) and any :class:`Notice`; the rows' ``*_freq`` columns use ``frequencies``. Closing the
        generator early stops the work."""
        ...

    def close(self) -> None:
        """Release what :meth:`load` started (idempotent)."""
        ...


@dataclass
class RunSummary:
    """What a run did: prompts traced now, found already stored, and failed (id, reason); the source's
    skipped rows; the seconds of the whole call, of tracing once the model was loaded, and of the driver's
    own work within it (storing each prompt's rows, reporting, the final compaction); the workers
    (threads, or Ray actors started at first) and how many died; the token cap and which limit it is;
    ``kept_old``: an ``overwrite`` that stored no prompt, so the run already in the folder is kept (and
    its ``failed.jsonl``: this run's failures are only in :attr:`failed`); what the store repaired."""

    folder: Path
    traced: int = 0
    already: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    source_skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    workers: int = 1
    deaths: int = 0
    trace_seconds: float = 0.0
    driver_seconds: float = 0.0
    token_cap: int = 0
    token_cap_by: str = ""
    kept_old: bool = False
    notices: list[str] = field(default_factory=list)


def token_cap(max_tokens: int, context: int | None) -> tuple[int, str]:
    """The token cap of a run and which limit it is: the smaller of ``max_tokens`` and the model's context
    (as :func:`explorer.models.loading.effective_max_tokens` decides it, here from a :class:`ModelInfo`, as
    the model may be on Ray actors)."""
    ctx = f"the model's context is {context}" if context is not None else "the model declares no context length"
    if context is not None and context < max_tokens:
        return context, f"the model's context; the configured limit is {max_tokens}"
    return max_tokens, f"the configured limit; {ctx}"


def check_all_positions(settings: Settings, all_positions: bool) -> None:
    """An all-positions run stores each position's summary, which holds no control: refuse to trace them."""
    if all_positions and settings.controls:
        raise BadSetting(
            "an all-positions run stores no control (each position's summary holds none): trace it "
            "without controls (--no-controls is the default with --all-positions)"
        )


def run_info(
    model: ModelInfo,
    corpus: Corpus,
    settings: Settings,
    modes,
    window: int | None = None,
    column: str = "text",
    limit: int | None = None,
    frequencies: Frequencies | None = None,
    all_positions: bool = False,
) -> RunInfo:
    """The :class:`RunInfo` of a run of ``corpus`` on ``model`` with ``frequencies``: its identity (the
    batch size included: it changes the numbers in the 6th digit; whether every position is traced) and
    the content hash of the prompts used (how many workers ran it is not part)."""
    s = asdict(settings)
    s["sizes"] = list(settings.sizes)
    for k in ("mode", "compare_modes"):  # the modes are listed apart
        s.pop(k)
    path = Path(corpus.source).expanduser()
    ids = [p.id for p in corpus.prompts]
    return RunInfo(
        model_id=model.model_id,
        revision=model.revision,
        dtype=model.dtype,
        source=corpus.source,
        window=window,
        column=column,
        modes=list(modes),
        settings=s,
        device=model.device,
        limit=limit,
        source_path=str(path.resolve()) if path.is_file() else None,
        source_prompts=len(ids),
        source_sha256=prompts_digest(ids),
        frequencies=frequencies.label() if frequencies else None,
        all_positions=all_positions,
    )


def source_frequencies(tokenizer, n_outputs: int, model_id: str, spec: str, column: str = "text") -> Frequencies:
    """Unigram counts of the whole source ``spec`` (no window, no limit) under ``tokenizer``, over
    ``max(len(tokenizer), n_outputs)`` ids; or, when ``spec`` is a saved ``frequency.parquet`` (or a
    results folder holding one) of the same model, those counts."""
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
        lines.append(
            json.dumps(
                {"prompt_id": pid, "prompt_index": i, "text": p.text if p else None, "reason": reason},
                ensure_ascii=False,
            )
        )
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def drive(
    tracer: Tracer,
    corpus: Corpus,
    folder: Path | str,
    frequencies: Frequencies | str | None = None,
    freq_column: str = "text",
    overwrite: bool = False,
    window: int | None = None,
    column: str = "text",
    limit: int | None = None,
    progress: Progress | None = None,
) -> RunSummary:
    """Trace every prompt of ``corpus`` not yet in ``folder`` with ``tracer`` and store its rows there.

    ``frequencies``: token counts for the ``*_freq`` columns, or the source (or saved
    ``frequency.parquet``) to count them from with the model's tokenizer (its ``freq_column``), or
    ``None``. ``window``, ``column``, ``limit``: how ``corpus`` was read, recorded in ``run.json``. A
    folder holding a run with other model, source (content), settings or frequencies is refused unless
    ``overwrite`` (the old run is kept until this one stores its first prompt); one that another run is
    writing is refused. ``progress``: see :data:`Progress`. The tracer is closed and the folder's lock
    given back on return, also on error.
    """
    start = time.perf_counter()
    total = len(corpus.prompts)
    report = progress or (lambda done, total, message: None)
    summary = RunSummary(Path(folder), source_skipped=list(corpus.skipped))
    lock = WriterLock(folder)

    def notify(message: str) -> None:
        summary.notices.append(message)
        report(done(), total, message)

    def done() -> int:
        return summary.already + summary.traced + len(summary.failed)

    try:
        lock.acquire()  # before the model loads: a second writer is refused at once
        tokenizer = tracer.tokenizer() if isinstance(frequencies, str) else None
        info = tracer.load(lambda message: report(0, total, message))
        if isinstance(frequencies, str):
            report(0, total, f"counting token frequencies in {frequencies}")
            frequencies = source_frequencies(tokenizer, info.n_outputs, info.model_id, frequencies, freq_column)
        summary.token_cap, summary.token_cap_by = token_cap(tracer.settings.max_tokens, info.context)
        run = run_info(
            info, corpus, tracer.settings, tracer.modes, window, column, limit, frequencies, tracer.all_positions
        )
        run.notes["token_cap"] = f"{summary.token_cap} ({summary.token_cap_by})"
        store = ResultsStore(folder, run, overwrite, lock=lock, prompts=corpus.prompts)
        for message in store.notices:
            notify(message)
        store.notices.clear()
        report(0, total, f"token cap: {summary.token_cap} tokens ({summary.token_cap_by})")
        if frequencies is not None:
            store.save_frequencies(frequencies)
        stored = store.done_ids()
        jobs = [Job(i, p) for i, p in enumerate(corpus.prompts) if p.id not in stored]
        summary.already = total - len(jobs)
        report(summary.already, total, "resuming" if summary.already else "starting")
        traced_from = time.perf_counter()
        written: set[str] = set()
        busy = 0.0  # the driver's own work on the results (storing rows, reporting, compaction)
        with closing(tracer.trace(jobs, frequencies)) as events:
            for event in events:
                event_from = time.perf_counter()
                if isinstance(event, Notice):
                    report(done(), total, event.message)
                elif isinstance(event, Failed):
                    summary.failed.append((event.job.prompt.id, event.reason))
                    report(done(), total, f"failed {event.job.prompt.id}: {event.reason}")
                elif event.job.prompt.id not in written:  # never twice, whatever the workers did
                    written.add(event.job.prompt.id)
                    store.append(event.rows)
                    summary.traced += 1
                    for message in store.notices:
                        notify(message)
                    store.notices.clear()
                    report(done(), total, event.job.prompt.id)
                busy += time.perf_counter() - event_from
        compact_from = time.perf_counter()
        store.compact()
        summary.driver_seconds = busy + time.perf_counter() - compact_from
        summary.trace_seconds = time.perf_counter() - traced_from
        summary.workers, summary.deaths = tracer.workers, tracer.deaths
        if store.pending:
            summary.kept_old = True
            notify(f"results: no prompt was stored, so the run already in {folder} is kept")
        else:
            write_failed(folder, summary.failed, corpus)
    finally:
        try:
            tracer.close()
        finally:
            lock.release()
    summary.seconds = time.perf_counter() - start
    return summary
