"""Demo mode and the app's configuration in the pages (AppTest). The shared sweep store itself is tested
without Streamlit in :mod:`tests.test_sweep_cache`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ui import state as app_state

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
    # the list says where each loads from (both are embedded)
    assert at.selectbox(key="preset").options == ["smollm2-135m · embedded", "gemma3-270m · embedded"]
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
    configured("debug_panel = true\n")
    at = run()
    assert not at.exception
    debug = [e for e in at.expander if e.label == "Debug"]
    assert debug
    text = " ".join(m.value for m in debug[0].markdown)
    assert "Timings" in text and "Memory" in text and "Sweep cache" in text and "1 of 8 entries" in text


def test_every_page_has_the_frame_and_the_configured_device(configured):
    """The frame in app.py gives every page, the Method page too, the demo banner (once) and the configured
    device, offered as itself (``cuda:1``, not ``auto``)."""
    configured(
        'models = ["smollm2-135m"]\ndefault_model = "smollm2-135m"\ndemo = true\nallow_other_models = false\n'
        'allow_local_paths = false\nallow_uploads = false\ndevice = "cuda:1"\n'
    )
    at = run()
    assert not at.exception
    assert [i.value for i in at.info if "Demo" in i.value] and sum("Demo" in i.value for i in at.info) == 1
    device = at.selectbox(key="device")
    assert device.value == "cuda:1" and "cuda:1" in device.options and "auto" in device.options
    at.switch_page("ui/pages/method.py").run()
    assert not at.exception
    assert sum("Demo" in i.value for i in at.info) == 1
    if not torch.cuda.is_available():  # the sweep asked for the configured device, which is not here
        assert any("CUDA" in e.value for e in at.error), [e.value for e in at.error]
