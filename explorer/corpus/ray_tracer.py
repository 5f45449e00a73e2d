"""Tracing a corpus run's prompts on Ray actors: :class:`RayTracer`, the :class:`~explorer.corpus.driver.Tracer`
of a sharded run, its actor :class:`PromptActor`, and :func:`run_corpus_ray` (the run of a model spec on
Ray, for notebooks and tests). The results are a local run's: the same store, ``run.json`` and rows.

One actor per GPU (``num_gpus=1``; or per CPU share when the cluster has no GPU:
:func:`explorer.corpus.cluster.plan`), each of which loads the model once. Prompts are assigned
dynamically: each actor has at most ``in_flight`` prompts queued, and an actor that returns a prompt gets
the next one, so fast and slow actors balance. The rows are built on the actors
(:func:`explorer.corpus.rows.trace_rows`); the driver (:func:`explorer.corpus.driver.drive`) is the only
writer.

Failures: when an actor dies (killed process, out of memory, lost node), the prompt it was tracing is
charged one attempt and every prompt it held goes back to the front of the queue, for another actor; the
dead actor is replaced. A prompt charged more than ``max_retries`` times, or that raised an error that many
times, fails with the reason; a prompt the model cannot take (too long, too short) fails at once. An actor
slot whose model load fails more than ``max_retries`` times in a row is given up; when none is left, the
remaining prompts fail with the reason.
"""

from __future__ import annotations

import os
import signal
import socket
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from explorer.corpus.cluster import ActorPlan, RayOptions, actor_fault, connect, fault_kills, plan
from explorer.corpus.driver import Event, Failed, Job, ModelInfo, ModelSpec, Notice, Progress, RunSummary, Traced, drive
from explorer.corpus.frequency import Frequencies
from explorer.corpus.sources import Corpus, Prompt
from explorer.errors import BadPrompt, BadSetting, ExplorerError
from explorer.models.loading import EMBEDDED, LoadedModel, model_source
from explorer.options import MODES
from explorer.results import Settings

ActorHandle = Any
"""A :class:`PromptActor` started by ``ray.remote(PromptActor).remote(...)``, called as
``handle.trace.remote(...)``: Ray's types cannot describe the remote methods of a class wrapped at run
time, hence ``Any``."""

Outcome = tuple[Literal["done"], list[dict]] | tuple[Literal["bad", "error"], str]
"""What :meth:`PromptActor.trace` returns for a prompt."""


class PromptActor:
    """The actor: loads the model once, then traces one prompt per call (wrapped by ``ray.remote``)."""

    def __init__(
        self, model: ModelSpec, settings: Settings, modes: tuple[str, ...], threads: int, fault: str | None = None
    ):
        import torch

        torch.set_num_threads(max(1, threads))
        self.settings, self.modes, self.fault, self.n_done = settings, modes, fault, 0
        self.lm: LoadedModel | None = None
        self.error: ExplorerError | None = None
        try:
            self.lm = model.load()
        except ExplorerError as exc:  # reported by info(): the driver raises it as the run's error
            self.error = exc

    def info(self) -> ModelInfo | ExplorerError:
        if self.error is not None:
            return self.error
        assert self.lm is not None  # the constructor either loaded the model or kept the error
        return ModelInfo.of(self.lm, socket.gethostname(), os.getpid())

    def trace(self, index: int, prompt: Prompt, freq: Frequencies | None) -> Outcome:
        """``("done", rows)``, ``("bad", reason)`` (the model cannot take the prompt) or ``("error", reason)``."""
        from explorer.corpus.rows import trace_rows

        if fault_kills(self.fault, self.n_done, prompt.text):
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            assert self.lm is not None  # prompts go only to an actor whose info() reported the model
            rows = trace_rows(self.lm, prompt, index, self.settings, self.modes, freq)
        except BadPrompt as exc:
            return "bad", str(exc)
        except Exception as exc:
            return "error", f"{type(exc).__name__}: {exc}"
        self.n_done += 1
        return "done", rows


@dataclass
class _Item:
    job: Job
    attempts: int = 0


@dataclass
class _Slot:
    """One actor's place: the actor now in it, whether it has loaded, and the prompts queued on it."""

    number: int
    actor: ActorHandle | None = None
    ready: bool = False
    generation: int = 0
    load_failures: int = 0
    running: deque = field(default_factory=deque)  # (ref, item) in submission order


