"""Chart panels side by side at the width the page has: the views of :mod:`explorer.views` that draw one
panel per model (or per measure) return them without a width, and :func:`draw_panels` puts them in rows of
columns, each panel filling its column, so that nothing runs off the right edge and no row is left half
empty by fixed-width panels."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

MAX_COLUMNS = 3


def panel_columns(n: int, most: int = MAX_COLUMNS) -> int:
    """How many panels a row holds for ``n`` panels: all of them up to ``most``; four as two rows of two;
    else ``most`` a row."""
    if n <= most:
        return max(n, 1)
    return 2 if n == 4 and most >= 2 else most


def draw_panels(panels: Sequence, most: int = MAX_COLUMNS, key: str | None = None) -> None:
    """Draw ``panels`` (Altair charts) in rows of :func:`panel_columns` columns, each at its column's
    width; ``key``: a prefix for the charts' element keys (``{key}_{i}``)."""
    per_row = panel_columns(len(panels), most)
    for start in range(0, len(panels), per_row):
        row = panels[start : start + per_row]
        for i, (column, chart) in enumerate(zip(st.columns(per_row), row), start=start):
            column.altair_chart(chart, width="stretch", key=f"{key}_{i}" if key else None)
