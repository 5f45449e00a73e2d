"""The Parquet parts of a results folder and their manifest.

A part ``part-NNNNN.parquet`` holds whole prompts (every mode and size of each), with page checksums
(``write_page_checksum``), the s-Trace mark and the id of the run that wrote it in its metadata. It is
written atomically and durably (:func:`explorer.atomic.atomic_write`): a unique temporary file, flushed,
read back and checked, then renamed.

``manifest.jsonl`` records each part's SHA-256 and row count, one JSON line per change: ``{"run", "part",
"sha256", "rows"}`` when a part is added, ``{"run", "part", "removed": true}`` before one is deleted.
A part is renamed into place *before* its line is appended, and its removal is recorded *before* it is
deleted, so a crash at any point leaves every part either listed (then its checksum is checked) or
unlisted (then it is read with its page checksums, as a part of a folder written before manifests were
kept: an "unverified legacy part"), and never a listed part that the writer removed. A listed part that
is missing was lost by something else. A torn last line (a crash while appending) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from explorer.atomic import atomic_write, atomic_write_text, fsync_folder
from explorer.errors import BadResults

PART_RE = re.compile(r"^part-(\d{5})\.parquet$")
MANIFEST = "manifest.jsonl"
MARK_KEY, RUN_KEY, SCHEMA_KEY = b"s-trace", b"run", b"schema"


@dataclass(frozen=True)
class PartEntry:
    """A part as the manifest records it: name, SHA-256 of the file, rows, and the id of its run."""

    part: str
    sha256: str
    rows: int
    run: str = ""


def part_paths(folder: Path | str) -> list[Path]:
    """The parts in ``folder``, by number."""
    return sorted(p for p in Path(folder).iterdir() if PART_RE.match(p.name))


def part_number(path: Path) -> int:
    """The number ``N`` of a part ``part-N.parquet``."""
    match = PART_RE.match(path.name)
    if match is None:
        raise BadResults(f"{path} is not a result part")
    return int(match.group(1))


def next_part(folder: Path) -> Path:
    """A part name above every part in ``folder``."""
    parts = part_paths(folder)
    return folder / f"part-{(part_number(parts[-1]) + 1) if parts else 0:05d}.parquet"


def sha256_file(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _line(exc: Exception) -> str:
    """An exception's message on one line (pyarrow's end in newlines)."""
    return " ".join(str(exc).split())


def check_part(
    path: Path,
    schema: pa.Schema,
    schema_version: int,
    run_id: str | None = None,
    entry: PartEntry | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Read ``path`` (``columns``, default all), checked: a readable Parquet file with the s-Trace mark, the
    schema version and every column of ``schema``; then, given ``run_id``, of that run; then, given its
    manifest ``entry``, of the recorded SHA-256 and row count; and its page checksums, where it has them.
    Raises a :class:`~explorer.errors.BadResults` naming the file for the first check that fails."""

    def bad(problem: str) -> BadResults:  # a listed part whose bytes changed is said to be damaged
        damaged = entry is not None and sha256_file(path) != entry.sha256
        return BadResults(
            f"{path} {problem}"
            + (f"; it is damaged: its SHA-256 is not the one {MANIFEST} recorded" if damaged else "")
        )

    try:
        found = pq.read_schema(path)
    except Exception as exc:
        raise bad(f"is not a readable Parquet file ({_line(exc)})") from exc
    meta = found.metadata or {}
    if meta.get(MARK_KEY) != b"results":
        raise bad("is not an s-Trace results file")
    if meta.get(SCHEMA_KEY) != str(schema_version).encode():
        raise bad(f"has results schema {meta.get(SCHEMA_KEY, b'?').decode()}; this version reads {schema_version}")
    missing = [f.name for f in schema if f.name not in found.names]
    if missing:
        raise bad(f"lacks the columns {', '.join(missing)}")
    if run_id is not None and meta.get(RUN_KEY, b"").decode() != run_id:
        raise bad("belongs to another run than the folder's run.json")
    if entry is not None:
        digest = sha256_file(path)
        if digest != entry.sha256:
            raise BadResults(
                f"{path} is damaged: its SHA-256 is {digest[:12]}..., {MANIFEST} recorded {entry.sha256[:12]}..."
            )
    try:
        table = pq.read_table(path, columns=columns, page_checksum_verification=True)
    except Exception as exc:
        raise BadResults(f"{path} is corrupt ({_line(exc)})") from exc
    if entry is not None and table.num_rows != entry.rows:
        raise BadResults(f"{path} holds {table.num_rows} rows; {MANIFEST} recorded {entry.rows}")
    return table


