"""Slider benchmark: how long the Trace page takes to re-draw after a move of the size slider, measured in a
real browser (Debian's headless Chromium, through Playwright) against ``streamlit run app.py``.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.slider_bench                       # 5, 64, 256 tokens
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.slider_bench --tokens 5 --repeats 3
    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.slider_bench --tokens 5,64 --lower  # and with the views below in view

The embedded model (SmolLM2-135M) on the CPU, the page's defaults (l1 weights, mode ``all``, both
controls). For each prompt length the page traces the prompt once (not timed), then the slider is moved
one step into a small size (the stratum nearest 1e-3), a middle one (nearest 0.04) and the full graph,
each ``--repeats`` times (one step away and back; only the moves into the size are counted). A re-draw is
the time from the key press to the page having settled: the script's rerun done (no "running" status),
the header showing the new size, the node graph's frame drawn at the new size, and two animation frames
after that. The median and the largest are printed per size. The page is at its top, as a move leaves it:
the views below the first ones ("Error against size", the token graph, the downloads) are drawn when
scrolled into view, not at a move. With ``--lower`` the same moves are also timed with those views in view
(scrolled to them, the slider keeping the keyboard's focus), until they too are drawn at the new size.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SLIDER = '[data-testid="stSlider"] input[type="range"]'
TEXT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; and "
    "darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God "
    "said, Let there be light: and there was light. And God saw the light, that it was good: and God divided "
    "the light from the darkness. "
)
TARGETS = {"small": 1e-3, "middle": 0.04, "full": 1.0}
THUMB = '[data-testid="stSlider"] [data-testid="stSliderThumbValue"]'
IDLE = "!document.querySelector('[data-testid=\"stStatusWidget\"]')"
SETTLED = (  # the rerun done and the header at the new size
    "(size) => { const m = [...document.querySelectorAll('[data-testid=\"stMetric\"]')]"
    ".find(e => e.innerText.startsWith('Size'));"
    " return " + IDLE + " && m && m.innerText.split(/\\n+/)[1] === size; }"
)


def prompt_of(n_tokens: int) -> str:
    """A prompt of about ``n_tokens`` tokens of the embedded model (Genesis, repeated and cut)."""
    from explorer.models.loading import load_model

    tok = load_model("smollm2-135m", device="cpu", dtype="float32").tokenizer
    ids = tok(TEXT * (1 + n_tokens // 40))["input_ids"][:n_tokens]
    return str(tok.decode(ids)).strip()


def start_server() -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1"]
    cmd += ["--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    cmd += ["--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("streamlit did not start")


def graph_frame(page):
    for _ in range(3000):
        frames = [f for f in page.frames if f.url == "about:srcdoc"]
        if frames and frames[0].evaluate("() => typeof nodes !== 'undefined' && nodes.length > 0"):
            return frames[0]
        page.wait_for_timeout(100)
    raise SystemExit("the node graph was not drawn")


def slider_label(page) -> str:
    return page.locator(THUMB).first.inner_text()


def _settled(page, frame, before: str) -> tuple[str, str]:
    """Wait until the slider's label is no longer ``before``, the page has settled at the new size and the
    node graph's frame has drawn it; the label and the size."""
    page.wait_for_function(
        "(b) => { const t = document.querySelector(" + repr(THUMB) + "); return t && t.innerText !== b; }",
        arg=before,
        timeout=120_000,
    )
    label = slider_label(page)
    size = label.split(" \u00b7 ")[0].removeprefix("s = ")
    page.wait_for_function(SETTLED, arg=size, polling="raf", timeout=120_000)
    frame.wait_for_function(  # polled on a timer: a frame out of view gets no animation frames
        "(size) => document.body.getAttribute('data-size') === size", arg=size, polling=10, timeout=120_000
    )
    return label, size


def _two_frames_later(page) -> int:
    """The browser's clock (ms) two animation frames from now."""
    return page.evaluate(
        "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(Date.now()))))"
    )


def move(page, frame, key: str) -> tuple[float, str]:
    """Press ``key`` on the slider; the seconds until the page has settled at the new size, and its label."""
    before = slider_label(page)
    slider = page.locator(SLIDER).first
    slider.focus()
    start = page.evaluate("() => Date.now()")
    slider.press(key)
    label, _ = _settled(page, frame, before)
    return (_two_frames_later(page) - start) / 1000, label


