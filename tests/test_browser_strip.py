"""The Text strip page in a real browser: a text in the URL is traced at every position and drawn as a strip of
token chips (SVG, each traced chip labelled with its tooltip's fields); the test saves ``strip_page.png``,
clicks the chip of one token as a user would and lands on the Trace page traced after that token."""

from __future__ import annotations

from urllib.parse import quote

from tests.browser_support import assert_no_exception, needs_chromium, shoot_whole

pytestmark = needs_chromium

TEXT = "The capital of France is Paris."
CHARTS = '[data-testid="stVegaLiteChart"]'
CHIPS = 'svg path[aria-label*="token: "]'  # in the first chart, the strip (the second, the line, has them too)
TIMEOUT_MS = 300_000


def test_strip_page_opens_a_token_on_the_trace_page(server, page, tmp_path):
    page.goto(f"{server}/Strip?text={quote(TEXT)}")
    page.wait_for_selector(f"{CHARTS} {CHIPS}", state="attached", timeout=TIMEOUT_MS)
    page.wait_for_function(f"document.querySelectorAll('{CHARTS} svg').length >= 2", timeout=TIMEOUT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)
    assert_no_exception(page)
    chips = page.locator(CHARTS).first.locator(CHIPS)
    labels = chips.evaluate_all("els => els.map(e => e.getAttribute('aria-label'))")
    assert len(labels) == 6, labels  # "The" has nothing before it to trace; the other six tokens are traced
    shot = shoot_whole(page, tmp_path, "strip_page")
    assert shot.stat().st_size > 20_000

    index = next(i for i, label in enumerate(labels) if "; token: ' France';" in label)  # not "next token: ..."
    chips.nth(index).click()
    page.wait_for_url(lambda u: "/Strip" not in u, timeout=TIMEOUT_MS)
    page.get_by_text("Traced: the prediction after token 3, ' France'").wait_for(timeout=TIMEOUT_MS)
    prompt = page.locator('[data-testid="stSidebar"] textarea[aria-label="Prompt"]')
    assert prompt.input_value() == TEXT
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    assert "position=3" in page.url
    assert_no_exception(page)
