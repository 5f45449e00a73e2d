"""Demo mode and the app's configuration in the pages (AppTest), and the shared sweep store: one
computation per key across sessions, bounded in memory."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import app_state  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TIMEOUT = 600


@pytest.fixture
def configured(monkeypatch, tmp_path):
    """Run the app under a configuration file; restore the defaults afterwards."""

    def use(text: str | None = None, path: Path | None = None):
        if text is not None:
            path = tmp_path / "app.toml"
            path.write_text(text)
        monkeypatch.setenv("STRACE_CONFIG", str(path))
        app_state._config_or_error.clear()
        app_state.sweep_store.clear()

    yield use
    monkeypatch.delenv("STRACE_CONFIG", raising=False)
    app_state._config_or_error.clear()
    app_state.sweep_store.clear()


def run(**query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


def test_demo_mode_limits_models_and_shows_a_banner(configured):
    configured(path=ROOT / "config" / "demo.toml")
    at = run(model="gpt2")
    assert not at.exception
    assert any("Demo" in i.value for i in at.info)
    assert at.selectbox(key="preset").options == ["smollm2-135m", "gemma3-270m"]
    assert at.selectbox(key="preset").value == "smollm2-135m"
    assert any("offers only these models" in w.value for w in at.warning)
    assert not [t for t in at.text_input if t.key == "revision"]
    assert len(at.get("vega_lite_chart")) >= 3  # the default prompt still traces


def test_demo_mode_refuses_an_over_long_prompt(configured):
    configured(path=ROOT / "config" / "demo.toml")
    at = run()
    at.text_area(key="prompt").set_value("word " * 80).run()
    assert not at.exception
    assert any("the limit is 64" in e.value for e in at.error)


def test_local_paths_can_be_turned_off(configured, tmp_path):
    configured('models = ["smollm2-135m"]\ndefault_model = "smollm2-135m"\nallow_local_paths = false\n')
    at = run(model=str(tmp_path))
    assert not at.exception
    assert at.selectbox(key="preset").value.startswith("other")
    assert any("local folders is turned off" in e.value for e in at.error)


def test_bad_configuration_stops_with_a_message(configured):
    configured('max_prompt_tokens = "lots"\n')
    at = run()
    assert not at.exception
    assert any("Configuration error" in e.value and "max_prompt_tokens" in e.value for e in at.error)
    assert not at.get("vega_lite_chart")


def test_debug_panel_shows_timings_memory_and_cache(configured):
    configured('debug_panel = true\n')
    at = run()
    assert not at.exception
    debug = [e for e in at.expander if e.label == "Debug"]
    assert debug
    text = " ".join(m.value for m in debug[0].markdown)
    assert "Timings" in text and "Memory" in text and "Sweep cache" in text and "1 of 8 entries" in text


# the shared store ----------------------------------------------------------------------------------

class _FakeTrace:
    def __init__(self, n):
        self.order = np.zeros(n, dtype=np.int64)
        self.order_weights = np.zeros(n, dtype=np.float32)


def _sweep(n: int) -> app_state.Sweep:
    return app_state.Sweep(_FakeTrace(n), None, 0.0, 0.0)


def test_store_computes_each_key_once_for_concurrent_sessions():
    store = app_state.SweepStore()
    calls, waits = [], []

    def compute():
        calls.append(1)
        time.sleep(0.2)
        return _sweep(10)

    got = []
    threads = [threading.Thread(target=lambda: got.append(store.get_or_compute(("k",), compute, lambda: waits.append(1))))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 6 and all(g is got[0] for g in got) and len(waits) == 5


def test_store_retries_after_a_failed_computation():
    store = app_state.SweepStore()

    def fail():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.get_or_compute(("k",), fail)
    assert store.get_or_compute(("k",), lambda: _sweep(1)) is store.get(("k",))


def test_store_is_bounded_in_entries_and_bytes():
    store = app_state.SweepStore(max_entries=3, max_bytes=3 * (12 * 1000 + 64 * 1024))
    for i in range(5):
        store.put((i,), _sweep(1000))
    assert list(store.items) == [(2,), (3,), (4,)]
    store.put(("big",), _sweep(100_000))  # over the byte bound alone: kept, the others go
    assert list(store.items) == [("big",)]
