"""The HTML report opened in headless Chromium from a ``file://`` URL with the network off: every chart
draws, the node graph draws in its frame, nothing is requested but the file itself, and no script fails."""

from __future__ import annotations

from explorer.results import Settings
from explorer.trace import trace_prompt
from explorer.views.report import figures, report_html
from tests.browser_support import needs_chromium, shoot
from tests.helpers import tiny_loaded


@needs_chromium
def test_the_report_opens_offline_from_disk(tmp_path, browser):
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, "hello world, again", Settings(sizes=(0.01, 0.05, 0.2, 0.5, 1.0), controls=True))
    path = tmp_path / "report.html"
    path.write_text(report_html(trace, 0.2), encoding="utf-8")
    n_charts = len(figures(trace, 2))
    requests, errors = [], []

    def route(r):
        requests.append(r.request.url)
        if r.request.url.startswith(("file:", "data:", "about:")):
            r.continue_()
        else:
            r.abort()

    context = browser.new_context(offline=True, viewport={"width": 1440, "height": 900})
    try:
        context.route("**/*", route)
        page = context.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.as_uri())
        page.wait_for_function(f"document.querySelectorAll('div.chart svg.marks').length >= {n_charts}", timeout=60_000)
        frame = next(f for f in page.frames if f != page.main_frame)
        frame.wait_for_selector("canvas", timeout=30_000)
        page.wait_for_timeout(500)
        assert page.locator("div.chart").count() == n_charts
        assert not page.locator("div.chart", has_text="chart error").count()
        shoot(page, tmp_path, "report")
    finally:
        context.close()
    assert requests == [path.as_uri()], requests
    assert not errors, errors
