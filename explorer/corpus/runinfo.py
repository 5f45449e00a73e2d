"""What a results folder holds (``run.json``, :class:`RunInfo`) and when a run may continue in it.

A run's identity is everything that changes its numbers: the model (id, revision, dtype), the source (its
spec, window and column, and the content of its prompts), the ablation modes, every setting of the trace
(``batch_size`` included: batching changes the numbers in the 6th digit), the token frequencies of the
``*_freq`` columns, and whether the run traced every position of its texts (``all_positions``). A rerun
in the same folder resumes only if its identity agrees (:func:`identity_change`) and its source gives the
same prompts (:func:`source_change`). What does not
change the numbers is recorded but not compared: the device, ``--limit`` (a longer limit extends a run),
the run's id, notes.

The source's content is recorded as the SHA-256 of its prompts' ids (each id holds a hash of the prompt's
text and gold: :func:`explorer.corpus.sources.prompt_id`) over the prompts used, with their number, so a
rerun with a larger ``--limit`` is checked on the prompts both runs read.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.atomic import atomic_write_text
from explorer.errors import BadResults

if TYPE_CHECKING:
    from explorer.corpus.sources import Prompt

SCHEMA_VERSION = 1
RUN_FILE = "run.json"
RECORDED_ONLY = ("device", "limit", "notes", "run_id", "source_path", "source_prompts", "source_sha256")
_UNSET = object()


@dataclass
class RunInfo:
    """What a results folder holds. Two runs may share a folder (resume) only if :meth:`identity` agrees
    and the source gives the same prompts. ``run_id``: set by the store, written into every part (so
    the parts of a run replaced by ``--overwrite`` are told apart); ``""`` in folders written before.
    ``all_positions``: the parts hold one row per (text, position, mode) (``corpus --all-positions``,
    :mod:`explorer.corpus.schema`) rather than one per (prompt, mode, size); false in folders written
    before. It is part of the identity: a resume with or without it is refused."""

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
    run_id: str = ""
    source_path: str | None = None
    source_prompts: int | None = None
    source_sha256: str | None = None
    frequencies: str | None = None
    all_positions: bool = False

    def identity(self) -> dict:
        d = asdict(self)
        for k in RECORDED_ONLY:
            d.pop(k)
        return d

    def write(self, folder: Path) -> None:
        atomic_write_text(Path(folder) / RUN_FILE, json.dumps(asdict(self), indent=1), durable=True)

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


def new_run_id() -> str:
    return uuid.uuid4().hex


def prompts_digest(ids: Sequence[str]) -> str:
    """The SHA-256 of a list of prompt ids (the content of the prompts used, in order)."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def _show(value) -> str:
    if value is _UNSET:
        return "not recorded"
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def identity_change(old: RunInfo, new: RunInfo) -> str | None:
    """What differs between the identities of ``old`` and ``new`` (``"settings (batch_size: 32 → 16)"``),
    or ``None``."""
    a, b = old.identity(), new.identity()
    changes = []
    for key in b:
        if a.get(key, _UNSET) == b[key]:
            continue
        if key == "settings" and isinstance(a.get(key), dict):
            sa, sb = a[key], b[key]
            sub = [
                f"{s}: {_show(sa.get(s, _UNSET))} → {_show(sb.get(s, _UNSET))}"
                for s in sorted(set(sa) | set(sb))
                if sa.get(s, _UNSET) != sb.get(s, _UNSET)
            ]
            changes.append(f"settings ({'; '.join(sub)})")
        else:
            changes.append(f"{key} ({_show(a.get(key, _UNSET))} → {_show(b[key])})")
    return ", ".join(changes) or None


def source_change(old: RunInfo, prompts: Sequence[Prompt], stored: dict[int, tuple[str, str]]) -> str | None:
    """Why ``prompts`` (the source as read now) are not the prompts of the run ``old``, or ``None``.
    ``stored``: the prompts in the folder, ``prompt_index -> (prompt_id, text)``."""
    ids = [p.id for p in prompts]
    for index in sorted(stored):
        if index < len(ids) and stored[index][0] != ids[index]:
            return (
                f"prompt {index} was {_show(stored[index][1])!r} and is now {_show(prompts[index].text)!r}"
                f" (id {stored[index][0]} → {ids[index]})"
            )
    if old.source_sha256 is None or old.source_prompts is None:
        return "the run records no content hash of its source (it was written by an older version)"
    n = old.source_prompts
    if len(ids) >= n and prompts_digest(ids[:n]) != old.source_sha256:
        return f"its first {n} prompts are not those the run began with (a prompt not yet traced changed)"
    return None


def merge_source(old: RunInfo, new: RunInfo) -> None:
    """Keep in ``new`` the longer of the two records of the source's prompts (a rerun with a smaller
    ``--limit`` does not shorten what the folder says it was checked against)."""
    if (old.source_prompts or 0) > (new.source_prompts or 0):
        new.source_prompts, new.source_sha256 = old.source_prompts, old.source_sha256
