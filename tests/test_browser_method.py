"""The Method page in a real browser, read top to bottom as a new user would: waits for its live figures,
checks there is no exception, and saves full-page screenshots (and one per section)."""

from __future__ import annotations

from tests.browser_support import assert_no_exception, needs_chromium, shoot_whole

pytestmark = needs_chromium

N_CHARTS = 8  # the Method page's Altair figures
SECTIONS = [
    "1. The token-level graph",
    "2. Edge weights",
    "3. Greedy search and nested sizes",
    "4. Zero ablation, in two modes",
    "5. Total variation and shared nucleus",
    "6. The controls",
    "7. Density",
    "8. Construction and refinement",
    "9. The Trace page's settings",
]


def wait_for_figures(page) -> None:
    page.get_by_text(SECTIONS[-1]).wait_for(timeout=300_000)
    page.wait_for_function(
        f'document.querySelectorAll(\'[data-testid="stVegaLiteChart"] canvas, '
        f'[data-testid="stVegaLiteChart"] svg\').length >= {N_CHARTS}',
        timeout=60_000,
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(800)


def test_method_page_in_browser(server, page, tmp_path):
    page.goto(f"{server}/Method")
    wait_for_figures(page)
    assert_no_exception(page)
    headings = page.locator("h3").all_inner_texts()
    assert [h for h in headings if h[:2] in {f"{i}." for i in range(1, 10)}] == SECTIONS
    text = page.locator('[data-testid="stMain"]').inner_text()
    assert "Paris" in text and "density" in text
    full = shoot_whole(page, tmp_path, "method_page")
    assert full.stat().st_size > 200_000

    # a new prompt: the figures are computed again, and the page still has no exception
    box = page.get_by_label("Prompt (short: a few tokens)")
    box.fill("Two plus two is")
    box.press("Enter")
    page.wait_for_function(
        "document.querySelector('[data-testid=\"stMain\"]').innerText.includes('0: Two')", timeout=300_000
    )
    wait_for_figures(page)
    assert_no_exception(page)
    assert page.locator('[data-testid="stMain"]').inner_text() != text
    shoot_whole(page, tmp_path, "method_page_other_prompt")
