"""The Trace page's views below the first screen: "Error against size" (with the target and foil), the
token graph and the downloads. They are a Streamlit fragment of their own that follows the size slider
when in view (:mod:`ui.view_sync`): a slider move re-draws the views on screen, and these when the page is
scrolled to them (or at once where they are in view). The downloads write the files at the size the slider
shows when a button is pressed.
"""

from __future__ import annotations

import streamlit as st

from explorer.sweep_cache import Sweep
from ui import trace_files, trace_target, trace_views, view_sync
from ui.state import view


@view(
    "Error against size",
    "Each line: how far the subgraph's prediction is from the full model's as it grows; "
    "the s-trace should sit well below the random control. Red dashes: the slider's size. " + trace_target.CAPTION,
)
def draw_curves(sweep: Sweep, index: int) -> None:
    trace_target.draw_target(sweep, index)
    trace_views.draw_curves(sweep.trace, index, most=2)


@st.fragment
def lower_views(sweep: Sweep, probes: tuple[str | None, str | None]) -> None:
    """The views below the first screen, at the slider's size. A new target or foil (``probes`` were the
    sweep's) re-runs the whole page, which traces again."""
    if trace_target.target_and_foil() != probes:
        st.rerun()
    tr = sweep.trace
    index = trace_views.shown_index(tr)
    view_sync.follow(trace_views.view_key(tr, index))
    draw_curves(sweep, index)
    trace_views.draw_token_graph(sweep, index)
    st.subheader("Export")
    trace_files.downloads(tr, trace_views.index_now(tr), "s-trace")