def _reason(exc: Exception) -> str:
    """One line for a Ray error: its class and the first line of its message."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:300]


class RayTracer:
    """Traces prompts on Ray actors (see the module's docstring). :meth:`load` connects to Ray and starts
    the actors; :meth:`close` kills them, and shuts Ray down if :meth:`load` started it."""

    all_positions = False  # every position of each text: local runs only (CorpusRequest refuses it on Ray)

    def __init__(
        self, model: ModelSpec, settings: Settings, modes: tuple[str, ...] = MODES, options: RayOptions | None = None
    ):
        self.model, self.settings, self.modes = model, settings, tuple(modes)
        self.opts = options or RayOptions()
        self._ray, self.started = None, False  # the ray module once load() has connected (see ray)
        self.plan: ActorPlan | None = None  # set by load(), with the actors' model spec and class
        self.spec: ModelSpec | None = None
        self.actor_cls = None
        self.slots: list[_Slot] = []
        self.waiting: dict = {}  # ref -> (slot, item or None for a load)
        self.pending: deque[_Item] = deque()
        self.events: deque[Event] = deque()
        self._deaths = 0
        self.last_reason = "no worker started"
        self.freq_ref = None

    @property
    def ray(self):
        """The ``ray`` module, connected by :meth:`load`."""
        if self._ray is None:
            raise RuntimeError("RayTracer.load() has not connected to Ray yet")
        return self._ray

    @property
    def workers(self) -> int:
        return len(self.slots)

    @property
    def deaths(self) -> int:
        return self._deaths

    def tokenizer(self):
        return self.model.tokenizer()

    # the driver's calls -----------------------------------------------------------------------------

    def load(self, notify: Callable[[str], None]) -> ModelInfo:
        """Start the actors and wait until one has loaded the model (or raise why none could)."""
        if self.model.model_id in EMBEDDED:  # converted once, here, not by several actors at once
            model_source(self.model.model_id)
        self._ray, self.started = connect(self.opts.address)
        self.plan = plan(self.ray, self.model.device, self.opts.workers)
        self.spec = replace(self.model, device=self.plan.device)
        self.actor_cls = self.ray.remote(PromptActor)
        self.slots = [_Slot(i) for i in range(self.plan.n)]
        for slot in self.slots:
            self._start(slot)
        notify(f"loading the model on {len(self.slots)} Ray workers")
        while self.waiting:
            info = self._step(first=True)
            while self.events:
                notice = self.events.popleft()
                assert isinstance(notice, Notice)  # only notices before any prompt is sent
                notify(notice.message)
            if info is not None:
                return info
        raise BadSetting(f"no Ray worker could load {self.model.model_id}: {self.last_reason}")

    def trace(self, jobs: list[Job], frequencies: Frequencies | None) -> Generator[Event, None, None]:
        """Trace every job; fail the rest when no actor is left."""
        self.pending.extend(_Item(job) for job in jobs)
        self.freq_ref = self.ray.put(frequencies) if frequencies is not None else None
        while self.pending or any(s.running for s in self.slots):
            self._fill()
            if not self.waiting:
                while self.pending:
                    self._fail(self.pending.popleft(), f"no Ray worker left ({self.last_reason})")
                break
            self._step()
            while self.events:
                yield self.events.popleft()
        while self.events:
            yield self.events.popleft()

    def close(self) -> None:
        for slot in self.slots:
            if slot.actor is not None:
                self.ray.kill(slot.actor)
                slot.actor = None
        if self.started:
            self.ray.shutdown()
            self.started = False

    # actors -----------------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        assert self.plan is not None and self.actor_cls is not None  # load() sets them before any actor starts
        fault = actor_fault(self.opts.fault, slot.number, slot.generation)
        actor: ActorHandle = self.actor_cls.options(**self.plan.resources).remote(
            self.spec, self.settings, self.modes, self.plan.threads, fault
        )
        slot.actor = actor
        slot.ready = False
        slot.generation += 1
        self.waiting[actor.info.remote()] = (slot, None)

    def _retire(self, slot: _Slot, reason: str, loaded: bool) -> None:
        """``slot``'s actor is dead (or unusable): kill it, requeue its prompts, start another or give up.
        The oldest prompt without a result is charged the death. An actor that dies right after finishing a
        prompt can take that prompt's reply with it; that prompt is then the one charged (and traced again),
        and the one it died on is sent again uncharged: with ``in_flight=1`` the charge is always exact."""
        self._deaths += 1
        self.last_reason = reason
        self.ray.kill(slot.actor)
        charged = False
        requeue = []
        for ref, item in slot.running:
            self.waiting.pop(ref, None)
            outcome = self._finished(ref) if loaded else None
            if outcome is not None:
                self._handle(item, outcome)
                continue
            if not charged:  # the oldest unfinished prompt is the one the actor was tracing
                item.attempts += 1
                charged = True
            if item.attempts > self.opts.max_retries:
                self._fail(item, f"its worker died {item.attempts} times; last: {reason}")
            else:
                requeue.append(item)
        slot.running.clear()
        self.pending.extendleft(reversed(requeue))
        slot.load_failures = 0 if loaded else slot.load_failures + 1
        slot.actor = None
        if slot.load_failures > self.opts.max_retries:
            self.events.append(Notice(f"worker {slot.number} given up: {reason}"))
            return
        self.events.append(Notice(f"worker {slot.number} died ({reason}); restarting it"))
        self._start(slot)

    def _finished(self, ref):
        """The outcome of a task of a killed actor that finished, or ``None`` if it did not finish. Every
        task of a killed actor resolves at once (a result, or the actor's death), so waiting a little does
        not stall: it lets a result still on its way count as finished, not charge its prompt a death."""
        ready, _ = self.ray.wait([ref], timeout=10)
        if not ready:
            return None
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError:
            return None

    # prompts ----------------------------------------------------------------------------------------

    def _fail(self, item: _Item, reason: str) -> None:
        self.events.append(Failed(item.job, reason))

    def _handle(self, item: _Item, outcome: Outcome) -> None:
        if outcome[0] == "done":
            self.events.append(Traced(item.job, outcome[1]))
        elif outcome[0] == "bad":
            self._fail(item, outcome[1])
        else:
            item.attempts += 1
            if item.attempts > self.opts.max_retries:
                self._fail(item, f"failed {item.attempts} times; last: {outcome[1]}")
            else:
                self.pending.appendleft(item)

    def _fill(self) -> None:
        for slot in self.slots:
            while slot.ready and slot.actor is not None and self.pending and len(slot.running) < self.opts.in_flight:
                item = self.pending.popleft()
                ref = slot.actor.trace.remote(item.job.index, item.job.prompt, self.freq_ref)
                slot.running.append((ref, item))
                self.waiting[ref] = (slot, item)

    def _step(self, first: bool = False) -> ModelInfo | None:
        """Wait for one task (a model load or a prompt) and handle it; returns the info of a loaded actor."""
        [ref], _ = self.ray.wait(list(self.waiting), num_returns=1)
        slot, item = self.waiting.pop(ref)
        if item is None:
            try:
                info = self.ray.get(ref)
            except self.ray.exceptions.RayError as exc:
                self._retire(slot, _reason(exc), loaded=False)
                return None
            if isinstance(info, ExplorerError):
                if first:
                    raise info
                self._retire(slot, str(info), loaded=False)
                return None
            slot.ready = True
            return info
        try:
            outcome = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            slot.running.remove((ref, item))
            self._handle(item, ("error", _reason(exc)))
            return None
        except self.ray.exceptions.RayError as exc:  # the actor died: ``ref`` is still in slot.running
            self._retire(slot, _reason(exc), loaded=True)
            return None
        slot.running.remove((ref, item))
        self._handle(item, outcome)
        return None


def run_corpus_ray(
    model: ModelSpec,
    corpus: Corpus,
    folder: Path | str,
    settings: Settings,
    modes: tuple[str, ...] = MODES,
    freq_source: str | None = None,
    freq_column: str = "text",
    overwrite: bool = False,
    window: int | None = None,
    column: str = "text",
    limit: int | None = None,
    progress: Progress | None = None,
    options: RayOptions | None = None,
) -> RunSummary:
    """Trace every prompt of ``corpus`` not yet in ``folder`` on Ray actors that load ``model``: the run
    of :func:`explorer.corpus.driver.drive` with a :class:`RayTracer`. ``freq_source``: the source (or
    saved ``frequency.parquet``) of the token frequencies, counted here with the model's tokenizer
    (``None``: no frequencies)."""
    return drive(
        RayTracer(model, settings, modes, options),
        corpus,
        folder,
        frequencies=freq_source,
        freq_column=freq_column,
        overwrite=overwrite,
        window=window,
        column=column,
        limit=limit,
        progress=progress,
    )
