"""Shared fixtures: the real embedded SmolLM2 (loaded once per session) and the browser tests' server
and page. Helpers (tiny models, the byte tokenizer) are in ``tests/helpers.py``."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from tests.browser_support import browser, page, server  # noqa: F401 - session fixtures of the browser tests


@pytest.fixture(scope="session")
def smollm():
    from explorer.models.loading import load_model

    return load_model("smollm2-135m", device="cpu", dtype="float32")


_FILE_MARKS = {"test_browser": "browser", "test_ray": "ray"}


def pytest_collection_modifyitems(items):
    """Markers by where a test lives and what it needs (``make test-fast`` deselects them): browser tests,
    Ray tests, ``app`` for Streamlit pages run with AppTest, and ``slow`` for tests of the real embedded model
    (its first load converts it, a minute)."""
    for item in items:
        name = item.path.stem
        for prefix, mark in _FILE_MARKS.items():
            if name.startswith(prefix):
                item.add_marker(getattr(pytest.mark, mark))
        if "smollm" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
        module = getattr(item, "module", None)
        if module is not None and "AppTest" in vars(module) and (name != "test_fuzz" or "page" in item.name):
            item.add_marker(pytest.mark.app)
