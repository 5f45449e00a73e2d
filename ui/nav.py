"""The app's pages for ``st.navigation``, and the hand-off that opens a prompt on the Trace page from
another page (a point of a corpus scatter, a section of the Method page, a token of a text strip).

Each page keeps the address it had as a file under ``pages/``: ``/`` (Trace a prompt), ``/Corpus``,
``/Compare`` and ``/Method``; the Text strip is at ``/Strip``, Prompt pairs at ``/Pairs``. Query parameters
on them reproduce a view.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

OPEN_REQUEST = "open_trace_request"


@dataclass(frozen=True)
class PageSpec:
    """One page: its file (relative to ``app.py``), its title in the navigation and its URL path."""

    file: str
    title: str
    url_path: str


TRACE = PageSpec("ui/pages/trace.py", "Trace a prompt", "trace")
CORPUS = PageSpec("ui/pages/corpus.py", "Corpus", "Corpus")
COMPARE = PageSpec("ui/pages/compare.py", "Compare", "Compare")
METHOD = PageSpec("ui/pages/method.py", "Method", "Method")
STRIP = PageSpec("ui/pages/strip.py", "Text strip", "Strip")
PAIRS = PageSpec("ui/pages/pairs.py", "Prompt pairs", "Pairs")
PAGES = (TRACE, CORPUS, COMPARE, METHOD, STRIP, PAIRS)


def page(spec: PageSpec) -> st.Page:
    """The ``st.Page`` of ``spec``; the Trace page is the default one, at the app's root."""
    return st.Page(spec.file, title=spec.title, url_path=spec.url_path, default=spec is TRACE)


def pages() -> list[st.Page]:
    """Every page, in the navigation's order."""
    return [page(spec) for spec in PAGES]


def open_in_trace_page(
    model: str,
    prompt: str,
    mode: str | None = None,
    weighting: str | None = None,
    position: int | None = None,
    target: str | None = None,
    foil: str | None = None,
) -> None:
    """Switch to the Trace page showing ``prompt`` on ``model`` (and the given mode and weighting), traced
    at ``position`` (``None``: the last) with ``target`` and ``foil`` (``None``: the defaults)."""
    st.session_state[OPEN_REQUEST] = {
        "model": model,
        "prompt": prompt,
        "mode": mode,
        "weighting": weighting,
        "position": position,
        "target": target,
        "foil": foil,
    }
    st.switch_page(page(TRACE))


def take_open_request() -> dict | None:
    """The pending request of :func:`open_in_trace_page`, removed from the session; ``None`` if none."""
    return st.session_state.pop(OPEN_REQUEST, None)
