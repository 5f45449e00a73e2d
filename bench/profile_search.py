"""Stage-by-stage timing of the edge-order search on a random graph of a given shape.

python -m bench.profile_search --layers 32 --heads 32 --tokens 128 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from explorer.edges import EdgeLayout
from explorer.graph import TokenGraph
from explorer.search import prepare_search, run_search


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    L, H, T = args.layers, args.heads, args.tokens
    dev = torch.device(args.device)
    g = TokenGraph(
        EdgeLayout(L, H, T),
        "l1",
        torch.rand(L, H, T, T, device=dev),
        torch.rand(L, T, device=dev),
        torch.rand(L, T, device=dev),
        torch.rand(L, T, device=dev),
    )
    for _ in range(3):
        times = {}
        sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
        t = time.perf_counter()
        ptr, src, w, ids = g.csr()
        sync()
        times["csr"] = time.perf_counter() - t
        t = time.perf_counter()
        job = prepare_search(ptr, src, w, ids, g.layout.output_node)
        times["sort, rank, to host"] = time.perf_counter() - t
        t = time.perf_counter()
        order = run_search(job)
        times["loop"] = time.perf_counter() - t
        print(f"E = {len(order)}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
