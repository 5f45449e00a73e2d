"""Where the Corpus page's runs go, and the names the pages give them (in the sidebar, the URL and the
messages) instead of the server's paths.

A run without an output folder goes under the runs folder (:func:`runs_root`, ``<cache>/runs``); in demo
mode under a folder of the visitor's own session (``runs/sessions/<random id>``, the id kept in the
session), so that no visitor's run replaces another's. A folder under the runs folder is named
``runs/<path relative to it>`` (:func:`run_name`); such a name, in the URL too, opens that folder, and no
other path (one that leaves the runs folder) is taken from it (:func:`run_folder`). The shipped results are
read-only (:func:`is_shipped`).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import streamlit as st

from explorer.config import AppConfig
from explorer.corpus.runinfo import RUN_FILE
from explorer.corpus.store import shipped_root
from explorer.models.loading import cache_dir

PREFIX = "runs/"
SESSION_ID = "corpus_session_id"


def runs_root() -> Path:
    """The folder the Corpus page's runs go under."""
    return cache_dir() / "runs"


def session_id() -> str:
    """This session's random id (made on first use, kept in the session)."""
    return st.session_state.setdefault(SESSION_ID, secrets.token_hex(8))


def runs_folder(cfg: AppConfig) -> Path:
    """Where this session's runs without an output folder go: the runs folder, or in demo mode a folder of
    this session's own under it."""
    return runs_root() / "sessions" / session_id() if cfg.demo else runs_root()


def _inside(folder: Path, root: Path) -> bool:
    folder, root = folder.resolve(), root.resolve()
    return folder != root and root in folder.parents


def run_name(folder: Path | str) -> str:
    """``runs/<path relative to the runs folder>`` for a folder under it, else the folder's path."""
    folder = Path(folder)
    if not _inside(folder, runs_root()):
        return str(folder)
    return PREFIX + folder.resolve().relative_to(runs_root().resolve()).as_posix()


def run_folder(name: str) -> Path | None:
    """The folder a :func:`run_name` names, under the runs folder; ``None`` for any other name, one whose
    path leaves the runs folder too."""
    if not name.startswith(PREFIX) or "\\" in name or "\x00" in name:
        return None
    try:
        folder = (runs_root() / name[len(PREFIX) :]).resolve()
    except (OSError, ValueError, RuntimeError):
        return None
    return folder if _inside(folder, runs_root()) else None


def is_run(name: str) -> bool:
    """Whether ``name`` names a results folder under the runs folder (a name from the URL is taken only
    then)."""
    folder = run_folder(name)
    return folder is not None and (folder / RUN_FILE).is_file()


def is_shipped(folder: Path | str) -> bool:
    """Whether ``folder`` is (or is inside) the shipped results, which no run may write to."""
    folder, root = Path(folder).expanduser().resolve(), shipped_root().resolve()
    return folder == root or root in folder.parents


def display_name(folder: Path | str) -> str:
    """How a message names a results folder: a shipped one by its name, one under the runs folder by its
    :func:`run_name`, any other by its path."""
    folder = Path(folder)
    if is_shipped(folder) and folder.resolve() != shipped_root().resolve():
        return folder.resolve().relative_to(shipped_root().resolve()).as_posix()
    return run_name(folder)


def short_paths(text: str) -> str:
    """``text`` (a message) with the runs folder's path written ``runs`` (as :func:`run_name` does) and the
    shipped results' ``shipped``: no server path of either is shown."""
    for root, name in ((runs_root(), "runs"), (shipped_root(), "shipped")):
        for form in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
            text = text.replace(form, name)
    return text
