"""The Trace page in a real browser, at a laptop's 1440 x 900 and at 1920 x 1080: the slider is moved across
every size, and at each one the page shows no exception, the composition chart has its two bars (one
above the other) with a legend each, the inspector keeps the component a click in the node graph chose
(saying so where this size's trace does not hold it), the graph highlights it, and the graph's axis labels
stay where they were; the views below the first screen follow the slider once scrolled into view.
Screenshots of a few sizes are saved under the test's temporary folder."""

from __future__ import annotations

import json
import re

import pytest

from tests.browser_support import (
    PROMPT,
    SLIDER,
    TRACE_TIMEOUT_MS,
    assert_no_exception,
    needs_chromium,
    shoot,
    shoot_whole,
    slider_value,
)

pytestmark = needs_chromium

INSPECTOR = '[data-testid="stSelectbox"]:has-text("Inspect a component")'
COMPOSITION = '[data-testid="stVegaLiteChart"]:has-text("by layer quarter")'


def graph_frame(page):
    """The node graph's frame (sandboxed, ``about:srcdoc``), once it has drawn a graph."""
    page.wait_for_selector('iframe[title="node graph"]', timeout=TRACE_TIMEOUT_MS)
    for _ in range(200):
        frames = [f for f in page.frames if f.url == "about:srcdoc"]
        if frames and frames[0].evaluate("() => typeof nodes !== 'undefined' && nodes.length > 0"):
            return frames[0]
        page.wait_for_timeout(100)
    raise AssertionError("the node graph was not drawn")


def drawn(frame) -> int:
    return int(frame.evaluate("() => Number(document.body.getAttribute('data-drawn') || 0)"))


def settled(page, frame, before: int) -> None:
    """Wait for the rerun a slider move or a click started: the graph drawn again (at the slider's size),
    the page idle."""
    frame.wait_for_function(  # polled on a timer: a frame out of view gets no animation frames
        "(n) => Number(document.body.getAttribute('data-drawn') || 0) > n", arg=before, polling=50, timeout=60_000
    )
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(300)
    size = slider_value(page).split(" \u00b7 ")[0].removeprefix("s = ")
    assert frame.evaluate("() => document.body.getAttribute('data-size')") == size


def axis_labels(frame) -> str:
    return json.dumps(frame.evaluate("() => nodes.get().filter(n => n.axis).map(n => [n.id, n.label, n.x, n.y])"))


def inspector_text(page) -> str:
    """The inspector's choice, as its box shows it."""
    return page.locator(INSPECTOR).first.locator('input[role="combobox"]').input_value().strip()


def composition_bars(page) -> list[dict]:
    """The composition chart's bar groups (vega's SVG ``g.mark-rect``) and legends: their boxes."""
    chart = page.locator(COMPOSITION).first
    bars = chart.locator("g.mark-rect")
    boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
    legends = chart.locator("g.role-legend").count()
    assert legends == 2, f"{legends} legends"
    return [b for b in boxes if b]


def entry_sizes(frame) -> dict[str, float]:
    """Each component drawn -> the size it entered at, from its tooltip."""
    titles = frame.evaluate("() => nodes.get().filter(n => clickable.has(n.id)).map(n => [n.id, n.title])")
    out = {}
    for name, title in titles:
        found = re.search(r"entered at s = ([0-9.e-]+)", title)
        if found:
            out[name] = float(found.group(1))
    return out


def click_node(page, frame, name: str) -> None:
    at = frame.evaluate("(id) => network.canvasToDOM(network.getPositions([id])[id])", name)
    page.frame_locator('iframe[title="node graph"]').locator("canvas").first.click(
        position={"x": at["x"], "y": at["y"]}
    )


