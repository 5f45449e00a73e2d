"""The results store of a corpus run: a folder holding ``run.json`` (what was run: model, source and its
content hash, settings, modes; :mod:`explorer.corpus.runinfo`), Parquet parts with one row per (prompt,
ablation mode, size), or for an all-positions run one per (text, position, mode) (the columns:
:mod:`explorer.corpus.schema`), and their ``manifest.jsonl`` (:mod:`explorer.corpus.parts`),
``frequency.parquet``, and the writer's lock (:mod:`explorer.corpus.lock`).

One writer at a time: :class:`ResultsStore` holds the folder's lock from opening to :meth:`~ResultsStore.close`.
Every write is atomic and durable, each part holds whole prompts and carries page checksums and a SHA-256
in the manifest, so an interrupted run loses nothing it wrote, a rerun skips the prompts already there
after reading them back (a damaged part is moved to ``damaged/`` and its prompts traced again), and a
reader (:func:`load_results`) verifies every part and names the one that is damaged, corrupt or foreign.
Folders written before manifests were kept (the shipped results) read as unverified legacy parts: their
page checksums, where they have them, and their schema are still checked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pandas as pd
import pyarrow as pa

from explorer.atomic import fsync_folder
from explorer.corpus.frequency import FILE as FREQUENCY_FILE
from explorer.corpus.frequency import Frequencies
from explorer.corpus.lock import WriterLock
from explorer.corpus.parts import (
    MANIFEST,
    PART_RE,
    Manifest,
    PartEntry,
    check_part,
    link_part,
    part_number,
    part_paths,
    part_run,
    sha256_file,
    write_part,
)
from explorer.corpus.runinfo import (
    RUN_FILE,
    SCHEMA_VERSION,
    RunInfo,
    identity_change,
    merge_source,
    new_run_id,
    source_change,
)
from explorer.corpus.schema import KEY, POSITIONS_SCHEMA, PROMPT_FIELDS, SCHEMA, STRATUM_FIELDS, layout
from explorer.errors import BadResults, OtherRun

if TYPE_CHECKING:
    from explorer.corpus.sources import Prompt

__all__ = [
    "SCHEMA",
    "POSITIONS_SCHEMA",
    "SCHEMA_VERSION",
    "RUN_FILE",
    "PART_RE",
    "MANIFEST",
    "RunInfo",
    "ResultsStore",
    "Results",
    "load_results",
    "read_part",
    "find_results",
    "shipped_root",
]

FAILED_FILE = "failed.jsonl"
DAMAGED_DIR = "damaged"
COMPACT_PROMPTS = 256
"""Prompts per part after compaction: a damaged part loses at most this many (they are traced again)."""


def read_part(
    path: Path,
    columns: list[str] | None = None,
    entry: PartEntry | None = None,
    run_id: str | None = None,
    schema: pa.Schema = SCHEMA,
) -> pa.Table:
    """One part, checked (:func:`explorer.corpus.parts.check_part`): a clear :class:`BadResults` naming
    it if it is unreadable, not an s-Trace results file, of another run, not of ``schema`` (an
    all-positions run's parts are of :data:`POSITIONS_SCHEMA`), or not what its manifest ``entry``
    recorded."""
    return check_part(Path(path), schema, SCHEMA_VERSION, run_id, entry, columns)


def _dedup(table: pa.Table, key: list[str] = KEY) -> pa.Table:
    """The rows of ``table`` with duplicates of ``key`` (prompt, mode, and size or position) dropped, sorted
    by prompt, mode, and size or position."""
    keys = table.select(key + ["prompt_index"]).to_pandas()
    keep = keys.drop_duplicates(key, keep="first").sort_values(["prompt_index", "mode", key[-1]], kind="stable")
    return table.take(pa.array(keep.index.to_numpy()))


def _chunks(table: pa.Table, per_part: int) -> list[pa.Table]:
    """``table`` (sorted by prompt) cut into tables of at most ``per_part`` whole prompts."""
    ids = table["prompt_id"].to_pylist()
    starts = [i for i in range(len(ids)) if i == 0 or ids[i] != ids[i - 1]]
    cuts = starts[::per_part] + [len(ids)]
    return [table.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])]


class ResultsStore:
    """Writes one run's results into ``folder``, holding its lock (``lock``, or one it takes) until
    :meth:`close`. A new folder gets ``run.json``; a folder holding the same run is read back and checked
    (:attr:`notices` says what was repaired, :meth:`done_ids` what to skip); one holding another run is
    refused, or with ``overwrite`` replaced once the new run stores its first prompt (:attr:`pending`
    until then: the old run stays whole and loadable). ``prompts``: the source as read now, checked
    against the run's (``None``: not checked)."""

    def __init__(
        self,
        folder: Path | str,
        run: RunInfo,
        overwrite: bool = False,
        lock: WriterLock | None = None,
        prompts: list[Prompt] | None = None,
    ):
        self.folder = Path(folder)
        self.lock = lock or WriterLock(self.folder)
        self.lock.acquire()
        self.run = replace(run)
        self.schema, self.key = layout(run.all_positions)
        self.notices: list[str] = []
        self.pending = False
        self.replaced = False
        self._done: set[str] = set()
        self._old_parts: list[Path] = []
        self._frequencies: Frequencies | None = None
        self._changed = False
        try:
            self._open(overwrite, prompts)
        except BaseException:
            self.close()
            raise

    # opening ----------------------------------------------------------------------------------------

    def _open(self, overwrite: bool, prompts: list[Prompt] | None) -> None:
        for tmp in self.folder.glob(".*.tmp"):  # temporaries of a writer that was killed: none is alive
            tmp.unlink(missing_ok=True)
        if (self.folder / RUN_FILE).exists():
            if overwrite:
                self.pending = True
                self._old_parts = part_paths(self.folder)
                self.run.run_id = new_run_id()
                self.manifest = Manifest(self.folder, self.run.run_id)
                return
            old = RunInfo.read(self.folder)
            change = identity_change(old, self.run)
            if change:
                reason = f"holds a run with other {change}"
                raise OtherRun(
                    f"{self.folder} {reason}; give another output folder, or --overwrite to replace it",
                    self.folder,
                    reason,
                )
            self.run.run_id = old.run_id
            self.manifest = Manifest(self.folder, old.run_id)
            stored = self._scan()
            if prompts is not None:
                why = source_change(old, prompts, stored)
                if why:
                    reason = f"holds a run of another version of its source {self.run.source}: {why}"
                    raise OtherRun(
                        f"{self.folder} {reason}; give another output folder, or --overwrite to replace the run",
                        self.folder,
                        reason,
                    )
                merge_source(old, self.run)
            else:
                self.run.source_prompts, self.run.source_sha256 = old.source_prompts, old.source_sha256
        elif part_paths(self.folder):
            raise BadResults(f"{self.folder} holds result parts but no {RUN_FILE}; give another output folder")
        else:
            self.run.run_id = new_run_id()
            self.manifest = Manifest(self.folder, self.run.run_id)
            self.manifest.rewrite()  # a manifest without run.json is of no run: start it empty
        self.run.write(self.folder)

    def _scan(self) -> dict[int, tuple[str, str]]:
        """Read back every part of this run: a damaged one is moved to ``damaged/`` (its prompts are traced
        again), a part this run's manifest does not list is verified and listed, a listed one that is missing
        is reported, and the parts of a run replaced by ``--overwrite`` are removed. Returns the stored
        prompts, ``prompt_index -> (prompt_id, text)``."""
        stored: dict[int, tuple[str, str]] = {}
        listed = dict(self.manifest.entries)
        for path in part_paths(self.folder):
            owner = part_run(path)
            if owner is not None and owner != self.run.run_id:
                path.unlink()  # left by a run that --overwrite replaced (its clean-up was cut short)
                self._changed = True
                continue
            entry = listed.pop(path.name, None)
            try:
                cols = ["prompt_id", "prompt_index", "text"] if entry else None  # unlisted: read every page
                table = read_part(path, cols, entry, self.run.run_id, self.schema)
            except BadResults as exc:
                moved = self._quarantine(path)
                self.manifest.remove(path.name)
                self.notices.append(
                    f"results: {exc}; moved to {moved.relative_to(self.folder)}, its prompts will be traced again"
                )
                self._changed = True
                continue
            if entry is None and self.manifest.exists:
                self.manifest.add(PartEntry(path.name, sha256_file(path), table.num_rows, self.run.run_id))
            for pid, index, text in zip(*(table[c].to_pylist() for c in ("prompt_id", "prompt_index", "text"))):
                stored[index] = (pid, text)
                self._done.add(pid)
        for name, entry in listed.items():
            self.notices.append(
                f"results: {name} ({entry.rows} rows) is listed in {MANIFEST} but missing; "
                "its prompts will be traced again"
            )
            self.manifest.remove(name)
        return stored

    def _quarantine(self, path: Path) -> Path:
        folder = self.folder / DAMAGED_DIR
        folder.mkdir(exist_ok=True)
        target = folder / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}"
        n = 1
        while target.exists():
            target = folder / f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{n}{path.suffix}"
            n += 1
        path.replace(target)
        fsync_folder(self.folder)
        return target

    # writing ----------------------------------------------------------------------------------------

    def done_ids(self) -> set[str]:
        """Ids of the prompts already stored and read back (a part holds all modes and sizes of its prompts)."""
        return set(self._done)

    def append(self, rows: list[dict]) -> Path | None:
        """Write ``rows`` (dicts with every column of the run's schema: :data:`SCHEMA`, or
        :data:`POSITIONS_SCHEMA` for an all-positions run) as the next part, atomically; the first one of an
        ``overwrite`` replaces the old run."""
        if not rows:
            return None
        path = part_paths(self.folder)
        path = self.folder / f"part-{(part_number(path[-1]) + 1) if path else 0:05d}.parquet"
        entry = write_part(path, pa.Table.from_pylist(rows, schema=self.schema), self.run.run_id)
        if self.pending:
            self._commit(entry)
        else:
            self.manifest.add(entry)
        self._done.update(r["prompt_id"] for r in rows)
        self._changed = True
        return path

    def _commit(self, entry: PartEntry) -> None:
        """The new run's first part is stored: switch ``run.json`` to it (from here on, readers see the new
        run and ignore the old run's parts), then remove the old run's files."""
        self.run.write(self.folder)
        self.manifest.entries = {entry.part: entry}
        self.manifest.rewrite()
        for path in self._old_parts:
            path.unlink(missing_ok=True)
        (self.folder / FAILED_FILE).unlink(missing_ok=True)
        if self._frequencies is not None:
            self._frequencies.save(self.folder)
        else:
            (self.folder / FREQUENCY_FILE).unlink(missing_ok=True)
        fsync_folder(self.folder)
        self.pending, self.replaced = False, True
        self.notices.append(f"results: the run that was in {self.folder} is replaced")

    def compact(self) -> None:
        """Merge the parts into parts of :data:`COMPACT_PROMPTS` prompts, ``part-00000.parquet`` on, rows
        sorted by prompt, mode and size (or position). The merged parts are written and verified under new names before
        any old part is removed; a crash in between leaves duplicate rows, which reading drops."""
        parts = part_paths(self.folder)
        compact = [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(len(parts))]
        if self.pending or not parts or (compact and (len(parts) == 1 or not self._changed)):
            return
        merged = _dedup(
            pa.concat_tables(
                [
                    read_part(p, entry=self.manifest.entries.get(p.name), run_id=self.run.run_id, schema=self.schema)
                    for p in parts
                ]
            ),
            self.key,
        )
        if merged.num_rows == 0:
            return
        first = part_number(parts[-1]) + 1
        new = []
        for i, chunk in enumerate(_chunks(merged, COMPACT_PROMPTS)):
            entry = write_part(self.folder / f"part-{first + i:05d}.parquet", chunk, self.run.run_id)
            self.manifest.add(entry)
            new.append(entry)
        if sum(e.rows for e in new) != merged.num_rows:
            raise BadResults(f"{self.folder}: the merged parts lack rows; the old parts are kept")
        for path in parts:
            self.manifest.remove(path.name)
            path.unlink()
        fsync_folder(self.folder)
        for i, entry in enumerate(new):
            src, dst = self.folder / entry.part, self.folder / f"part-{i:05d}.parquet"
            if src != dst:
                link_part(src, dst)
                self.manifest.add(replace(entry, part=dst.name))
                self.manifest.remove(src.name)
                src.unlink()
        fsync_folder(self.folder)
        self.manifest.rewrite()

    def save_frequencies(self, freq: Frequencies) -> None:
        """Write ``frequency.parquet`` (for an ``overwrite``, once the new run has replaced the old)."""
        if self.pending:
            self._frequencies = freq
        else:
            freq.save(self.folder)

    def close(self) -> None:
        """Give the folder's lock back (idempotent)."""
        self.lock.release()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Results:
    """A loaded results folder. ``table``: one row per (prompt, mode, size), columns of :data:`SCHEMA`; or,
    for an all-positions run (:attr:`all_positions`), one row per (text, position, mode), columns of
    :data:`POSITIONS_SCHEMA` (:attr:`positions`)."""

    folder: Path
    run: RunInfo
    table: pd.DataFrame
    frequencies: Frequencies | None

    @property
    def model_id(self) -> str:
        return self.run.model_id

    @property
    def modes(self) -> list[str]:
        return sorted(self.table["mode"].unique().tolist(), key=lambda m: (m != "all", m))

    @property
    def all_positions(self) -> bool:
        """Whether the run traced every position of its texts (``corpus --all-positions``)."""
        return self.run.all_positions

    @property
    def positions(self) -> pd.DataFrame:
        """One row per (text, position, mode) of an all-positions run (:data:`POSITIONS_SCHEMA`; treat as
        read-only), sorted by text, mode and position."""
        if not self.all_positions:
            raise BadResults(
                f"{self.folder} holds one row per prompt and size, not every position (a run with --all-positions does)"
            )
        return self.table

    def _per_prompt(self) -> None:
        if self.all_positions:
            raise BadResults(f"{self.folder} is an all-positions run: its rows are Results.positions")

    @cached_property
    def prompts(self) -> pd.DataFrame:
        """One row per (prompt, mode): the per-prompt columns (built once; treat as read-only)."""
        self._per_prompt()
        cols = PROMPT_FIELDS.names
        rows = cast(pd.DataFrame, self.table.drop_duplicates(["prompt_id", "mode"])[cols])  # a list of columns
        return rows.reset_index(drop=True)

    @cached_property
    def strata(self) -> pd.DataFrame:
        """One row per (prompt, mode, size): the per-size columns, keyed by prompt id and mode (built
        once; treat as read-only)."""
        self._per_prompt()
        return cast(pd.DataFrame, self.table[["prompt_id", "prompt_index", "mode"] + STRATUM_FIELDS.names])


