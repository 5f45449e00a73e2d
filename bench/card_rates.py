"""The card's measured rates, for the floor analysis in RESULTS.md: dense bf16 matmul throughput,
device-memory copy bandwidth and the host cost of one small kernel launch.

    python -m bench.card_rates
"""

from __future__ import annotations

import time

import torch


def timed(fn, repeats: int = 20) -> float:
    """Median seconds of ``fn`` on the GPU (CUDA events, after a warm-up)."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return sorted(times)[len(times) // 2]


def main() -> None:
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}")
    n = 8192
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    t = timed(lambda: a @ b)
    print(f"bf16 matmul {n}x{n}x{n}: {2 * n**3 / t / 1e12:.0f} TFLOP/s")
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src))
    print(f"device copy of 1 GiB: {2 * src.numel() / t / 1e12:.2f} TB/s (read + write)")
    x = torch.zeros(16, device="cuda")
    torch.cuda.synchronize()
    k = 2000
    t0 = time.perf_counter()
    for _ in range(k):
        x.add_(1)
    torch.cuda.synchronize()
    print(f"small kernel launches: {(time.perf_counter() - t0) / k * 1e6:.1f} us each (host side, back to back)")


if __name__ == "__main__":
    main()
