"""The device search's memory, measured on the CPU: the peak bytes per edge that
:func:`explorer.chain_search.chain_order` (ranking included) allocates beyond its inputs, from the
process's peak resident memory with every allocation of 64 KiB or more mapped on its own (so that a
freed tensor leaves the resident set at once). A proxy for its peak on a GPU, less the GPU's own sort
buffers, for work without device time; the steps (``CHUNK``) can be cut so that a short prompt's graph
takes as many steps as a long prompt's does on the GPU (2^26 edges per step: 14 at 900 M edges).

    python -m bench.search_memory --model smollm2-135m --length 256 --chunk-log2 19 [--parts]

The graph: a recorded pass of the model (random weights from bench/configs, float32), its edge weights
rounded to bf16 as on a GPU. ``--parts``: which part of the search raised the peak, and what stayed
allocated after it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PARTS = ("plan_levels", "_argsort_keys", "_trie_positions", "_preorder", "stable_sort_by", "_increasing")


def _resident() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """The peak resident memory of this process's address space (``VmHWM``; not ``ru_maxrss``, which
    keeps the parent's peak across the fork and exec that started this process)."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure(graph: Path, chunk_log2: int | None, parts: bool) -> dict:
    """Run the search on the saved graph in this process (started with the allocation settings)."""
    import explorer.chain_search as chain_search
    import explorer.range_sort as range_sort

    torch.set_num_threads(1)
    saved = np.load(graph)
    ptr, src, weight, levels = (torch.from_numpy(saved[k]) for k in ("ptr", "src", "weight", "levels"))
    if chunk_log2 is not None:
        chain_search.CHUNK, chain_search.GATHER = 1 << chunk_log2, 1 << (chunk_log2 - 1)
        range_sort.CHUNK = 1 << chunk_log2
    m, base = len(weight), _resident()
    rises: list[dict] = []
    if parts:
        for name in PARTS:
            real = getattr(chain_search, name)

            def watched(*args, _real=real, _name=name, **kwargs):
                before = _peak()
                out = _real(*args, **kwargs)
                if _peak() > before:
                    rises.append({"part": _name, "peak": (_peak() - base) / m, "left": (_resident() - base) / m})
                return out

            setattr(chain_search, name, functools.wraps(real)(watched))
    start = time.perf_counter()
    order = chain_search.chain_order(ptr, src, range_sort.dense_rank(weight), levels, int(saved["root"]))
    seconds = time.perf_counter() - start
    return {
        "edges": m,
        "chunk": chain_search.CHUNK,
        "peak_bytes_per_edge": (_peak() - base) / m,
        "seconds": seconds,
        "order_sum": int(order.sum()),  # the same order gives the same sum: compare runs of two versions
        "rises": rises,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--chunk-log2", type=int, default=None, help="steps of 2^N edges (default: the module's)")
    ap.add_argument("--parts", action="store_true")
    ap.add_argument("--measure", default=None, help=argparse.SUPPRESS)  # the child process: a saved graph
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(Path(args.measure), args.chunk_log2, args.parts)))
        return
    from bench.support import build, random_prompts
    from explorer.graph import build_graph

    lm = build(args.model, "cpu", torch.float32)
    ids = torch.tensor([[int(x) for x in random_prompts(1, args.length, lm.model.config.vocab_size)[0].split()]])
    _, records = lm.instrumentation.recorded_forward(ids, logits_to_keep=1)
    graph = build_graph(lm.adapter, records, "l1")
    ptr, src, weight, _ = graph.csr()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.npz"
        np.savez(
            path,
            ptr=ptr.numpy(),
            src=src.numpy(),
            weight=weight.to(torch.bfloat16).float().numpy(),
            levels=graph.layout.node_levels("cpu").numpy(),
            root=graph.layout.output_node,
        )
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        cmd = [sys.executable, "-m", "bench.search_memory", "--measure", str(path)]
        cmd += ["--chunk-log2", str(args.chunk_log2)] if args.chunk_log2 is not None else []
        cmd += ["--parts"] if args.parts else []
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout.splitlines()[-1]
    row = {"model": args.model, "tokens": args.length, **json.loads(out)}
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
