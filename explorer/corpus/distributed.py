"""A corpus run sharded over a Ray cluster: the same results as :func:`explorer.corpus.run.run_corpus`,
from many GPUs (or CPU workers) on one or many machines.

The driver (the process that calls :func:`run_corpus_ray`) reads the corpus, opens the same
:class:`~explorer.corpus.store.ResultsStore` as a local run (so ``run.json``, resume and the Parquet
layout are the same) and skips the prompts already stored. It starts one :class:`Tracer` actor per GPU
(``num_gpus=1``; or per CPU worker when the cluster has no GPU), each of which loads the model once.
Prompts are assigned dynamically: each actor has at most ``in_flight`` prompts queued, and an actor that
returns a prompt gets the next one, so fast and slow actors balance. The driver is the only writer: it
appends each prompt's rows to the store as they come back (atomic parts), and compacts at the end.

Failures: when an actor dies (killed process, out of memory, lost node), the prompt it was tracing is
charged one attempt and every prompt it held goes back to the front of the queue, for another actor; the
dead actor is replaced. A prompt charged more than ``max_retries`` times, or that raised an error that
many times, is recorded as failed with the reason; a prompt the model cannot take (too long, too short) is
failed at once. Failed prompts are in :attr:`RaySummary.failed` and in ``failed.jsonl``; they have no rows,
so a rerun retries them. An actor slot whose model load fails more than ``max_retries`` times in a row is
given up; when none is left, the remaining prompts are failed with the reason.

Ray is imported only here, and only when a run starts (``pip install -r requirements-ray.txt``).

Test hook: the environment variable ``STRACE_RAY_FAULT`` (read by the driver) makes actors kill their own
process (SIGKILL, as the kernel's out-of-memory killer would): ``after:N`` kills the first actor when it is
given its (N+1)-th prompt; ``text:S`` kills any actor given a prompt whose text contains ``S``; both may be
given, separated by a comma.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from explorer.corpus.frequency import Frequencies
from explorer.corpus.run import RunSummary, prompt_rows, run_info, source_frequencies, write_failed
from explorer.corpus.sources import Corpus, Prompt
from explorer.corpus.store import ResultsStore
from explorer.errors import BadPrompt, BadSetting, ExplorerError
from explorer.intervene import MODES
from explorer.models.loading import EMBEDDED, load_tokenizer, model_source
from explorer.trace import Settings

RAY_INSTALL = "install the ray extra: pip install -r requirements-ray.txt"
FAULT_ENV = "STRACE_RAY_FAULT"
CPUS_PER_WORKER = 4  # default share of a CPU-only cluster per actor


def import_ray():
    """The ``ray`` module, or a one-line :class:`BadSetting` saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BadSetting(RAY_INSTALL) from exc
    return ray


@dataclass(frozen=True)
class RayOptions:
    """How to shard a run. ``address``: ``"local"`` calls ``ray.init()`` (the cluster named by
    ``RAY_ADDRESS`` or started on this machine by ``ray start``, else a fresh local instance); ``"auto"``
    or ``HOST:PORT`` joins a running cluster. When Ray is already initialised in this process, that
    connection is used. ``workers``: number of actors (default: one per GPU of the cluster, else one per
    :data:`CPUS_PER_WORKER` CPUs). ``in_flight``: prompts queued on each actor at once."""

    address: str = "local"
    workers: int | None = None
    max_retries: int = 2
    in_flight: int = 2
    fault: str | None = field(default_factory=lambda: os.environ.get(FAULT_ENV) or None)  # test hook

    def __post_init__(self):
        if self.workers is not None and self.workers < 1:
            raise BadSetting("--ray-workers must be at least 1")
        if self.max_retries < 0:
            raise BadSetting("--max-retries must be 0 or more")
        if self.in_flight < 1:
            raise BadSetting("in_flight must be at least 1")


@dataclass
class RaySummary(RunSummary):
    """A :class:`RunSummary` plus the number of actors started at first, of those that died, and the
    seconds from the first loaded actor to the end (``seconds`` also counts starting Ray and the actors)."""

    workers: int = 0
    deaths: int = 0
    trace_seconds: float = 0.0


