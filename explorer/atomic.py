"""Atomic file writes: a uniquely named temporary file in the target's folder, then a rename, so a reader
sees the old file or the new one, never a part, and concurrent writers never share a temporary name.

``durable=True`` also flushes the file to the disk before the rename and the folder after it, so that a
power cut cannot leave a renamed but empty file; ``check`` inspects the finished temporary file before it
is renamed (a failed check leaves the old file in place)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def _read_umask() -> int:
    mask = os.umask(0o022)  # read once, at import: os.umask is process-wide, not safe to flip in threads
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def fsync_file(path: str | os.PathLike) -> None:
    """Flush ``path``'s data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder: str | os.PathLike) -> None:
    """Flush ``folder``'s entries (renames, new and removed files) to the disk, where the OS allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some systems cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    write: Callable[[str], None],
    *,
    durable: bool = False,
    check: Callable[[str], None] | None = None,
) -> None:
    """Call ``write(tmp_path)`` to fill a temporary file beside ``path``, then ``check(tmp_path)`` if
    given, then rename it over ``path``. The temporary file is removed if ``write`` or ``check`` fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; the file gets what open() would give it
    try:
        write(tmp)
        if durable:
            fsync_file(tmp)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if durable:
        fsync_folder(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str, *, durable: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""

    def write(tmp: str) -> None:
        Path(tmp).write_text(text, encoding="utf-8")

    atomic_write(path, write, durable=durable)
