"""The Trace page in a real browser: runs a trace of an example prompt, moves the size slider, waits for
the views and saves screenshots. Fails if the page shows an exception."""

from __future__ import annotations

import os
import shutil

from tests.browser_support import (
    PROMPT,
    ROOT,
    SLIDER,
    assert_no_exception,
    needs_chromium,
    shoot,
    slider_value,
    wait_for_views,
)

pytestmark = needs_chromium


def test_trace_page_in_browser(server, page, tmp_path):
    page.goto(f"{server}/?prompt={PROMPT.replace(' ', '%20')}")
    wait_for_views(page)
    assert_no_exception(page)
    frame = page.frame_locator("iframe").first
    frame.locator("canvas").first.wait_for(timeout=60_000)
    before = slider_value(page)
    tv_before = page.locator('[data-testid="stMetric"]', has_text="TV").first.inner_text()
    shoot(page, tmp_path, "trace_page")

    # move the slider to the full graph: focus its range input and press End
    thumb = page.locator(SLIDER).first
    thumb.focus()
    thumb.press("End")
    page.wait_for_timeout(500)
    wait_for_views(page)
    after = slider_value(page)
    assert after != before and after.startswith("s = 1 ")
    page.wait_for_function(
        "([t]) => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
        ".find(e => e.innerText.includes('TV')); return m && m.innerText !== t; }",
        arg=[tv_before],
        timeout=60_000,
    )
    assert_no_exception(page)
    assert "size=1" in page.url
    full = shoot(page, tmp_path, "trace_page_full_size")
    graph = shoot(page, tmp_path, "node_graph", "iframe")
    charts = page.locator('[data-testid="stVegaLiteChart"]')
    dist = charts.nth(0).screenshot(path=str(tmp_path / "distribution.png"))
    curves = charts.nth(2).screenshot(path=str(tmp_path / "curves.png"))
    for name in ("distribution", "curves"):
        if os.environ.get("SAVE_SCREENSHOTS") == "1":
            shutil.copy(tmp_path / f"{name}.png", ROOT / "bench" / "screenshots" / f"{name}.png")
    assert dist and curves
    for p in (full, graph, tmp_path / "distribution.png", tmp_path / "curves.png"):
        assert p.stat().st_size > 5_000, p
