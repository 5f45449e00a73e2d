"""One-off probe: where the device search of a long prompt's graph spends its time (torch profiler), and
how fast an order reaches the host. python -m bench.search_probe --layers 28 --heads 16 --tokens 2048"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from bench.copy_probe import timed
from explorer.edges import EdgeLayout
from explorer.orders import random_control_order


def copies(n: int) -> None:
    x = torch.randint(0, 2**31 - 1, (n,), dtype=torch.long, device="cuda")
    timed("int64 .cpu().numpy()", lambda: x.cpu().numpy())

    def np_empty(dtype, src):
        a = np.empty(n, dtype=dtype)
        torch.from_numpy(a).copy_(src)
        return a

    timed("int64 into np.empty (numpy's huge-page advice)", lambda: np_empty(np.int64, x))

    def touched_first(src):
        h = torch.empty(n, dtype=src.dtype)
        h.zero_()  # the pages faulted in by torch's threads
        return h.copy_(src)

    timed(f"int64 into torch.empty zeroed first ({torch.get_num_threads()} threads)", lambda: touched_first(x))
    timed("again", lambda: touched_first(x))
    y = timed("int32 cast on device", lambda: x.int())
    timed("int32 into np.empty", lambda: np_empty(np.int32, y))
    timed("int32 .cpu().numpy()", lambda: y.cpu().numpy())
    timed("int32 zeroed first", lambda: touched_first(y))
    is_attention = torch.rand(n, device="cuda") < 0.9
    from explorer.search import random_keys, random_priorities

    keys = timed("random keys (parallel draws)", lambda: random_keys(is_attention, 0))
    host = timed("random priorities on the host (one draw)", lambda: random_priorities(is_attention.cpu().numpy(), 0))
    print("random keys equal the host's:", bool((keys.cpu().numpy() == host).all()), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--copies", action="store_true", help="also time the host copies and the random keys")
    args = ap.parse_args()
    layout = EdgeLayout(args.layers, args.heads, args.tokens)
    print(f"{layout.n_edges} edges", flush=True)
    if args.copies:
        copies(layout.n_edges)
    timed("warm-up, 512 tokens", lambda: random_control_order(EdgeLayout(args.layers, args.heads, 512), 0, "cuda"))
    timed("random control search", lambda: random_control_order(layout, 0, "cuda"))
    random_control_order.clear()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        timed("random control search, profiled", lambda: random_control_order(layout, 0, "cuda"))
    table = prof.key_averages()
    for key in ("self_device_time_total", "self_cuda_time_total"):
        try:
            print(table.table(sort_by=key, row_limit=22, max_name_column_width=70), flush=True)
            break
        except (AttributeError, KeyError):
            continue
    print(table.table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=70), flush=True)


if __name__ == "__main__":
    main()
