"""The Corpus and Compare pages in a real browser: they draw the shipped results (or the fixture's, see
:mod:`tests.test_corpus_pages`) without an exception; clicking a point of the density/entropy scatter
shows its prompt, and its button opens that prompt on the Trace page. Saves ``compare_page.png`` and
``corpus_page.png``. At 1440 x 900 and 1920 x 1080, with every shipped result loaded, nothing is cut off
on the right (each chart inside the window and inside its own box), sizes on the axes are written as
everywhere else, and in the browser's dark theme the page and its charts are dark with light text
(``{page}_{width}x{height}.png``, ``compare_dark.png``).

The scatter is drawn as SVG, one ``path`` per point, labelled (``aria-label``) with the point's tooltip
fields, so the test clicks the point of a known prompt as a user would.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlencode

import pytest

from explorer.corpus.store import load_results
from explorer.options import DEFAULT_SIZES
from explorer.views.labels import format_size
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


WINDOWS = [(1440, 900), (1920, 1080)]
CUT_OFF = """() => {
    const width = document.documentElement.clientWidth;
    const out = [];
    document.querySelectorAll('[data-testid="stVegaLiteChart"]').forEach((chart, i) => {
        const drawn = chart.querySelector('svg, canvas');
        const box = (drawn || chart).getBoundingClientRect();
        if (box.right > width + 1 || box.left < 0 || chart.scrollWidth > chart.clientWidth + 1)
            out.push({chart: i, left: box.left, right: box.right, window: width,
                      scroll: chart.scrollWidth, client: chart.clientWidth});
    });
    const main = document.querySelector('[data-testid="stMain"]');
    if (main && main.scrollWidth > main.clientWidth + 1) out.push({main: main.scrollWidth, client: main.clientWidth});
    return out;
}"""
TICKS = """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg g.role-axis-label text')]
    .map(t => t.textContent)"""


def all_results_url(server: str, page_name: str) -> tuple[str, int]:
    """The page with every result there is (the shipped ones: four), and how many."""
    paths, shipped = result_folders()
    entries = [p.name if shipped else str(p) for p in paths]
    return f"{server}/{page_name}?" + urlencode([("results", e) for e in entries]), len(entries)


def size_ticks_are_written_one_way(page) -> None:
    """Axis labels that are sizes read as the slider writes them (1e-3, 0.01, 1), never 1e+0 or 1.0e-3."""
    ticks = [t for t in page.evaluate(TICKS) if t]
    assert ticks
    assert not [t for t in ticks if re.fullmatch(r"[0-9.]+e\+\d+|\d\.0e-\d+|[0-9.]+e-0\d", t)], ticks
    sizes = {format_size(s) for s in DEFAULT_SIZES} | {format_size(10.0**e) for e in range(-8, 1)}
    assert {"1e-3", "0.01", "0.1", "1"} <= set(ticks) & sizes


@pytest.mark.parametrize(("width", "height"), WINDOWS)
@pytest.mark.parametrize("page_name", ["Corpus", "Compare"])
def test_nothing_is_cut_off_on_the_right(server, page, tmp_path, page_name, width, height):
    address, n = all_results_url(server, page_name)
    page.set_viewport_size({"width": width, "height": height})
    try:
        page.goto(address)
        wait_for_charts(page, 2 * n if page_name == "Corpus" else n + 1)
        assert_no_exception(page)
        page.wait_for_timeout(1000)  # the charts take their columns' widths
        assert page.evaluate(CUT_OFF) == []
        size_ticks_are_written_one_way(page)
        if page_name == "Corpus":
            assert n < 3 or page.get_by_text("reaching k by s = 0.1").count() >= 1
        shot = shoot_whole(page, tmp_path, f"{page_name.lower()}_{width}x{height}")
        assert shot.stat().st_size > 20_000
    finally:
        page.set_viewport_size({"width": 1500, "height": 1100})


LUMINANCE = """(colour) => {
    const m = colour.match(/[\\d.]+/g).map(Number);
    const lin = m.slice(0, 3).map(c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
}"""


def test_the_dark_theme_follows_the_browser(server, page, tmp_path):
    dark = page.context.browser.new_page(viewport={"width": 1440, "height": 900}, color_scheme="dark")
    try:
        dark.goto(f"{server}/Compare")
        wait_for_charts(dark, 2)
        assert_no_exception(dark)
        background = dark.evaluate(
            "getComputedStyle(document.querySelector('[data-testid=\"stApp\"]')).backgroundColor"
        )
        assert dark.evaluate(f"({LUMINANCE})({json.dumps(background)})") < 0.05, background
        fills = dark.evaluate(
            """() => [...document.querySelectorAll('[data-testid="stVegaLiteChart"] svg g.role-axis-label text')]
                 .slice(0, 20).map(t => getComputedStyle(t).fill)"""
        )
        assert fills and all(dark.evaluate(f"({LUMINANCE})({json.dumps(f)})") > 0.3 for f in fills), fills
        shot = shoot_whole(dark, tmp_path, "compare_dark")
        assert shot.stat().st_size > 20_000
    finally:
        dark.close()
