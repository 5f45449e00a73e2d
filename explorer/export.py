"""Files of a :class:`explorer.results.Trace`: the whole trace as JSON, the per-size table as CSV."""

from __future__ import annotations

import csv
import io
import os

from explorer.atomic import atomic_write_text
from explorer.results import Trace, table_rows


def to_json(trace: Trace, indent: int | None = 1) -> str:
    """:meth:`Trace.to_json`: settings, tokens, strata with their metrics, per-component edge counts."""
    return trace.to_json(indent=indent)


def write_json(trace: Trace, path: str | os.PathLike) -> None:
    """Write :func:`to_json` atomically (a temporary file, then a rename)."""
    atomic_write_text(path, to_json(trace))


def to_csv(trace: Trace) -> str:
    """:func:`explorer.results.table_rows` as CSV text."""
    rows = table_rows(trace)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()
