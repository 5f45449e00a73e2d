"""The Trace page's node graph in a real browser: it renders, a click on a component selects it (in the
graph and in the inspector) and hovering shows its tooltip, and its page runs in an opaque origin (a frame
sandboxed without ``allow-same-origin``), reaching nothing of the app."""

from __future__ import annotations

from tests.browser_support import PROMPT, TRACE_TIMEOUT_MS, assert_no_exception, needs_chromium, wait_for_views

pytestmark = needs_chromium


def graph_frame(page):
    """The frame the graph runs in, once its canvas is drawn."""
    page.frame_locator('iframe[title="node graph"]').locator("canvas").first.wait_for(timeout=60_000)
    assert page.locator('iframe[title="node graph"]').get_attribute("sandbox") == "allow-scripts allow-downloads"
    frames = [f for f in page.frames if f.url == "about:srcdoc"]
    assert len(frames) == 1, [f.url[:60] for f in page.frames]
    return frames[0]


def test_node_graph_runs_apart_from_the_app_and_answers_clicks(server, page):
    page.goto(f"{server}/?prompt={PROMPT.replace(' ', '%20')}")
    wait_for_views(page)
    assert_no_exception(page)
    frame = graph_frame(page)
    # an opaque origin: no access to the app's page, cookies or storage
    assert frame.evaluate("() => window.origin") == "null"
    assert (
        frame.evaluate("() => { try { return String(window.parent.document.title); } catch (e) { return e.name; } }")
        == "SecurityError"
    )
    assert (
        frame.evaluate("() => { try { return String(document.cookie); } catch (e) { return e.name; } }")
        == "SecurityError"
    )
    # the graph: components drawn, and a click on one not chosen yet selects it
    heads = frame.evaluate(
        "() => nodes.get().filter(n => clickable.has(n.id) && n.shape === 'dot'"
        " && !network.getSelectedNodes().includes(n.id)).map(n => n.id)"
    )
    assert heads
    node = heads[0]
    at = frame.evaluate("(id) => network.canvasToDOM(network.getPositions([id])[id])", node)
    canvas = page.frame_locator('iframe[title="node graph"]').locator("canvas").first
    canvas.click(position={"x": at["x"], "y": at["y"]})  # scrolled into view first
    frame.wait_for_function("(id) => network.getSelectedNodes().includes(id)", arg=node, timeout=10_000)
    inspector = page.locator('[data-testid="stSelectbox"]:has-text("Inspect a component") input[role="combobox"]')
    page.wait_for_function(
        "(id) => [...document.querySelectorAll('input[role=\"combobox\"]')].some(e => e.value.startsWith(id))",
        arg=node,
        timeout=60_000,
    )
    assert inspector.input_value().startswith(node)
    # the component panel under the views follows the click: the head's attention pattern
    page.get_by_text(f"{node}: attention pattern").first.wait_for(timeout=120_000)
    canvas.hover(position={"x": at["x"] + 1, "y": at["y"]})
    tooltip = frame.locator("div.vis-tooltip")
    tooltip.wait_for(state="visible", timeout=10_000)
    assert node in tooltip.inner_text()
    assert_no_exception(page)


def test_the_node_graph_saves_as_png(server, page):
    """The graph's "Save as PNG" link downloads the canvas as a PNG image (issue: figures for papers)."""
    page.goto(f"{server}/?prompt=The%20capital%20of%20France%20is")
    page.wait_for_selector('iframe[title="node graph"]', timeout=TRACE_TIMEOUT_MS)
    frame = page.frame_locator('iframe[title="node graph"]')
    frame.locator("canvas").first.wait_for(timeout=TRACE_TIMEOUT_MS)
    page.wait_for_timeout(1000)
    with page.expect_download(timeout=30_000) as info:
        frame.locator("#save-png").click()
    path = info.value.path()
    assert info.value.suggested_filename == "node-graph.png"
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_a_share_link_opens_the_same_view_in_a_fresh_browser(server, browser):
    """A link with non-default settings, opened in a new browser context (no session state), shows them."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    try:
        page = context.new_page()
        page.goto(
            f"{server}/?prompt=The%20capital%20of%20France%20is&weights=l2&mode=attention-kept&controls=false"
            "&size=0.1&component=a3.h2"
        )
        wait_for_views(page)
        assert_no_exception(page)
        checked = page.locator('[data-testid="stRadio"] input:checked')
        values = [checked.nth(i).evaluate("e => e.closest('label').textContent") for i in range(checked.count())]
        assert any("l2" in v for v in values) and any("attention kept" in v for v in values), values
        assert "0.1" in page.locator('[data-testid="stSlider"]').first.inner_text()
        box = page.locator('[data-testid="stSelectbox"]:has-text("Inspect a component") input[role="combobox"]')
        assert box.first.input_value().startswith("a3.h2")
    finally:
        context.close()
