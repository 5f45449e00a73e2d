"""Corpus sources: where a corpus run's prompts come from.

A source spec is one of:

- ``project``: the project's own prompt set (``explorer/data/prompt_set.jsonl``);
- a path ending in ``.txt`` (or any other text file): one prompt per line, empty lines ignored;
- a path ending in ``.csv`` or ``.jsonl``: one prompt per row, in a ``text`` column (or the one named by
  ``column``), with optional ``gold`` and ``category`` columns;
- ``bible-kjv``: the King James Bible from Debian's ``bible-kjv`` package, one verse per prompt;
- ``fortunes``: Debian's ``fortunes`` package, one fortune per prompt (the ``off`` folder is left out);
- ``hf:NAME[:CONFIG][:SPLIT]``: a Hugging Face dataset, read from the hub's Parquet conversion (needs the
  network; ``SPLIT`` defaults to ``train``).

With ``window=N`` each text is cut into consecutive windows of ``N`` words, each followed by its next word
as the gold target (the papers used 40); texts shorter than ``N + 1`` words give no window. Malformed rows
are reported in :attr:`Corpus.skipped` and left out, never fatal: a JSONL line that is not JSON or holds a
lone surrogate (``"\\ud800"``, not Unicode text), a CSV row with the wrong number of fields or an unclosed
quote (reported on its line; the lines it would have swallowed are read as rows of their own). A UTF-8
byte order mark at the start of a .txt, .csv or .jsonl file is dropped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import cast

from explorer.errors import BadSource

PROJECT = "project"
BIBLE = "bible-kjv"
FORTUNES = "fortunes"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
NAMED = (PROJECT, BIBLE, FORTUNES)


@dataclass(frozen=True)
class Prompt:
    """One prompt of a corpus. ``id`` is stable across reads of the same source: its position and a hash
    of its text and gold, so that a resumed run recognises what it has done."""

    id: str
    text: str
    gold: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Skipped:
    """A row left out: where it was (``line 12``) and why."""

    where: str
    reason: str


@dataclass
class Corpus:
    """The prompts of a source spec, in order, and the rows left out."""

    source: str
    prompts: list[Prompt]
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class _Row:
    text: str
    gold: str | None = None
    category: str | None = None


def prompt_id(index: int, text: str, gold: str | None) -> str:
    digest = hashlib.sha1(f"{text}\x00{gold or ''}".encode()).hexdigest()[:10]
    return f"{index:06d}-{digest}"


def _not_unicode(value) -> bool:
    """Whether ``value`` is a string that UTF-8 cannot encode (a lone surrogate from a JSON escape)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _clean(value) -> str | None:
    """A non-blank string as it is; anything else (missing, blank, not text) as ``None``."""
    return value if isinstance(value, str) and value.strip() else None


def _record_rows(records, column: str) -> tuple[list[_Row], list[Skipped]]:
    """Rows from ``(where, record or error)`` pairs: a record is a dict; an error a string."""
    rows, skipped = [], []
    for where, rec in records:
        if isinstance(rec, str):
            skipped.append(Skipped(where, rec))
            continue
        if not isinstance(rec, dict):
            skipped.append(Skipped(where, "not an object with named fields"))
            continue
        text = rec.get(column)
        bad = [k for k in (column, "gold", "category") if _not_unicode(rec.get(k))]
        if bad:
            skipped.append(
                Skipped(where, f"'{bad[0]}' holds a lone surrogate (an escape such as \\ud800): not Unicode text")
            )
            continue
        if not isinstance(text, str) or not text.strip():
            skipped.append(Skipped(where, f"no text in column '{column}'"))
            continue
        gold, category = rec.get("gold"), rec.get("category")
        if gold is not None and not isinstance(gold, str):
            skipped.append(Skipped(where, "'gold' is not a string"))
            continue
        rows.append(_Row(text, _clean(gold), _clean(category)))
    return rows, skipped


def _jsonl_records(text: str):
    for n, line in enumerate(text.split("\n"), 1):  # JSON strings may hold U+2028 and the like: not line ends
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        try:
            yield f"line {n}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"line {n}", f"not valid JSON ({exc.msg})"


