"""Stage-by-stage timing of the edge-order search on a random graph of a given shape.

    python bench/profile_search.py --layers 32 --heads 32 --tokens 128 [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from explorer.graph import EdgeLayout, TokenGraph
from explorer.search import SearchGraph, _greedy, sort_within_nodes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    L, H, T = args.layers, args.heads, args.tokens
    dev = torch.device(args.device)
    g = TokenGraph(EdgeLayout(L, H, T), "l1", torch.rand(L, H, T, T, device=dev), torch.rand(L, T, device=dev),
                   torch.rand(L, T, device=dev), torch.rand(L, T, device=dev))
    for rep in range(3):
        times = {}
        sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else (lambda: None)
        t = time.perf_counter()
        ptr, src, w, ids = g.csr(); sync()
        times["csr"] = time.perf_counter() - t; t = time.perf_counter()
        perm = sort_within_nodes(ptr, w)
        times["sort"] = time.perf_counter() - t; t = time.perf_counter()
        sg = SearchGraph(ptr.cpu().numpy(), src.cpu().numpy(), w.cpu().numpy(), g.layout.output_node)
        times["to host"] = time.perf_counter() - t; t = time.perf_counter()
        p = np.ascontiguousarray(sg.node_ptr)
        pos = perm - np.repeat(p[:-1], np.diff(p))
        s_src, s_w = sg.src[perm], sg.weight[perm]
        times["gather"] = time.perf_counter() - t; t = time.perf_counter()
        _greedy(p, s_src, s_w, pos, sg.root)
        times["loop"] = time.perf_counter() - t
        print(f"E = {len(perm)}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