@dataclass(frozen=True)
class WorkerInfo:
    """What an actor loaded: the attributes :func:`explorer.corpus.run.run_info` reads of a loaded model,
    the number of output logits (for frequencies), and where it runs."""

    model_id: str
    revision: str | None
    dtype: object  # torch.dtype
    device: str
    n_outputs: int
    host: str
    pid: int


@dataclass(frozen=True)
class ModelSpec:
    """The model each actor loads, as :func:`explorer.models.loading.load_model` takes it."""

    model_id: str
    device: str = "auto"
    dtype: str = "auto"
    revision: str | None = None
    trust_remote_code: bool = False


def _fault_kills(spec: str | None, n_done: int, text: str) -> bool:
    for part in (spec or "").split(","):
        kind, _, value = part.partition(":")
        if (kind == "after" and n_done >= int(value)) or (kind == "text" and value and value in text):
            return True
    return False


class Tracer:
    """The actor: loads the model once, then traces one prompt per call (wrapped by ``ray.remote``)."""

    def __init__(self, model: ModelSpec, settings: Settings, modes: tuple[str, ...], threads: int,
                 fault: str | None = None):
        import torch

        from explorer.models.loading import load_model

        torch.set_num_threads(max(1, threads))
        self.settings, self.modes, self.fault, self.n_done = settings, modes, fault, 0
        self.lm, self.error = None, None
        try:
            self.lm = load_model(model.model_id, device=model.device, dtype=model.dtype, revision=model.revision,
                                 trust_remote_code=model.trust_remote_code)
        except ExplorerError as exc:  # reported by info(): the driver raises it as the run's error
            self.error = exc

    def info(self) -> WorkerInfo | ExplorerError:
        if self.error is not None:
            return self.error
        lm = self.lm
        return WorkerInfo(lm.model_id, lm.revision, lm.dtype, str(lm.device),
                          int(lm.model.get_output_embeddings().weight.shape[0]), socket.gethostname(), os.getpid())

    def trace(self, index: int, prompt: Prompt, freq: Frequencies | None) -> tuple[str, object]:
        """``("done", rows)``, ``("bad", reason)`` (the model cannot take the prompt) or ``("error", reason)``."""
        from explorer.trace import trace_modes

        if _fault_kills(self.fault, self.n_done, prompt.text):
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.perf_counter()
        try:
            traces = trace_modes(self.lm, prompt.text, self.settings, self.modes, gold=prompt.gold)
        except BadPrompt as exc:
            return "bad", str(exc)
        except Exception as exc:  # noqa: BLE001 - out of memory and the like: retried on another actor
            return "error", f"{type(exc).__name__}: {exc}"
        rows = prompt_rows(traces, prompt, index, freq, time.perf_counter() - t0)
        self.n_done += 1
        return "done", rows


@dataclass
class _Item:
    index: int
    prompt: Prompt
    attempts: int = 0


@dataclass
class _Slot:
    """One actor's place: the actor now in it, whether it has loaded, and the prompts queued on it."""

    number: int
    actor: object = None
    ready: bool = False
    generation: int = 0
    load_failures: int = 0
    running: deque = field(default_factory=deque)  # (ref, item) in submission order


