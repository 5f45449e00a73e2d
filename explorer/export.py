"""Export a :class:`explorer.trace.Trace`: the whole trace as JSON, the per-size table as rows/CSV."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from explorer.trace import Trace


def to_json(trace: Trace, indent: int | None = 1) -> str:
    """Settings, tokens, strata with their metrics, per-component edge counts (``a{l}.h{h}`` / ``m{l}``)."""
    return json.dumps(trace.to_dict(), indent=indent, ensure_ascii=False)


def write_json(trace: Trace, path: str | os.PathLike) -> None:
    """Write :func:`to_json` atomically (a temporary file, then a rename)."""
    _atomic_write(Path(path), to_json(trace))


def table_rows(trace: Trace) -> list[dict]:
    """One row per size: edges, TV, shared nucleus, entropy, top-1 token, edge kinds, and each other
    variant's TV and shared nucleus."""
    rows = []
    for s in trace.strata:
        row = {
            "size": s.size,
            "edges": s.n_edges,
            "tv": s.trace.tv,
            "shared_nucleus": s.trace.shared_nucleus,
            "entropy": s.trace.entropy,
            "top1": s.trace.top[0].token,
            "top1_prob": s.trace.top[0].prob,
            "gold_ce": s.trace.gold_ce,
            **{f"{k}_edges": v for k, v in s.kinds.items()},
        }
        for variant, out in s.outputs.items():
            if variant != "trace":
                row[f"tv_{variant}"] = out.tv
                row[f"shared_nucleus_{variant}"] = out.shared_nucleus
        rows.append(row)
    return rows


def to_csv(trace: Trace) -> str:
    rows = table_rows(trace)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