FOLLOWER = (  # the key the views below were drawn for (ui/view_sync.py), in their component's shadow root
    "() => { const m = [...document.querySelectorAll('[data-testid=\"stBidiComponentIsolated\"]')]"
    ".map(h => h.shadowRoot && h.shadowRoot.querySelector('span[data-view]')).find(Boolean);"
    " return m ? m.dataset.view : null; }"
)


def move_in_view(page, frame, key: str, index: int) -> tuple[float, str]:
    """:func:`move` with the views below in view: the key goes to the focused slider without scrolling to
    it, and the page has settled once those views are drawn at stratum ``index`` as well."""
    before = slider_label(page)
    group = str(page.evaluate(FOLLOWER)).rsplit(":", 1)[0]
    start = page.evaluate("() => Date.now()")
    page.keyboard.press(key)
    label, _ = _settled(page, frame, before)
    page.wait_for_function(
        "(want) => (" + FOLLOWER + ")() === want && " + IDLE, arg=f"{group}:{index}", polling="raf", timeout=120_000
    )
    return (_two_frames_later(page) - start) / 1000, label


def size_of(label: str) -> float:
    return float(label.split(" \u00b7 ")[0].removeprefix("s = "))


def bench(page, url: str, n_tokens: int, repeats: int, lower: bool = False) -> None:
    prompt = prompt_of(n_tokens)
    start = time.perf_counter()
    page.goto(f"{url}/?prompt={urllib.parse.quote(prompt)}")
    page.wait_for_selector(SLIDER, state="attached", timeout=1_800_000)
    frame = graph_frame(page)
    page.wait_for_function(IDLE, timeout=600_000)
    header = page.locator('[data-testid="stMarkdown"]', has_text="tokens traced").first.inner_text()
    print(f"\n{header.strip()}  (trace and first draw {time.perf_counter() - start:.0f} s)", flush=True)
    # the strata: walk the slider from one end to the other once (not timed)
    move(page, frame, "Home")
    labels = [slider_label(page)]
    while not labels[-1].startswith("s = 1 "):
        move(page, frame, "ArrowRight")
        labels.append(slider_label(page))
    at = len(labels) - 1
    for name, size in TARGETS.items():
        target = min(range(len(labels)), key=lambda i: abs(math.log10(size_of(labels[i]) / size)))
        while at != target:
            move(page, frame, "ArrowLeft" if target < at else "ArrowRight")
            at += -1 if target < at else 1
        away, back = ("ArrowLeft", "ArrowRight") if target > 0 else ("ArrowRight", "ArrowLeft")
        times = []
        for _ in range(repeats):
            move(page, frame, away)
            seconds, label = move(page, frame, back)
            times.append(seconds)
        print(
            f"  {name:6s} {label:28s} re-draw median {statistics.median(times):.2f} s, max {max(times):.2f} s "
            f"over {repeats} moves",
            flush=True,
        )
        if lower:
            page.get_by_text("Error against size").first.scroll_into_view_if_needed()
            page.wait_for_function(
                "(want) => (" + FOLLOWER + ")() === want && " + IDLE,
                arg=f"{str(page.evaluate(FOLLOWER)).rsplit(':', 1)[0]}:{at}",
                polling="raf",
                timeout=120_000,
            )
            here = -1 if away == "ArrowLeft" else 1
            times = []
            for _ in range(repeats):
                move_in_view(page, frame, away, at + here)
                times.append(move_in_view(page, frame, back, at)[0])
            print(
                f"  {'':6s} {'with the views below in view':28s} re-draw median {statistics.median(times):.2f} s, "
                f"max {max(times):.2f} s over {repeats} moves",
                flush=True,
            )
            page.locator(SLIDER).first.scroll_into_view_if_needed()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--tokens", default="5,64,256", help="prompt lengths, comma-separated")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--lower", action="store_true", help="also time the moves with the views below in view")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    proc, url = start_server()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            print(f"{args.width} x {args.height} window; {os.cpu_count()} CPUs; the embedded model on the CPU")
            for n in (int(x) for x in args.tokens.split(",")):
                bench(page, url, n, args.repeats, args.lower)
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)


if __name__ == "__main__":
    main()
