"""The two exact searches on the same graphs: the compiled heap search on the host and the level-by-level
search on the device. Graphs come from recorded passes of models built from real configs with random
weights (bf16 on a GPU); both orders must be equal.

    python -m bench.search_compare --models llama-3.1-8b --lengths 48,128,256,512
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench.support import build
from explorer.chain_search import chain_order
from explorer.graph import build_graph
from explorer.range_sort import dense_rank
from explorer.search import prepare_search, run_search


def timed(fn, repeats: int):
    """Median seconds of ``fn`` (synchronised) after a warm-up, and its last result."""
    result = fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="llama-3.1-8b")
    parser.add_argument("--lengths", default="48,128")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    for name in args.models.split(","):
        lm = build(name, args.device, dtype)
        for length in [int(x) for x in args.lengths.split(",")]:
            ids = torch.randint(100, 1000, (1, length), device=args.device)
            _, records = lm.instrumentation.recorded_forward(ids, logits_to_keep=1)
            graph = build_graph(lm.adapter, records, "l1")
            del records
            ptr, src, w, eid = graph.csr()
            root, levels = graph.layout.output_node, graph.layout.node_levels(args.device)
            repeats = 1 if length >= 256 else 3
            heap_s, heap = timed(lambda: run_search(prepare_search(ptr, src, w, eid, root)), repeats)
            on_gpu = torch.cuda.is_available()
            if on_gpu:
                torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated() if on_gpu else 0
            search = lambda: chain_order(ptr, src, dense_rank(w), levels, root)  # ranking included
            chain_s, chain = timed(lambda: eid[search()].cpu().numpy(), repeats)
            tied = len(w) - len(torch.unique(w))
            print(
                f"{name} T={length}: E = {len(heap)}, {tied} edges share a weight; heap {heap_s * 1000:.0f} ms, "
                f"device {chain_s * 1000:.0f} ms; same order: {np.array_equal(heap, chain)}; device search peak "
                f"{(torch.cuda.max_memory_allocated() - before) / len(heap) if on_gpu else 0:.0f} bytes per edge"
                " beyond its inputs",
                flush=True,
            )
            del graph
        del lm
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
