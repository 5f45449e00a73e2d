"""Load test: the app served on 127.0.0.1, N concurrent headless Chromium sessions (default 8), each
opening the Trace page on its own prompt of the embedded model. Every session must end with the views
drawn and no error, showing the engine's TV for the page's size; the server's memory is sampled.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.load_test [--sessions 8] [--config config/demo.toml]

Prints per-session times, the TV check, and the server's peak resident memory.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"  # Debian's; launched as the browser tests launch it
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SLIDER = '[data-testid="stSlider"] input[type="range"]'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PROMPTS = [
    "The capital of France is",
    "The Eiffel Tower is located in the city of",
    "1, 2, 3, 4, 5,",
    "When Mary and John went to the store, John gave a drink to",
    "The opposite of hot is",
    "Once upon a time, there was a",
    "The keys to the cabinet in the kitchen",
    "Alice, Bob, Carol, Dave. Alice, Bob,",
    "def add(a, b):\n    return",
    "Monday, Tuesday, Wednesday,",
    "The chemical symbol for gold is",
    "She opened the door and",
]


def rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_server(port: int, config: str | None):
    import subprocess

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if config:
        env["STRACE_CONFIG"] = config
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--server.fileWatcherType",
        "none",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import urllib.request

    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("streamlit did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--config", default=None)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    from explorer import Settings, load_model, trace_prompt

    lm = load_model()
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.sessions)]
    port = free_port()
    proc = start_server(port, args.config)
    peak, stop = [rss_mb(proc.pid)], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(rss_mb(proc.pid))
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    results: dict[int, dict] = {}

    def session(i: int) -> None:
        url = f"http://127.0.0.1:{port}/?prompt={urllib.parse.quote(prompts[i])}&size=1"
        start = time.perf_counter()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                page.goto(url)
                page.wait_for_selector(SLIDER, state="attached", timeout=args.timeout * 1000)
                page.wait_for_function(
                    "!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=args.timeout * 1000
                )
                metric = page.locator('[data-testid="stMetric"]', has_text="TV").first.inner_text()
                errors = page.query_selector_all('[data-testid="stException"], [data-testid="stAlertContentError"]')
                results[i] = {
                    "seconds": time.perf_counter() - start,
                    "tv": metric.split()[-1],
                    "errors": [e.inner_text()[:200] for e in errors],
                }
            except Exception as exc:
                results[i] = {"seconds": time.perf_counter() - start, "tv": None, "errors": [repr(exc)[:200]]}
            finally:
                browser.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=session, args=(i,)) for i in range(args.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    proc.terminate()

    ok = 0
    print(f"{args.sessions} concurrent sessions, config {args.config or 'built-in defaults'}, wall {wall:.1f} s")
    for i in range(args.sessions):
        r = results.get(i, {"seconds": None, "tv": None, "errors": ["no result"]})
        expected = trace_prompt(lm, prompts[i], Settings(controls=True)).strata[-1].trace.tv
        good = r["tv"] == f"{expected:.3f}" and not r["errors"]
        ok += good
        print(
            f"  session {i}: {r['seconds']:.1f} s, TV at s=1 {r['tv']} (engine {expected:.3f}) "
            f"{'ok' if good else 'FAILED ' + str(r['errors'])}  prompt {prompts[i]!r}"
        )
    print(f"{ok}/{args.sessions} sessions correct; server peak RSS {max(peak):.0f} MiB (start {peak[0]:.0f} MiB)")


if __name__ == "__main__":
    main()
