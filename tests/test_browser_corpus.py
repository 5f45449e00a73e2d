"""The Corpus and Compare pages in a real browser: they draw the shipped results (or the fixture's, see
:mod:`tests.test_corpus_pages`) without an exception; clicking a point of the density/entropy scatter
shows its prompt, and its button opens that prompt on the Trace page. Saves ``compare_page.png`` and
``corpus_page.png``.

The scatter is drawn as SVG, one ``path`` per point, labelled (``aria-label``) with the point's tooltip
fields, so the test clicks the point of a known prompt as a user would.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from explorer.corpus.store import load_results
from tests.browser_support import assert_no_exception, needs_chromium, shoot_whole
from tests.test_corpus_pages import first_shown, pick_point, result_folders

pytestmark = needs_chromium

CHARTS = '[data-testid="stVegaLiteChart"]'
POINTS = f'{CHARTS} svg path[aria-label*="prompt: "]'
TIMEOUT_MS = 180_000


def url(server: str, page_name: str, how_many: int) -> str:
    """The page's address: plain where shipped results exist, else with the fixture's folders (the
    Corpus page's first, or the first ``how_many``)."""
    paths, shipped = result_folders()
    if shipped:
        return f"{server}/{page_name}"
    chosen = [first_shown(paths, shipped)] if how_many == 1 else paths[:how_many]
    return f"{server}/{page_name}?" + urlencode([("results", str(p)) for p in chosen])


def wait_for_charts(page, n: int) -> None:
    page.wait_for_function(
        f"document.querySelectorAll('{CHARTS} svg, {CHARTS} canvas').length >= {n}", timeout=TIMEOUT_MS
    )
    page.wait_for_selector(POINTS, state="attached", timeout=TIMEOUT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(800)


def test_compare_page_in_browser(server, page, tmp_path):
    paths, _ = result_folders()
    page.goto(url(server, "Compare", 2))
    if len(paths) < 2:
        page.wait_for_selector("text=two or more", timeout=TIMEOUT_MS)
        return
    wait_for_charts(page, 2)
    assert_no_exception(page)
    assert page.locator('[data-testid="stDataFrame"]').count() >= 1
    assert page.get_by_text("Spearman's rho across models").count() == 1
    shot = shoot_whole(page, tmp_path, "compare_page")
    assert shot.stat().st_size > 20_000


def test_corpus_page_point_opens_the_trace_page(server, page, tmp_path):
    paths, shipped = result_folders()
    results = load_results(first_shown(paths, shipped))
    prompts = results.prompts[results.prompts["mode"] == "all"]
    text = pick_point(prompts[~prompts["text"].str.contains(";|\n")])["text"]

    page.goto(url(server, "Corpus", 1))
    wait_for_charts(page, 4)
    assert_no_exception(page)
    # the point of that prompt in mode "all": its SVG path, labelled with the tooltip's fields
    index = page.evaluate(
        """([sel, text]) => [...document.querySelectorAll(sel)].findIndex(e => {
               const l = e.getAttribute('aria-label');
               return l.includes('prompt: ' + text + ';') && l.includes('ablation mode: all;'); })""",
        [POINTS, text],
    )
    assert index >= 0, f"no point for {json.dumps(text)}"
    page.locator(POINTS).nth(index).click()
    page.wait_for_selector("text=Selected prompt", timeout=TIMEOUT_MS)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    assert page.locator('[data-testid="stText"]').first.inner_text() == text
    assert_no_exception(page)
    shot = shoot_whole(page, tmp_path, "corpus_page")
    assert shot.stat().st_size > 20_000

    page.get_by_role("button", name="Open on the Trace page").click()
    page.wait_for_url(lambda u: "/Corpus" not in u, timeout=TIMEOUT_MS)
    prompt = page.locator('[data-testid="stSidebar"] textarea[aria-label="Prompt"]')
    prompt.wait_for(timeout=TIMEOUT_MS)
    assert prompt.input_value() == text
    assert_no_exception(page)