@pytest.mark.parametrize("width,height", [(1440, 900), (1920, 1080)])
def test_every_size_reads_right(server, page, tmp_path, width, height):
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{server}/?prompt={PROMPT.replace(' ', '%20')}")
    page.wait_for_selector(SLIDER, state="attached", timeout=TRACE_TIMEOUT_MS)
    frame = graph_frame(page)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    assert_no_exception(page)
    slider = page.locator(SLIDER).first
    # the full graph, where every component is present; pick one that enters at a middle size
    before = drawn(frame)
    slider.focus()
    slider.press("End")
    settled(page, frame, before)
    entered = entry_sizes(frame)
    sizes = sorted(set(entered.values()))
    assert len(sizes) > 2, sizes
    middle = sizes[len(sizes) // 2]
    name = sorted(n for n, s in entered.items() if s == middle)[0]
    before = drawn(frame)
    click_node(page, frame, name)
    settled(page, frame, before)
    assert inspector_text(page).startswith(name), inspector_text(page)
    assert frame.evaluate("() => network.getSelectedNodes()") == [name]
    labels = axis_labels(frame)
    assert '"h0"' in labels and '"MLP"' in labels and '"L0"' in labels

    # from the smallest size to the full graph, one step at a time
    before = drawn(frame)
    slider.focus()
    slider.press("Home")
    settled(page, frame, before)
    seen, absent, present = [], 0, 0
    while True:
        value = slider_value(page)
        seen.append(value)
        assert_no_exception(page)
        assert axis_labels(frame) == labels, value
        text = inspector_text(page)
        assert text.startswith(name), (value, text)
        size = float(value.split(" \u00b7 ")[0].removeprefix("s = "))
        if size < middle:
            absent += 1
            assert "not in the trace" in text, (value, text)
            assert page.locator('[data-testid="stAlert"]', has_text=f"{name} is not in the trace").count() == 1
        else:
            present += 1
            assert "not in the trace" not in text, (value, text)
            assert frame.evaluate("() => network.getSelectedNodes()") == [name], value
        bars = composition_bars(page)
        assert len(bars) == 2 and bars[0]["y"] + bars[0]["height"] <= bars[1]["y"], (value, bars)
        if len(seen) in (1, 8) or value.startswith("s = 1 "):
            tag = f"{width}x{height}_{len(seen):02d}"
            shoot(page, tmp_path, f"trace_{tag}")
            shoot(page, tmp_path, f"graph_{tag}", 'iframe[title="node graph"]')
            shoot(page, tmp_path, f"composition_{tag}", COMPOSITION)
        if value.startswith("s = 1 "):
            break
        before = drawn(frame)
        slider.focus()
        slider.press("ArrowRight")
        settled(page, frame, before)
        assert slider_value(page) != value, value
    assert absent and present, (absent, present)
    # each bar has its tooltip
    for box, group in zip(composition_bars(page), ("by kind", "by layer quarter")):
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        tip = page.locator("#vg-tooltip-element")
        page.wait_for_function(
            "(g) => { const t = document.querySelector('#vg-tooltip-element');"
            " return t && t.classList.contains('visible') && t.innerText.includes(g); }",
            arg=group,
            timeout=10_000,
        )
        assert "share" in tip.inner_text()
    assert len(set(seen)) == len(seen) > 10
    whole = shoot_whole(page, tmp_path, f"trace_whole_{width}x{height}")
    assert whole.stat().st_size > 20_000
    print(f"screenshots in {tmp_path}")


def view_drawn(page) -> str:
    """The view the views below the first screen were last drawn for (their follower's key)."""
    return page.locator("span[data-view]").first.get_attribute("data-view") or ""


def wait_for_view(page, check, timeout_s: float = 60) -> str:
    """The follower's key once ``check(key)`` holds (and the page is idle)."""
    for _ in range(int(timeout_s * 10)):
        key = view_drawn(page)
        if check(key):
            page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
            return key
        page.wait_for_timeout(100)
    raise AssertionError(f"the views below stayed drawn for {view_drawn(page)}")


def test_the_views_below_follow_the_slider_once_shown(server, page):
    """A slider move re-draws the views on screen; "Error against size", the token graph and the downloads,
    below the first screen at 1440 x 900, are drawn at the slider's size when scrolled into view (at the
    full graph the target's probability is the full model's), and at once while they are in view."""
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{server}/?prompt={PROMPT.replace(' ', '%20')}")
    page.wait_for_selector(SLIDER, state="attached", timeout=TRACE_TIMEOUT_MS)
    frame = graph_frame(page)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    first = view_drawn(page)
    group, index = first.rsplit(":", 1)
    slider = page.locator(SLIDER).first
    before = drawn(frame)
    slider.focus()
    slider.press("End")
    settled(page, frame, before)
    page.wait_for_timeout(500)
    assert view_drawn(page) == first, "drawn again while out of view"
    page.get_by_text("Error against size").first.scroll_into_view_if_needed()
    shown = wait_for_view(page, lambda key: key != first)
    assert shown.split(":")[0] == group and int(shown.rsplit(":", 1)[1]) > int(index), (first, shown)
    target = page.locator('[data-testid="stMetric"]', has_text="P(target) here").first.inner_text().split("\n")
    value, full = [t.strip() for t in target if t.strip()][1:3]
    assert full == f"full: {value}", target
    # while they are in view, a move re-draws them as well
    page.keyboard.press("Home")
    wait_for_view(page, lambda key: key == f"{group}:0")
    assert_no_exception(page)
