"""The results store of a corpus run: a folder holding ``run.json`` (what was run: model, source, settings,
modes) and Parquet parts with one row per (prompt, ablation mode, size), plus ``frequency.parquet``.

Every write is atomic (a temporary file, then a rename), and each part holds whole prompts, so an
interrupted run loses nothing it wrote and a rerun skips the prompts already there. Reading checks each
file and names the one that is corrupt or foreign.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import cast

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from explorer.atomic import atomic_write, atomic_write_text
from explorer.corpus.frequency import Frequencies
from explorer.errors import BadResults

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
PART_RE = re.compile(r"^part-(\d{5})\.parquet$")
MARK = {b"s-trace": b"results", b"schema": str(SCHEMA_VERSION).encode()}

PROMPT_FIELDS = pa.schema([
    ("prompt_id", pa.string()), ("prompt_index", pa.int32()), ("text", pa.string()), ("gold", pa.string()),
    ("category", pa.string()), ("mode", pa.string()), ("n_tokens", pa.int32()), ("n_edges", pa.int64()),
    ("density", pa.float64()), ("density_linear", pa.float64()), ("density_random", pa.float64()),
    ("entropy", pa.float64()), ("full_top1_id", pa.int64()), ("full_top1_token", pa.string()),
    ("full_top1_prob", pa.float64()), ("full_top1_freq", pa.float64()), ("full_gold_ce", pa.float64()),
    ("recovery_1", pa.float64()), ("recovery_10", pa.float64()), ("recovery_50", pa.float64()),
    ("recovery_90", pa.float64()), ("seconds", pa.float64()),
])
STRATUM_FIELDS = pa.schema([
    ("size", pa.float64()), ("stratum_edges", pa.int64()), ("tv", pa.float64()), ("shared_nucleus", pa.int32()),
    ("stratum_entropy", pa.float64()), ("top1_id", pa.int64()), ("top1_token", pa.string()),
    ("top1_freq", pa.float64()), ("top_ids", pa.list_(pa.int64())), ("top_tokens", pa.list_(pa.string())),
    ("top_probs", pa.list_(pa.float64())), ("gold_ce", pa.float64()), ("tv_inverse", pa.float64()),
    ("tv_random", pa.float64()), ("nucleus_inverse", pa.int32()), ("nucleus_random", pa.int32()),
    ("attention_edges", pa.int64()), ("mlp_edges", pa.int64()), ("residual_edges", pa.int64()),
])
SCHEMA = pa.schema(list(PROMPT_FIELDS) + list(STRATUM_FIELDS), metadata=MARK)
KEY = ["prompt_id", "mode", "size"]


@dataclass
class RunInfo:
    """What a results folder holds. Two runs may share a folder (resume) only if :meth:`identity` agrees."""

    model_id: str
    revision: str | None
    dtype: str
    source: str
    window: int | None
    column: str
    modes: list[str]
    settings: dict
    device: str = ""
    limit: int | None = None
    schema: int = SCHEMA_VERSION
    notes: dict = field(default_factory=dict)

    def identity(self) -> dict:
        d = asdict(self)
        for k in ("device", "limit", "notes"):
            d.pop(k)
        return d

    def write(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / RUN_FILE, json.dumps(asdict(self), indent=1))

    @classmethod
    def read(cls, folder: Path) -> RunInfo:
        path = Path(folder) / RUN_FILE
        if not path.exists():
            raise BadResults(f"{folder} holds no s-Trace results ({RUN_FILE} is missing)")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            info = cls(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
            raise BadResults(f"{path} is corrupt or not an s-Trace run file ({exc})") from exc
        if info.schema != SCHEMA_VERSION:
            raise BadResults(f"{path} has results schema {info.schema}; this version reads {SCHEMA_VERSION}")
        return info


def _write_table(path: Path, table: pa.Table) -> None:
    """Write ``table`` to ``path`` as zstd Parquet, atomically (:func:`explorer.atomic.atomic_write`)."""
    atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def _parts(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if PART_RE.match(p.name))


def _part_number(path: Path) -> int:
    """The number ``N`` of a part ``part-N.parquet`` (as :func:`_parts` lists them)."""
    match = PART_RE.match(path.name)
    if match is None:
        raise BadResults(f"{path} is not a result part")
    return int(match.group(1))


def read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One part, checked: a clear :class:`BadResults` if it is unreadable or not an s-Trace results file."""
    try:
        schema = pq.read_schema(path)
    except Exception as exc:  # noqa: BLE001 - any read failure is a corrupt file
        raise BadResults(f"{path} is not a readable Parquet file ({exc})") from exc
    meta = schema.metadata or {}
    if meta.get(b"s-trace") != b"results":
        raise BadResults(f"{path} is not an s-Trace results file")
    if meta.get(b"schema") != MARK[b"schema"]:
        raise BadResults(f"{path} has results schema {meta.get(b'schema', b'?').decode()}; "
                         f"this version reads {SCHEMA_VERSION}")
    missing = [f.name for f in SCHEMA if f.name not in schema.names]
    if missing:
        raise BadResults(f"{path} lacks the columns {', '.join(missing)}")
    try:
        return pq.read_table(path, columns=columns)
    except Exception as exc:  # noqa: BLE001
        raise BadResults(f"{path} is corrupt ({exc})") from exc