def _csv_record(lines: list[str], start: int) -> tuple[list[str] | None, int, str | None]:
    """The CSV record that begins on physical line ``start`` of ``lines`` (each with its line end): its
    fields (``None`` at the end), the number of lines it spans, and the error if it is malformed."""
    used = 0

    def feed():
        nonlocal used
        for line in lines[start:]:
            used += 1
            yield line

    try:
        fields = next(csv.reader(feed(), strict=True))
    except StopIteration:
        return None, used, None
    except csv.Error as exc:
        return None, max(used, 1), str(exc)
    return fields, used, None


def _looks_like_rows(lines: list[str], n_fields: int) -> bool:
    """Whether the inner lines of a quoted field spanning lines each parse as a row of ``n_fields`` fields
    (a quote left open swallowed them)."""
    if n_fields < 2 or not lines:
        return False
    for line in lines:
        fields, _, error = _csv_record([line], 0)
        if error is not None or fields is None or len(fields) != n_fields:
            return False
    return True


def _csv_records(text: str, column: str, path: str):
    """``(where, record or error)`` for each row of a CSV ``text``. A record is parsed from its first
    physical line on; a malformed one (a bad or unclosed quote, the wrong number of fields, a quoted field
    whose inner lines look like rows) is reported on that line, and parsing resumes on the next line, so
    a quote left open never swallows the rows after it."""
    lines = list(io.StringIO(text, newline=""))
    header, i, error = _csv_record(lines, 0)
    while header == [] and error is None:  # blank lines before the header
        header, used, error = _csv_record(lines, i)
        i += used
    if error is not None or header is None or column not in header:
        found = ", ".join(header or []) or "none"
        raise BadSource(
            f"{path} has no '{column}' column (columns: {found})"
            + (f"; its header is malformed ({error})" if error else "")
        )
    n_fields = len(header)
    while i < len(lines):
        fields, used, error = _csv_record(lines, i)
        where = f"line {i + 1}"
        if error is not None:
            quote = "; an unclosed or misplaced quote on this line?" if '"' in lines[i] else ""
            yield where, f"malformed CSV ({error}){quote}; reading on from the next line"
            i += 1
            continue
        if fields is None:
            return
        if fields == []:  # a blank line
            i += used
            continue
        if used > 2 and _looks_like_rows(lines[i + 1 : i + used - 1], n_fields):
            yield (
                where,
                f"a quote opened on this line runs over lines {i + 1}-{i + used}, whose lines look "
                "like rows: an unclosed quote? reading on from the next line",
            )
            i += 1
            continue
        if len(fields) != n_fields:
            yield (
                where,
                f"expected {n_fields} fields, found {len(fields)}"
                + ("; reading on from the next line" if used > 1 else ""),
            )
            i += 1 if used > 1 else used
            continue
        yield where, dict(zip(header, fields))
        i += used


def _read_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte order mark at the start is dropped
    except FileNotFoundError as exc:
        raise BadSource(f"no such corpus file: {path}") from exc
    except UnicodeDecodeError as exc:
        raise BadSource(f"{path} is not UTF-8 text") from exc
    except OSError as exc:
        raise BadSource(f"cannot read {path}: {exc.strerror or exc}") from exc


