"""Support for the browser tests: ``streamlit run app.py`` on 127.0.0.1 (one server per test session),
driven by Playwright in Debian's headless Chromium, and helpers to wait for views and save screenshots
(under a temporary folder; also under ``bench/screenshots/`` when ``SAVE_SCREENSHOTS=1``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SLIDER = '[data-testid="stSlider"] input[type="range"]'
PROMPT = "The capital of France is"
TRACE_TIMEOUT_MS = 300_000

needs_chromium = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian chromium (make browser-deps)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "streamlit.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"streamlit exited: {log.read_text()}")
                time.sleep(0.2)
        else:
            pytest.fail(f"streamlit did not start: {log.read_text()}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the whole session (Playwright's sync API allows one per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def page(server, browser):
    pg = browser.new_page(viewport={"width": 1500, "height": 1100})
    yield pg
    pg.close()


def wait_for_views(page) -> None:
    page.wait_for_selector(SLIDER, state="attached", timeout=TRACE_TIMEOUT_MS)
    page.wait_for_selector("iframe", timeout=60_000)
    page.wait_for_function(
        'document.querySelectorAll(\'[data-testid="stVegaLiteChart"] canvas, '
        '[data-testid="stVegaLiteChart"] svg\').length >= 4',
        timeout=60_000,
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(800)


def assert_no_exception(page) -> None:
    exc = page.query_selector_all('[data-testid="stException"]')
    assert not exc, exc[0].inner_text()


def shoot(page, out: Path, name: str, selector: str | None = None) -> Path:
    path = out / f"{name}.png"
    if selector:
        page.locator(selector).first.screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    if os.environ.get("SAVE_SCREENSHOTS") == "1":
        keep = ROOT / "bench" / "screenshots"
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, keep / path.name)
    return path


def slider_value(page) -> str:
    return page.locator('[data-testid="stSlider"] [data-testid="stSliderThumbValue"]').first.inner_text()


def shoot_whole(page, out: Path, name: str) -> Path:
    """A screenshot of the whole page: Streamlit scrolls inside its main block, so the window is made as
    tall as that block for the shot, then put back."""
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height) + 40)})
    page.wait_for_timeout(1500)
    try:
        return shoot(page, out, name)
    finally:
        page.set_viewport_size(size)
