"""Where a trace's device time goes, by kind of kernel; and how many kernels one masked pass launches.

    python -m bench.pass_profile --models smollm2-135m,llama-3.1-8b --length 48 --batch-size 32
    python -m bench.pass_profile --models smollm2-135m,llama-3.1-8b --length 48 --device cpu

Models from bench/configs with random weights (bf16, on the CPU too), 27 sizes, both controls.

- **Launches** (every device): the operations that launch a kernel of a trace's masked passes (aten
  operations called from Python, less views and conversions that copy nothing: on a GPU, about a kernel
  each), batch by batch as planned (both modes, random
  orders as ranks). Counted with the attention masks built as a recorded pass builds them
  (``pass_graphs.RECORDED_BLOCK_BYTES`` at a time) and a layer at a time (as before eb6654e).
- **Device time** (CUDA only): one both-mode trace after warm-ups, masked passes replayed, under
  torch.profiler: its kernels' time by kind, their count, and the largest.
"""

from __future__ import annotations

import argparse
import collections

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from bench.support import build, random_prompts
from explorer import pass_graphs
from explorer.cost import sparse_passes
from explorer.graph import layout_for
from explorer.intervene import BatchColumns, EdgeRanks, RankMasks, kept_mlp_rows, masked_pass
from explorer.options import MODES
from explorer.passes import plan_passes
from explorer.results import Settings
from explorer.search import strata_edges
from explorer.trace import trace_modes

VIEWS = {
    "aten::view", "aten::unsqueeze", "aten::squeeze", "aten::select", "aten::slice",
    "aten::transpose", "aten::t", "aten::expand", "aten::alias", "aten::as_strided", "aten::permute",
    "aten::_unsafe_view", "aten::detach", "aten::lift_fresh", "aten::empty", "aten::empty_strided",
    "aten::resolve_conj", "aten::resolve_neg", "aten::result_type", "aten::item", "aten::_local_scalar_dense",
}  # fmt: skip
MAYBE_COPIES = {"aten::to", "aten::contiguous", "aten::type_as", "aten::reshape"}  # a kernel where they copy
KINDS = [
    ("matrix products", ("gemm", "nvjet", "cutlass", "sm90", "xmma", "cublas", "splitk")),
    ("softmax", ("softmax",)),
    ("index and scatter", ("index", "scatter", "gather")),
    ("reductions", ("reduce", "cumsum", "scan")),
    ("copies", ("memcpy", "memset", "copy", "cat")),
    ("elementwise", ("elementwise", "vectorized", "unrolled")),
]


def kind_of(kernel: str) -> str:
    name = kernel.lower()
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "other")


def planned_batches(lm, length: int, settings: Settings) -> tuple[torch.Tensor, EdgeRanks, list[BatchColumns]]:
    """A random prompt's ids ``[1, T]``, random greedy and control orders as ranks, and the columns of each
    batch of a both-mode trace's plan (the MLP rows counted where the passes skip rows, as a trace does)."""
    layout = layout_for(lm.adapter, length)
    rng = np.random.default_rng(0)
    ranks = EdgeRanks.from_orders(layout, [rng.permutation(layout.n_edges) for _ in range(2)], lm.device)
    plan = plan_passes([[n for _, n in strata_edges(settings.sizes, layout.n_edges)]], settings, MODES)
    sparse = sparse_passes(lm.adapter.model.config, length, settings.batch_size, lm.device)
    batches = []
    for start in range(0, len(plan), settings.batch_size):
        specs = [p.spec for p in plan[start : start + settings.batch_size]]
        batches.append(BatchColumns.of(specs, ranks, kept_mlp_rows(ranks, specs) if sparse else None))
    ids = torch.randint(100, lm.adapter.config.vocab_size - 100, (1, length), device=lm.device)
    return ids, ranks, batches


def launches_kernel(ev) -> bool:
    """Whether profiler event ``ev`` is an aten operation called from Python that launches a kernel."""
    if not ev.name.startswith("aten::") or ev.name in VIEWS:
        return False
    parent = ev.cpu_parent
    if parent is not None and parent.name.startswith("aten::"):
        return False
    return ev.name not in MAYBE_COPIES or any(c.name.startswith("aten::") for c in ev.cpu_children)


def launches(lm, ids: torch.Tensor, ranks: EdgeRanks, batches: list[BatchColumns], block_bytes: int) -> int:
    """The kernels that the masked passes of ``batches`` launch, their attention masks ``block_bytes`` at a time."""
    dtype = next(lm.model.parameters()).dtype
    total = 0
    for columns in batches:
        run = lambda: masked_pass(lm.instrumentation, ids, RankMasks(ranks, columns, dtype, block_bytes=block_bytes))
        run()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        total += sum(1 for ev in prof.events() or [] if launches_kernel(ev))
    return total


def device_time(lm, length: int, settings: Settings) -> list[str]:
    pass_graphs.disable(lm.instrumentation)
    pass_graphs.enable(lm.instrumentation, lm.device)
    prompts = random_prompts(6, length, lm.adapter.config.vocab_size)
    for p in prompts[:5]:
        trace_modes(lm, p, settings)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trace_modes(lm, prompts[5], settings)
        torch.cuda.synchronize()
    by_kind, count, by_name = collections.Counter(), collections.Counter(), collections.Counter()
    for ev in prof.events() or []:
        if ev.device_type.name == "CUDA":
            us = ev.time_range.elapsed_us()
            by_kind[kind_of(ev.name)] += us
            count[kind_of(ev.name)] += 1
            by_name[ev.name[:100]] += us
    lines = [f"  device: {sum(by_kind.values()) / 1000:.1f} ms in {sum(count.values())} kernels"]
    lines += [f"    {k:18s} {us / 1000:7.1f} ms {count[k]:6d} kernels" for k, us in by_kind.most_common()]
    lines += [f"      {us / 1000:7.1f} ms  {name}" for name, us in by_name.most_common(12)]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m,llama-3.1-8b")
    ap.add_argument("--length", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    settings = Settings(controls=True, max_tokens=max(256, args.length), batch_size=args.batch_size)
    for name in args.models.split(","):
        lm = build(name, args.device, torch.bfloat16)
        ids, ranks, batches = planned_batches(lm, args.length, settings)
        blocked, per_layer = (launches(lm, ids, ranks, batches, b) for b in (pass_graphs.RECORDED_BLOCK_BYTES, 0))
        print(
            f"{name}, {args.length} tokens, batch {args.batch_size} on {args.device}: a both-mode trace's "
            f"{len(batches)} masked passes launch {blocked} kernels (attention masks a layer at a time: {per_layer})",
            flush=True,
        )
        if args.device.startswith("cuda"):
            print("\n".join(device_time(lm, args.length, settings)), flush=True)
        del lm


if __name__ == "__main__":
    main()