def _file_rows(path: Path, column: str) -> tuple[list[_Row], list[Skipped]]:
    if path.is_dir():
        raise BadSource(f"{path} is a folder; give a .txt, .csv or .jsonl file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".json", ".pkl", ".pickle", ".gz", ".zip"):
        raise BadSource(f"{path}: unsupported corpus format '{suffix}'; use .txt, .csv or .jsonl")
    text = _read_file(path)
    if suffix == ".jsonl":
        return _record_rows(_jsonl_records(text), column)
    if suffix == ".csv":
        return _record_rows(_csv_records(text, column, str(path)), column)
    return [_Row(line) for line in text.splitlines() if line.strip()], []


def project_prompts_path() -> Path:
    return Path(str(resources.files("explorer.data") / "prompt_set.jsonl"))


def _bible_rows() -> list[_Row]:
    exe = shutil.which("bible")
    if not exe:
        raise BadSource("the King James Bible needs Debian's bible-kjv package (apt-get install bible-kjv)")
    out = subprocess.run([exe, "-l0", "gen1:1-rev22:21"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise BadSource(f"bible-kjv failed: {out.stderr.strip()[:200]}")
    rows = []
    for line in out.stdout.splitlines():
        head, _, verse = line.strip().partition(" ")
        if head.isdigit() and verse.strip():  # verse lines: "  12 text"; book and chapter titles are skipped
            rows.append(_Row(verse.strip()))
    return rows


def _fortune_rows(folder: Path = FORTUNES_DIR) -> list[_Row]:
    if not folder.is_dir():
        raise BadSource("fortunes need Debian's fortunes package (apt-get install fortunes)")
    rows = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix or path.is_symlink():  # skip .dat / .u8 indexes
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        rows += [_Row(f.strip("\n")) for f in text.split("\n%\n") if f.strip() and f.strip() != "%"]
    return rows


def _hf_rows(spec: str, column: str) -> tuple[list[_Row], list[Skipped]]:
    """``hf:NAME[:CONFIG][:SPLIT]`` through the hub's Parquet conversion of the dataset."""
    parts = spec[3:].split(":")
    if not parts[0] or len(parts) > 3:
        raise BadSource(f"'{spec}': write hf:NAME[:CONFIG][:SPLIT]")
    name, config, split = parts[0], parts[1] if len(parts) > 1 else None, parts[2] if len(parts) > 2 else "train"
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise BadSource(f"the dataset {name} needs the network, and HF_HUB_OFFLINE=1 is set")
    import pyarrow.parquet as pq
    from huggingface_hub import HfFileSystem

    fs = HfFileSystem()
    base = f"datasets/{name}@~parquet"
    try:
        if config is None:
            names = cast("list[str]", fs.ls(base, detail=False))  # detail=False lists paths, not info dicts
            configs = [p.rsplit("/", 1)[-1] for p in names]
            if not configs:
                raise BadSource(f"the dataset {name} has no Parquet conversion on the hub")
            config = "default" if "default" in configs else configs[0]
        files = sorted(fs.glob(f"{base}/{config}/{split}/*.parquet"))
    except BadSource:
        raise
    except Exception as exc:
        raise BadSource(f"cannot read the dataset {name} from the hub: {exc}") from exc
    if not files:
        raise BadSource(f"the dataset {name} has no split '{split}' in config '{config}'")
    records = []
    for path in files:
        with fs.open(path, "rb") as fh:
            table = pq.read_table(fh)
        if column not in table.column_names:
            raise BadSource(f"the dataset {name} has no '{column}' column (columns: {', '.join(table.column_names)})")
        keep = [c for c in (column, "gold", "category") if c in table.column_names]
        records += [(f"{path.rsplit('/', 1)[-1]} row {i}", r) for i, r in enumerate(table.select(keep).to_pylist())]
    return _record_rows(records, column)


def windows(rows: list[_Row], n_words: int) -> list[_Row]:
    """Consecutive windows of ``n_words`` words of each row, each with the next word as gold."""
    out = []
    for row in rows:
        words = row.text.split()
        for start in range(0, len(words) - n_words, n_words + 1):
            out.append(_Row(" ".join(words[start : start + n_words]), " " + words[start + n_words], row.category))
    return out


def read_source(spec: str, limit: int | None = None, window: int | None = None, column: str = "text") -> Corpus:
    """The prompts of ``spec`` (see the module's docstring), at most ``limit`` of them."""
    if not spec or not spec.strip():
        raise BadSource("no corpus source given")
    if window is not None and window < 1:
        raise BadSource("the window must be at least 1 word")
    if limit is not None and limit < 1:
        raise BadSource("the limit must be at least 1")
    skipped: list[Skipped] = []
    if spec == PROJECT:
        rows, skipped = _file_rows(project_prompts_path(), "text")
    elif spec == BIBLE:
        rows = _bible_rows()
    elif spec == FORTUNES:
        rows = _fortune_rows()
    elif spec.startswith("hf:"):
        rows, skipped = _hf_rows(spec, column)
    else:
        rows, skipped = _file_rows(Path(spec).expanduser(), column)
    if window:
        rows = windows(rows, window)
    if limit is not None:
        rows = rows[:limit]
    prompts = [Prompt(prompt_id(i, r.text, r.gold), r.text, r.gold, r.category) for i, r in enumerate(rows)]
    if not prompts:
        raise BadSource(f"the source '{spec}' gave no prompts" + (f" ({len(skipped)} rows skipped)" if skipped else ""))
    return Corpus(spec, prompts, skipped)