def _reason(exc: Exception) -> str:
    """One line for a Ray error: its class and the first line of its message."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:300]


def _plan(ray, device: str, workers: int | None) -> tuple[int, dict, str]:
    """Number of actors, their resources and their device: one GPU each when the cluster has GPUs (and
    the device is not the CPU), else CPUs, as many as fit on every node."""
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    gpus = int(sum(r.get("GPU", 0) for r in nodes))
    if gpus and not device.startswith(("cpu", "mps")):
        n = min(workers or gpus, gpus)
        cpus = min(int(r.get("CPU", 0) // r["GPU"]) for r in nodes if r.get("GPU", 0) >= 1)
        return n, {"num_gpus": 1, "num_cpus": cpus}, "cuda"
    if device.startswith("cuda"):
        raise BadSetting(f"--device {device} asked for, but the Ray cluster has no GPU")
    cpus = [int(r.get("CPU", 0)) for r in nodes]
    total = sum(cpus)
    if total < 1:
        raise BadSetting("the Ray cluster has no CPU to run workers on")
    n = min(workers or max(1, total // CPUS_PER_WORKER), total)
    per = max(c for c in range(1, max(cpus) + 1) if sum(x // c for x in cpus) >= n)  # the largest share that fits
    return n, {"num_cpus": per}, device


def connect(address: str):
    """Initialise Ray for ``address`` (see :class:`RayOptions`); returns the module and whether this call
    started the connection (then the caller shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address in ("local", "", None):
            ray.init()
        else:
            ray.init(address=address)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise BadSetting(f"cannot reach the Ray cluster at {address}: {exc}") from exc
    return ray, True


class _Run:
    """The driver's side of one sharded run: actors, the queue of prompts, and the store."""

    def __init__(self, ray, model: ModelSpec, settings: Settings, modes, opts: RayOptions, report):
        self.ray, self.model, self.settings, self.modes = ray, model, settings, modes
        self.opts, self.report = opts, report
        n, self.resources, device = _plan(ray, model.device, opts.workers)
        self.spec = ModelSpec(model.model_id, device, model.dtype, model.revision, model.trust_remote_code)
        self.actor_cls = ray.remote(Tracer)
        self.slots = [_Slot(i) for i in range(n)]
        self.waiting: dict = {}  # ref -> (slot, item or None for a load)
        self.pending: deque[_Item] = deque()
        self.failed: list[tuple[str, str]] = []
        self.on_done = None  # (item, rows) -> None, set once the store is open
        self.deaths = 0
        self.last_reason = "no worker started"
        self.done = 0  # prompts finished (traced or failed) in this run
        self.base, self.total = 0, 0
        self.freq_ref = None
        for slot in self.slots:
            self._start(slot)

    # actors -----------------------------------------------------------------------------------------

    def _start(self, slot: _Slot) -> None:
        fault = self.opts.fault
        if fault and (slot.number, slot.generation) != (0, 0):
            fault = ",".join(p for p in fault.split(",") if not p.startswith("after:")) or None
        threads = int(self.resources.get("num_cpus", 1)) or 1
        slot.actor = self.actor_cls.options(**self.resources).remote(self.spec, self.settings, self.modes,
                                                                     threads, fault)
        slot.ready = False
        slot.generation += 1
        self.waiting[slot.actor.info.remote()] = (slot, None)

    def _retire(self, slot: _Slot, reason: str, loaded: bool) -> None:
        """``slot``'s actor is dead (or unusable): kill it, requeue its prompts, start another or give up."""
        self.deaths += 1
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
            self.report(self.base + self.done, self.total, f"worker {slot.number} given up: {reason}")
            return
        self.report(self.base + self.done, self.total, f"worker {slot.number} died ({reason}); restarting it")
        self._start(slot)

    def _finished(self, ref):
        """The outcome of a task already finished, or ``None`` if it did not finish."""
        ready, _ = self.ray.wait([ref], timeout=0)
        if not ready:
            return None
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError:
            return None

    # prompts ----------------------------------------------------------------------------------------

    def _fail(self, item: _Item, reason: str) -> None:
        self.failed.append((item.prompt.id, reason))
        self.done += 1
        self.report(self.base + self.done, self.total, f"failed {item.prompt.id}: {reason}")

    def _handle(self, item: _Item, outcome: tuple[str, object]) -> None:
        kind, value = outcome
        if kind == "done":
            self.on_done(item, value)
            self.done += 1
            self.report(self.base + self.done, self.total, item.prompt.id)
        elif kind == "bad":
            self._fail(item, value)
        else:
            item.attempts += 1
            if item.attempts > self.opts.max_retries:
                self._fail(item, f"failed {item.attempts} times; last: {value}")
            else:
                self.pending.appendleft(item)

    def _fill(self) -> None:
        for slot in self.slots:
            while slot.ready and slot.actor is not None and self.pending and len(slot.running) < self.opts.in_flight:
                item = self.pending.popleft()
                ref = slot.actor.trace.remote(item.index, item.prompt, self.freq_ref)
                slot.running.append((ref, item))
                self.waiting[ref] = (slot, item)

    def _step(self, first: bool = False) -> WorkerInfo | None:
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

    def first_ready(self) -> WorkerInfo:
        """Wait until one actor has loaded the model (or raise why none could)."""
        while self.waiting:
            info = self._step(first=True)
            if info is not None:
                return info
        raise BadSetting(f"no Ray worker could load {self.model.model_id}: {self.last_reason}")

    def loop(self) -> None:
        """Trace every pending prompt; fail the rest when no actor is left."""
        while self.pending or any(s.running for s in self.slots):
            self._fill()
            if not self.waiting:
                while self.pending:
                    self._fail(self.pending.popleft(), f"no Ray worker left ({self.last_reason})")
                break
            self._step()

    def close(self) -> None:
        for slot in self.slots:
            if slot.actor is not None:
                self.ray.kill(slot.actor)
                slot.actor = None


def _tokenizer(model: ModelSpec):
    return load_tokenizer(model.model_id, model.revision, model.trust_remote_code)


def run_corpus_ray(model: ModelSpec, corpus: Corpus, folder: Path | str, settings: Settings,
                   modes: tuple[str, ...] = MODES, freq_source: str | None = None, freq_column: str = "text",
                   overwrite: bool = False, window: int | None = None, column: str = "text",
                   limit: int | None = None, progress=None, options: RayOptions | None = None) -> RaySummary:
    """:func:`explorer.corpus.run.run_corpus` over Ray actors (see the module's docstring).

    ``freq_source``: the source (or saved ``frequency.parquet``) of the token frequencies, counted on the
    driver with the model's tokenizer (``None``: no frequencies). ``progress``: optional callable
    ``(done, total, message)``, called after each prompt and when a worker dies.
    """
    options = options or RayOptions()
    report = progress or (lambda done, total, message: None)
    start = time.perf_counter()
    # before any actor: an embedded model is converted once, here, not by several actors at once
    tokenizer = _tokenizer(model) if freq_source else None
    if tokenizer is None and model.model_id in EMBEDDED:
        model_source(model.model_id)
    ray, started = connect(options.address)
    run = None
    try:
        run = _Run(ray, model, settings, tuple(modes), options, report)
        report(0, len(corpus.prompts), f"loading the model on {len(run.slots)} Ray workers")
        info = run.first_ready()
        freq = (source_frequencies(tokenizer, info.n_outputs, info.model_id, freq_source, freq_column)
                if freq_source else None)
        store = ResultsStore(folder, run_info(info, corpus, settings, modes, window, column, limit), overwrite)
        if freq is not None:
            store.save_frequencies(freq)
        summary = RaySummary(Path(folder), source_skipped=list(corpus.skipped), workers=len(run.slots))
        done = store.done_ids()
        run.pending.extend(_Item(i, p) for i, p in enumerate(corpus.prompts) if p.id not in done)
        summary.already = run.base = len(corpus.prompts) - len(run.pending)
        run.total = len(corpus.prompts)
        run.freq_ref = ray.put(freq) if freq is not None else None
        written: set[str] = set()

        def on_done(item: _Item, rows: list[dict]) -> None:
            if item.prompt.id not in written:  # never twice, whatever the cluster did
                written.add(item.prompt.id)
                store.append(rows)

        run.on_done = on_done
        report(summary.already, run.total, "resuming" if summary.already else "starting")
        loaded = time.perf_counter()
        run.loop()
        store.compact()
        summary.trace_seconds = time.perf_counter() - loaded
        summary.traced, summary.failed, summary.deaths = len(written), run.failed, run.deaths
        write_failed(folder, summary.failed, corpus)
    finally:
        if run is not None:
            run.close()
        if started:
            ray.shutdown()
    summary.seconds = time.perf_counter() - start
    return summary
