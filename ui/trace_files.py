"""The Trace page's files (issue "reopen and share"): open a saved trace JSON (an upload, size-capped, or a
path where local paths are allowed) to see every view without the model, and the downloads of the trace on
view: its JSON (reopens here and with ``python -m explorer export``), a standalone HTML report, an
attribution graph for Neuronpedia's viewer, and the component edge list. Files are built when their
button is pressed (``st.download_button`` with a function)."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from explorer.config import AppConfig
from explorer.errors import BadTraceFile, ExplorerError
from explorer.results import Trace
from ui.safe import code, plain

OPENED = "opened_trace"
"""Session state: ``(file name, Trace)`` of the trace opened from a file, shown instead of a computed one."""

MAX_UPLOAD_MB = 50
"""Uploads above this are refused before they are parsed (a trace JSON of 256 tokens on a 135M model is
about 60 MB uncompressed only with the text strip's positions; a single trace is a few MB)."""


def opened_trace() -> tuple[str, Trace] | None:
    return st.session_state.get(OPENED)


def close_opened() -> None:
    st.session_state.pop(OPENED, None)


def open_form(cfg: AppConfig) -> None:
    """The sidebar's "Open a saved trace": an upload and, where allowed, a path; one clear message for a
    file that is not a trace, of another schema version, truncated or too large."""
    if not (cfg.allow_uploads or cfg.allow_local_paths):
        return
    from explorer.trace_file import loads_trace, read_trace

    with st.expander("Open a saved trace", expanded=opened_trace() is not None):
        if cfg.allow_uploads:
            up = st.file_uploader(f"A trace JSON (up to {MAX_UPLOAD_MB} MB)", type=["json"], key="trace_upload")
            if up is not None and st.session_state.get("trace_upload_done") != up.file_id:
                st.session_state["trace_upload_done"] = up.file_id
                try:
                    if up.size > MAX_UPLOAD_MB * 2**20:
                        raise BadTraceFile(f"the file is {up.size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB")
                    st.session_state[OPENED] = (up.name, loads_trace(up.getvalue(), MAX_UPLOAD_MB * 2**20))
                except ExplorerError as exc:
                    st.error(f"{code(up.name)}: {plain(str(exc))}")
        if cfg.allow_local_paths:
            path = st.text_input("or a path on this machine", key="trace_path", placeholder="/path/to/trace.json")
            if st.button("Open", key="trace_path_open", disabled=not path.strip()):
                try:
                    st.session_state[OPENED] = (path.strip(), read_trace(path.strip(), MAX_UPLOAD_MB * 2**20))
                except (ExplorerError, OSError) as exc:
                    st.error(f"{code(path)}: {plain(str(exc))}")
        if opened_trace() is not None:
            st.button("Close the file, back to tracing", key="trace_close", on_click=close_opened)


def downloads(trace: Trace, index: int | Callable[[], int], stem: str) -> None:
    """The trace's files at stratum ``index`` (or at the index ``index()`` gives when a button is pressed):
    JSON, HTML report, Neuronpedia graph, edge list, table. Each file is written when its button is pressed."""
    from explorer import edge_list, neuronpedia
    from explorer.export import to_csv, to_json
    from explorer.views.report import report_html

    def size() -> float:
        return trace.strata[index() if callable(index) else index].size

    cols = st.columns(5)
    cols[0].download_button(
        "Trace (JSON)",
        lambda: to_json(trace),
        f"{stem}.json",
        "application/json",
        key="dl_json",
        help="every size and the edge order; reopens on this page without the model",
    )
    cols[1].download_button(
        "Report (HTML)",
        lambda: report_html(trace, size()),
        f"{stem}.html",
        "text/html",
        key="dl_html",
        help="a standalone page with every view at this size; opens from disk, no server or network",
    )
    cols[2].download_button(
        "Graph (Neuronpedia JSON)",
        lambda: neuronpedia.to_graph(trace, size()).to_json(),
        f"{stem}-graph.json",
        "application/json",
        key="dl_np",
        help="the subgraph at this size in the layout of Neuronpedia's graph viewer",
    )
    cols[3].download_button(
        "Edge list (CSV)",
        lambda: edge_list.to_csv(edge_list.component_links(trace, size())),
        f"{stem}-edges.csv",
        "text/csv",
        key="dl_edges",
        help="component links at this size, named a{layer}.h{head} / m{layer}",
    )
    cols[4].download_button(
        "Per-size table (CSV)",
        lambda: to_csv(trace),
        f"{stem}.csv",
        "text/csv",
        key="dl_csv",
        help="one row per size: edges, TV, shared nucleus, top tokens, the controls' TV",
    )