class ResultsStore:
    """Writes one run's results into ``folder``: creates it with ``run.json``, or checks that the run
    already there is the same one (then :meth:`done_ids` says what to skip)."""

    def __init__(self, folder: Path | str, run: RunInfo, overwrite: bool = False):
        self.folder = Path(folder)
        self.run = run
        if self.folder.exists() and not self.folder.is_dir():
            raise BadResults(f"{self.folder} exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        if (self.folder / RUN_FILE).exists():
            if overwrite:
                for p in _parts(self.folder):
                    p.unlink()
            else:
                old = RunInfo.read(self.folder)
                if old.identity() != run.identity():
                    diff = [k for k, v in run.identity().items() if old.identity().get(k) != v]
                    raise BadResults(f"{self.folder} holds a run with other {', '.join(diff)}; "
                                     "give another output folder, or --overwrite to replace it")
        elif _parts(self.folder):
            raise BadResults(f"{self.folder} holds result parts but no {RUN_FILE}; give another output folder")
        run.write(self.folder)

    def done_ids(self) -> set[str]:
        """Ids of the prompts already stored (a part always holds all modes and sizes of its prompts)."""
        done: set[str] = set()
        for p in _parts(self.folder):
            done.update(read_part(p, ["prompt_id"])["prompt_id"].to_pylist())
        return done

    def append(self, rows: list[dict]) -> Path | None:
        """Write ``rows`` (dicts with every column of :data:`SCHEMA`) as the next part, atomically."""
        if not rows:
            return None
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        parts = _parts(self.folder)
        n = _part_number(parts[-1]) + 1 if parts else 0
        path = self.folder / f"part-{n:05d}.parquet"
        _write_table(path, table)
        return path

    def compact(self) -> None:
        """Merge the parts into ``part-00000.parquet`` (rows sorted by prompt, mode and size). A crash in
        between leaves duplicate rows, which reading drops."""
        parts = _parts(self.folder)
        if len(parts) <= 1:
            return
        n = _part_number(parts[-1]) + 1
        merged = self.folder / f"part-{n:05d}.parquet"
        _write_table(merged, _dedup(pa.concat_tables([read_part(p) for p in parts])))
        for p in parts:
            p.unlink()
        os.replace(merged, self.folder / "part-00000.parquet")

    def save_frequencies(self, freq: Frequencies) -> None:
        freq.save(self.folder)


def _dedup(table: pa.Table) -> pa.Table:
    """The rows of ``table`` with duplicates of (prompt, mode, size) dropped, sorted by prompt, mode, size."""
    keys = table.select(KEY + ["prompt_index"]).to_pandas()
    keep = keys.drop_duplicates(KEY, keep="first").sort_values(["prompt_index", "mode", "size"], kind="stable")
    return table.take(pa.array(keep.index.to_numpy()))


@dataclass
class Results:
    """A loaded results folder. ``table``: one row per (prompt, mode, size), columns of :data:`SCHEMA`."""

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

    @cached_property
    def prompts(self) -> pd.DataFrame:
        """One row per (prompt, mode): the per-prompt columns (built once; treat as read-only)."""
        cols = PROMPT_FIELDS.names
        rows = cast(pd.DataFrame, self.table.drop_duplicates(["prompt_id", "mode"])[cols])  # a list of columns
        return rows.reset_index(drop=True)

    @cached_property
    def strata(self) -> pd.DataFrame:
        """One row per (prompt, mode, size): the per-size columns, keyed by prompt id and mode (built
        once; treat as read-only)."""
        return cast(pd.DataFrame, self.table[["prompt_id", "prompt_index", "mode"] + STRATUM_FIELDS.names])


def load_results(folder: Path | str) -> Results:
    """Read a results folder written by :class:`ResultsStore` (or shipped with the package)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadResults(f"no results folder at {folder}")
    run = RunInfo.read(folder)
    parts = _parts(folder)
    if not parts:
        raise BadResults(f"{folder} holds no results yet")
    table = _dedup(pa.concat_tables([read_part(p) for p in parts])).to_pandas()
    return Results(folder, run, table, Frequencies.load(folder))


def shipped_root() -> Path:
    """The folder of the precomputed results shipped with the package (one subfolder per model)."""
    return Path(__file__).resolve().parent.parent / "data" / "results"


def find_results(root: Path | str | None = None) -> list[Path]:
    """Results folders directly under ``root`` (default: the shipped ones), sorted by name."""
    root = Path(root) if root else shipped_root()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / RUN_FILE).exists())
