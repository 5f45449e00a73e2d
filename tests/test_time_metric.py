"""The Trace page's "Time": the seconds a visitor waited for a sweep this session computed, and "cached"
with the time it took to fetch for a sweep that came ready from the store (computed by another session),
its first computation under the metric's help rather than as its value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer.sweep_cache import Sweep
from ui.state import time_metric

APP = str(Path(__file__).resolve().parent.parent / "app.py")
PROMPT = "Two plus two makes"  # no other test traces it: the first session here computes it


def test_the_metric_says_cached_and_the_fetch_time():
    fresh = time_metric(Sweep(trace=None, load_s=3.2, trace_s=98.8))  # type: ignore[arg-type]
    assert (fresh["label"], fresh["value"], fresh["delta"]) == ("Time", "98.8 s", "model load 3.2 s")
    cached = time_metric(Sweep(trace=None, load_s=3.2, trace_s=98.8, cached=True, fetch_s=0.012))  # type: ignore[arg-type]
    assert (cached["value"], cached["delta"]) == ("cached", "fetched in 0.01 s")
    assert "98.8 s" in cached["help"] and "98.8" not in cached["value"]


def time_shown(at: AppTest) -> tuple[str, str]:
    found = [m for m in at.metric if m.label == "Time"]
    assert found, [m.label for m in at.metric]
    return found[0].value, found[0].proto.delta


@pytest.mark.slow
def test_a_sweep_from_another_session_shows_as_cached():
    first = AppTest.from_file(APP, default_timeout=600)
    first.query_params["prompt"] = PROMPT
    first.run()
    assert not first.exception, first.exception
    value, delta = time_shown(first)
    assert value.endswith(" s") and delta.startswith("model load")
    first.run()  # a rerun of the session that computed it (a slider move) keeps its time
    assert time_shown(first)[0] == value
    second = AppTest.from_file(APP, default_timeout=600)  # another visitor, same process and store
    second.query_params["prompt"] = PROMPT
    second.run()
    assert not second.exception, second.exception
    value, delta = time_shown(second)
    assert value == "cached" and delta.startswith("fetched in ")
