"""The app's navigation in a real browser: the sidebar lists the pages by their titles (and no page named
after a file, such as "app"), each at the address it had before ``st.navigation`` (the Text strip and Prompt
pairs, added since, at ``/Strip`` and ``/Pairs``)."""

from __future__ import annotations

from tests.browser_support import assert_no_exception, needs_chromium

pytestmark = needs_chromium

NAV = '[data-testid="stSidebarNav"]'
LINKS = f'{NAV} [data-testid="stSidebarNavLink"]'
TITLES = ["Trace a prompt", "Corpus", "Compare", "Method", "Text strip", "Prompt pairs"]
PATHS = ["", "Corpus", "Compare", "Method", "Strip", "Pairs"]
TIMEOUT_MS = 180_000


def test_sidebar_navigation_shows_every_page(server, page):
    page.goto(f"{server}/Compare")  # the shipped results: no trace to wait for
    page.wait_for_selector(LINKS, timeout=TIMEOUT_MS)
    page.wait_for_function(f"document.querySelectorAll('{LINKS}').length >= {len(TITLES)}", timeout=TIMEOUT_MS)
    links = page.locator(LINKS)
    assert [t.strip() for t in links.all_inner_texts()] == TITLES
    assert "app" not in [word.lower() for word in page.locator(NAV).inner_text().split()]
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    assert hrefs == [f"{server}/{path}" for path in PATHS], hrefs
    assert page.title() == "Compare · s-Trace Explorer"
    assert_no_exception(page)
