"""One-off probe: how long an order of a long prompt takes to reach the host, and whether the copy overlaps
device work. python -m bench.copy_probe --edges 906600000"""

from __future__ import annotations

import argparse
import threading
import time

import torch


def timed(label, fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    print(f"{label}: {time.perf_counter() - t:.2f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edges", type=int, default=906_600_000)
    n = ap.parse_args().edges
    x = torch.randint(0, 2**31 - 1, (n,), dtype=torch.long, device="cuda")
    w = torch.rand(n, device="cuda")
    timed("int64 order to host, pageable (.cpu().numpy())", lambda: x.cpu().numpy())
    timed("again", lambda: x.cpu().numpy())
    timed("float32 weights to host, pageable", lambda: w.cpu().numpy())
    timed("int32 order: cast + to host", lambda: x.int().cpu().numpy())
    pin = lambda: torch.empty(n, dtype=torch.long, pin_memory=True)
    pinned = [timed("pinned int64 buffer: allocate", pin)]
    timed("pinned int64: copy", lambda: pinned[0].copy_(x, non_blocking=True))
    pinned.clear()
    timed("pinned int64 buffer: allocate again (cached?)", pin)
    empty = timed("host int64 buffer: torch.empty", lambda: torch.empty(n, dtype=torch.long))
    timed("into that buffer (pageable, preallocated, untouched)", lambda: empty.copy_(x))
    timed("into that buffer again (touched)", lambda: empty.copy_(x))
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)

    def work(k):
        for _ in range(k):
            torch.mm(a, a)

    timed("matmuls alone", lambda: work(2000))
    side = torch.cuda.Stream()
    done = {}

    def copy():
        with torch.cuda.stream(side):
            t = time.perf_counter()
            done["host"] = x.cpu().numpy()
            done["s"] = time.perf_counter() - t

    def both():
        th = threading.Thread(target=copy)
        th.start()
        work(2000)
        th.join()

    timed("matmuls with the int64 copy beside them (thread, side stream)", both)
    print(f"  the copy took {done['s']:.2f} s", flush=True)


if __name__ == "__main__":
    main()
