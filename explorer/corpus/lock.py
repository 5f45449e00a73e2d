"""One writer per results folder: :class:`WriterLock`, an OS-level lock (``filelock``, ``flock`` on POSIX)
on ``.writer.lock`` in the folder, held for a whole run.

A second writer, in another process or in this one (another thread, another store on the same folder), is
refused at once with one line naming the folder and the holder, whose pid, host and start time are in
``.writer.json`` beside the lock. The operating system drops the lock when its process ends, however it
ends (``kill -9`` included), so a stale ``.writer.json`` never blocks the next run. Readers take no lock:
every file they read is replaced atomically.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from explorer.atomic import atomic_write_text
from explorer.errors import BadResults

LOCK_FILE = ".writer.lock"
HOLDER_FILE = ".writer.json"


@dataclass(frozen=True)
class Holder:
    """Who holds a folder's lock: process id, host, when it took the lock, and its command line."""

    pid: int
    host: str
    started: str
    command: str = ""

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.started}"


def read_holder(folder: Path | str) -> Holder | None:
    """The holder recorded in ``folder`` (``None`` if none is, or the record is unreadable)."""
    try:
        data = json.loads((Path(folder) / HOLDER_FILE).read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["started"]), str(data.get("command", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def check_free(folder: Path | str) -> None:
    """Raise the :class:`~explorer.errors.BadResults` of :meth:`WriterLock.acquire` if another run is writing
    ``folder`` now (a check before loading a model; the run itself takes the lock for its whole length)."""
    if Path(folder).is_dir():
        with WriterLock(folder):
            pass


class WriterLock:
    """The write lock of ``folder`` (created if missing). :meth:`acquire` takes it or raises
    :class:`~explorer.errors.BadResults`; :meth:`release` gives it back (both idempotent). A context
    manager too."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self._lock: FileLock | None = None
        self.holder: Holder | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def acquire(self) -> WriterLock:
        if self._lock is not None:
            return self
        if self.folder.exists() and not self.folder.is_dir():
            raise BadResults(f"{self.folder} exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        # thread_local=False: released from whichever thread closes the run; the lock file is kept, as
        # deleting it on release would let two later writers lock two different files of the same name
        lock = FileLock(self.folder / LOCK_FILE, timeout=0, thread_local=False, preserve_lock_file=True)
        try:
            lock.acquire()
        except Timeout:
            holder = read_holder(self.folder)
            who = holder.describe() if holder else "holder unknown: it is starting, or its record is gone"
            raise BadResults(
                f"{self.folder} is being written by another run ({who}); wait for it to end, "
                "or give another output folder"
            ) from None
        self._lock = lock
        self.holder = Holder(
            os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S %z"), " ".join(sys.argv)[:500]
        )
        try:
            atomic_write_text(self.folder / HOLDER_FILE, json.dumps(asdict(self.holder), indent=1))
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        try:
            if read_holder(self.folder) == self.holder:
                (self.folder / HOLDER_FILE).unlink(missing_ok=True)
        except OSError:
            pass
        finally:
            lock.release()

    def __enter__(self) -> WriterLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # a store dropped without close() (a test, a notebook) gives the folder back
        try:
            self.release()
        except Exception:
            pass
