"""The one entry point of a corpus run, for the command line (``python -m explorer corpus``) and the
Corpus page: a :class:`CorpusRequest` says what to run, :func:`start_corpus_run` reads the source, picks
the way of tracing (the model in this process, or Ray actors when ``ray`` is given) and runs
:func:`explorer.corpus.driver.drive`.

Ray is imported only when ``ray`` is given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.corpus.cluster import RayOptions, import_ray
from explorer.corpus.driver import ModelSpec, Progress, RunSummary, Tracer, check_all_positions, drive
from explorer.corpus.frequency import Frequencies
from explorer.corpus.sources import Corpus, read_source
from explorer.errors import BadSetting
from explorer.options import MODES
from explorer.results import Settings

if TYPE_CHECKING:
    from explorer.models.loading import LoadedModel


@dataclass(frozen=True)
class CorpusRequest:
    """One corpus run.

    ``model``: an embedded key, folder or hub id, a :class:`~explorer.corpus.driver.ModelSpec` (device,
    dtype, revision, remote code), or a model already loaded in this process (the app's shared copy; not
    with ``ray``). ``source``: a source spec (:func:`explorer.corpus.sources.read_source`, read with
    ``limit``, ``window`` and ``column``), or a corpus already read with them (they are recorded in
    ``run.json`` either way). ``frequencies``: the source (or saved ``frequency.parquet``) whose unigram
    token counts fill the ``*_freq`` columns, counted over its ``freq_column`` with the model's tokenizer;
    or counts already made; or ``None``. ``overwrite``: replace a run with other settings in ``out``.
    ``workers``: prompts in flight on threads sharing the model (a local run's; a Ray run's actors are set
    by ``ray.workers``). ``all_positions``: trace every position of each text
    (:func:`explorer.text.trace_text`) and store one row per position and mode (a local run, without
    controls). ``ray``: run on Ray actors (see :mod:`explorer.corpus.ray_tracer`).
    ``progress``: ``(done, total, message)`` (:data:`explorer.corpus.driver.Progress`).
    """

    model: str | ModelSpec | LoadedModel
    source: str | Corpus
    out: Path | str
    settings: Settings = field(default_factory=Settings)
    modes: tuple[str, ...] = MODES
    limit: int | None = None
    window: int | None = None
    column: str = "text"
    frequencies: str | Frequencies | None = None
    freq_column: str = "text"
    overwrite: bool = False
    workers: int = 1
    all_positions: bool = False
    ray: RayOptions | None = None
    progress: Progress | None = None

    def __post_init__(self):
        object.__setattr__(self, "modes", tuple(self.modes))
        if not self.modes or any(m not in MODES for m in self.modes):
            raise BadSetting(f"ablation modes: choose from {', '.join(MODES)}")
        if self.workers < 1:
            raise BadSetting("workers must be at least 1")
        if self.ray is not None and not isinstance(self.model, (str, ModelSpec)):
            raise BadSetting("a Ray run loads the model on its workers: give the model's id, not a loaded model")
        if self.all_positions and self.ray is not None:
            raise BadSetting("--all-positions runs locally only, not on Ray")
        check_all_positions(self.settings, self.all_positions)


def _tracer(request: CorpusRequest) -> Tracer:
    model = ModelSpec(request.model) if isinstance(request.model, str) else request.model
    if request.ray is not None:
        from explorer.corpus.ray_tracer import RayTracer

        assert isinstance(model, ModelSpec)  # CorpusRequest refuses a loaded model with ray
        return RayTracer(model, request.settings, request.modes, request.ray)
    from explorer.corpus.local import LocalTracer

    lm = model.load() if isinstance(model, ModelSpec) else model
    return LocalTracer(lm, request.settings, request.modes, request.workers, request.all_positions)


def start_corpus_run(request: CorpusRequest) -> RunSummary:
    """Run ``request``: trace every prompt of its source not yet in its results folder, store the rows
    there, and return what was done (:class:`~explorer.corpus.driver.RunSummary`). Raises an
    :class:`~explorer.errors.ExplorerError` with one line for a bad source, model, setting or results
    folder (before any prompt is traced)."""
    if request.ray is not None:
        import_ray()  # a one-line error before anything loads when Ray is not installed
    corpus = (
        request.source
        if isinstance(request.source, Corpus)
        else read_source(request.source, limit=request.limit, window=request.window, column=request.column)
    )
    return drive(
        _tracer(request),
        corpus,
        request.out,
        frequencies=request.frequencies,
        freq_column=request.freq_column,
        overwrite=request.overwrite,
        window=request.window,
        column=request.column,
        limit=request.limit,
        progress=request.progress,
    )