def part_run(path: Path) -> str | None:
    """The id of the run that wrote the s-Trace part ``path`` (``""`` for a part written before runs had
    ids), or ``None`` if it is unreadable or not an s-Trace results file."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except Exception:
        return None
    return meta.get(RUN_KEY, b"").decode() if meta.get(MARK_KEY) == b"results" else None


def write_part(path: Path, table: pa.Table, run_id: str) -> PartEntry:
    """Write ``table`` to ``path`` (zstd, page checksums, ``run_id`` in the metadata) atomically and
    durably; the temporary file is read back and checked before the rename. Returns its manifest entry."""
    meta = dict(table.schema.metadata or {})
    meta[RUN_KEY] = run_id.encode()
    table = table.replace_schema_metadata(meta)
    digest: list[str] = []

    def write(tmp: str) -> None:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)

    def check(tmp: str) -> None:
        back = pq.read_table(tmp, page_checksum_verification=True)
        if back.num_rows != table.num_rows or back.column_names != table.column_names:
            raise BadResults(f"{path}: the part read back differs from the rows written")
        digest.append(sha256_file(tmp))

    atomic_write(path, write, durable=True, check=check)
    return PartEntry(path.name, digest[0], table.num_rows, run_id)


def link_part(src: Path, dst: Path) -> None:
    """Give part ``src`` the (free) name ``dst`` too: a hard link, or a durable copy where links fail."""
    try:
        os.link(src, dst)
    except OSError:
        data = src.read_bytes()

        def write(tmp: str) -> None:
            Path(tmp).write_bytes(data)

        atomic_write(dst, write, durable=True)
    fsync_folder(dst.parent)


class Manifest:
    """The manifest of ``folder`` for the run ``run_id``: :attr:`entries` by part name. Lines of other runs
    (a run being replaced by ``--overwrite``) are ignored. :attr:`exists` is false for a folder without a
    manifest (results written before manifests were kept)."""

    def __init__(self, folder: Path | str, run_id: str):
        self.folder, self.run_id = Path(folder), run_id
        self.path = self.folder / MANIFEST
        self.entries: dict[str, PartEntry] = {}
        self.exists = self.path.exists()
        self.torn = False
        if self.exists:
            self._replay()

    def _replay(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadResults(f"{self.path} is unreadable ({exc})") from exc
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        elif lines:  # no newline at the end: the last append was cut short
            lines.pop()
            self.torn = True
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                if rec.get("run", "") != self.run_id:
                    continue
                if rec.get("removed"):
                    self.entries.pop(rec["part"], None)
                else:
                    self.entries[rec["part"]] = PartEntry(rec["part"], rec["sha256"], int(rec["rows"]), self.run_id)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise BadResults(
                    f"{self.path} is corrupt at line {n} ({exc}); remove it to read the parts unverified"
                ) from exc

    def _append(self, rec: dict) -> None:
        if self.torn:
            self.rewrite()
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.exists = True

    def add(self, entry: PartEntry) -> None:
        self._append(asdict(entry))
        self.entries[entry.part] = entry

    def remove(self, name: str) -> None:
        if name in self.entries:
            self._append({"run": self.run_id, "part": name, "removed": True})
            del self.entries[name]

    def rewrite(self) -> None:
        """Replace the file by this run's current entries only (atomically)."""
        text = "".join(json.dumps(asdict(e)) + "\n" for _, e in sorted(self.entries.items()))
        atomic_write_text(self.path, text, durable=True)
        self.exists, self.torn = True, False
