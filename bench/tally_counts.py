"""Host time of counting an order's edges by kind (:class:`explorer.tally.OrderTally`): the host's
bincount per segment against the device path's scatter-add, both run on the host, for a graph of the 8B
shape's size at 48 tokens (1.3 M edges, 32 layers, 27 bounds), given 200,000 edges at a time.

    python -m bench.tally_counts --repeats 5
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from explorer import tally


def count_once(codes: torch.Tensor, bounds: list[int], n_layers: int, part: int) -> float:
    """Seconds to add ``codes`` to a fresh tally, ``part`` at a time."""
    counts = tally.OrderTally(n_layers, bounds)
    start = time.perf_counter()
    for piece in torch.split(codes, part):
        counts.add(piece)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--edges", type=int, default=1_300_000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    codes = torch.from_numpy(np.random.default_rng(0).integers(0, args.layers + 2, args.edges))
    bounds = sorted(set(np.geomspace(1, args.edges, 27).astype(int).tolist()))
    host = tally.host_segment_counts
    try:
        for name, counter in (("bincount per segment", host), ("scatter-add", tally.device_segment_counts)):
            tally.host_segment_counts = counter  # what OrderTally.add uses for host codes
            times = [count_once(codes, bounds, args.layers, 200_000) for _ in range(args.repeats)]
            print(f"{name}: median {np.median(times) * 1e3:.1f} ms (of {args.repeats})")
    finally:
        tally.host_segment_counts = host


if __name__ == "__main__":
    main()
