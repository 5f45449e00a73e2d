"""The Prompt pairs page in a real browser at 1440 x 900: a user presses Run on the default clean / corrupted
pair, and the transfer chart (B's own TV beside A's subgraphs on B), the component diff and the layer x head
grid are drawn, with no exception; the test saves ``pairs_page.png`` (the whole page)."""

from __future__ import annotations

from tests.browser_support import assert_no_exception, needs_chromium, shoot_whole

pytestmark = needs_chromium

CHARTS = '[data-testid="stVegaLiteChart"]'
TIMEOUT_MS = 300_000


def marks(page, text: str) -> int:
    """How many drawn marks of the page's charts have ``text`` in their label (their tooltip's fields)."""
    return page.locator(f'{CHARTS} svg [aria-label*="{text}"]').count()


def test_pairs_page_runs_a_pair_and_draws_both_charts(server, page, tmp_path):
    size = page.viewport_size
    page.set_viewport_size({"width": 1440, "height": 900})
    try:
        page.goto(f"{server}/Pairs")
        page.get_by_role("button", name="Run").click(timeout=TIMEOUT_MS)
        page.get_by_text("Components in both and in one").wait_for(timeout=TIMEOUT_MS)
        page.wait_for_function(f"document.querySelectorAll('{CHARTS} svg').length >= 6", timeout=TIMEOUT_MS)
        page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
        page.wait_for_timeout(1000)
        assert_no_exception(page)
        assert page.get_by_text("A's subgraphs on B", exact=True).count() == 1
        # the transfer chart: both curves' points; the diff: its three counts; the grid: cells in both traces
        assert marks(page, "series: A's subgraph on B") > 5 and marks(page, "series: B's own trace") > 5
        assert marks(page, "category: only A") > 5 and marks(page, "category: both") > 5
        assert marks(page, "name: a0.h0") == 2  # one cell in A's grid, one in B's
        assert "a=When+Mary" in page.url or "a=When%20Mary" in page.url
        shot = shoot_whole(page, tmp_path, "pairs_page")
        assert shot.stat().st_size > 20_000
        assert_no_exception(page)
    finally:
        page.set_viewport_size(size)