def load_results(folder: Path | str) -> Results:
    """Read a results folder written by :class:`ResultsStore` (or shipped with the package), verified: each
    part against its SHA-256 and row count in ``manifest.jsonl`` and its page checksums; a part the
    manifest does not list (a folder written before manifests were kept, or a crash between a part's
    rename and its manifest line) is read as an unverified legacy part (schema and page checksums, where
    it has them); parts of a run that ``--overwrite`` replaced are ignored. A damaged, corrupt or missing
    part raises :class:`BadResults` naming it: no rows are returned rather than wrong ones. An
    all-positions run's rows are :attr:`Results.positions`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadResults(f"no results folder at {folder}")
    run = RunInfo.read(folder)
    schema, key = layout(run.all_positions)
    listed = dict(Manifest(folder, run.run_id).entries)
    tables = []
    for path in part_paths(folder):
        owner = part_run(path)
        if owner is not None and owner != run.run_id:
            continue
        tables.append(read_part(path, entry=listed.pop(path.name, None), run_id=run.run_id, schema=schema))
    if listed:
        raise BadResults(
            f"{folder}: {', '.join(sorted(listed))} listed in {MANIFEST} but missing (rows lost); "
            "rerun the same command to trace its prompts again"
        )
    if not tables:
        raise BadResults(f"{folder} holds no results yet")
    freq = Frequencies.load(folder)
    if run.frequencies is not None and (freq is None or freq.label() != run.frequencies):
        raise BadResults(
            f"{folder / FREQUENCY_FILE} is not the frequency table {RUN_FILE} records "
            f"({run.frequencies}); rerun the same command to write it again"
        )
    return Results(folder, run, _dedup(pa.concat_tables(tables), key).to_pandas(), freq)


def shipped_root() -> Path:
    """The folder of the precomputed results shipped with the package (one subfolder per model)."""
    return Path(__file__).resolve().parent.parent / "data" / "results"


def find_results(root: Path | str | None = None) -> list[Path]:
    """Results folders directly under ``root`` (default: the shipped ones), sorted by name."""
    root = Path(root) if root else shipped_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / RUN_FILE).exists())
