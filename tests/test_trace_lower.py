"""The Trace page's views below the first screen (ui/trace_lower.py): a slider move leaves them as they are
until they are shown (ui/view_sync.py), so the downloads drawn with them write their files at the size the
slider shows when a button is pressed, not at the size they were drawn for. The browser's side:
tests/test_browser_trace.py."""

from __future__ import annotations

import pytest
from streamlit.delta_generator import DeltaGenerator

from explorer import Settings, edge_list, trace_prompt
from explorer.views.report import report_html
from tests.helpers import tiny_loaded
from ui import trace_files, view_sync


@pytest.fixture(scope="module")
def trace():
    lm, _ = tiny_loaded("llama")
    return trace_prompt(lm, "hello world, again", Settings(sizes=(0.01, 0.05, 0.2, 0.5, 1.0)))


def test_downloads_write_the_size_the_slider_shows_when_pressed(trace, monkeypatch):
    pressed = {}

    def download_button(self, label, data, *args, **kwargs):
        pressed[label] = data

    monkeypatch.setattr(DeltaGenerator, "download_button", download_button)
    shown = {"index": 0}
    trace_files.downloads(trace, lambda: shown["index"], "s-trace")
    assert set(pressed) == {
        "Trace (JSON)",
        "Report (HTML)",
        "Graph (Neuronpedia JSON)",
        "Edge list (CSV)",
        "Per-size table (CSV)",
    }
    files = []
    for index in (1, len(trace.strata) - 1):
        shown["index"] = index  # the slider moved after the buttons were drawn
        size = trace.strata[index].size
        got = pressed["Edge list (CSV)"]()
        assert got == edge_list.to_csv(edge_list.component_links(trace, size))
        assert pressed["Report (HTML)"]() == report_html(trace, size)
        files.append(got)
    assert files[0] != files[1]


def test_a_fixed_index_still_writes_that_size(trace, monkeypatch):
    pressed = {}
    monkeypatch.setattr(
        DeltaGenerator, "download_button", lambda self, label, data, *a, **k: pressed.update({label: data})
    )
    trace_files.downloads(trace, 1, "s-trace")
    assert pressed["Edge list (CSV)"]() == edge_list.to_csv(edge_list.component_links(trace, trace.strata[1].size))


def test_a_view_key_names_its_group():
    """A follower ignores keys of another group (another trace's slider): the group is the key's head."""
    key = view_sync.view_key("size-123", 4)
    assert key == "size-123:4" and key.split(":")[0] == "size-123"
