"""Strip benchmark: every position of one text traced by :func:`explorer.text.trace_text`, against the
naive loop (one :func:`explorer.trace.trace_prompt` per position), and the masked passes' floor.

    python -m bench.strip_bench --models llama-3.1-8b,qwen3-0.6b --tokens 64          # GPU, random weights
    python -m bench.strip_bench --embedded smollm2-135m --tokens 32 --device cpu      # CPU, the embedded model

27 sizes, no controls, one mode. Per model: wall time of the strip and of the naive loop (both after a
warm-up), each stage of the strip, peak GPU memory of each, and whether every position's order and TVs
agree between the two. The floor: the same number of masked passes at each position's own length with
nothing else (batches of 32).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.support import build, random_prompts
from explorer.graph import layout_for
from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.models.loading import load_model
from explorer.results import Settings
from explorer.search import strata_edges
from explorer.text import trace_text
from explorer.trace import trace_prompt

PROMPT = (
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. "
    "And God said, Let there be light: and there was light. And God saw the light, that it was good."
)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def peak_reset(device):
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak(device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.device(device).type == "cuda" else float("nan")


def floor_seconds(lm, ids: torch.Tensor, settings: Settings, device) -> float:
    """Only the masked passes: each position's strata at its own length, identity ranks."""
    total = 0.0
    for t in range(1, ids.shape[1]):
        layout = layout_for(lm.adapter, t + 1)
        order = torch.randperm(layout.n_edges, device=device)  # any order: the cost does not depend on it
        ranks = EdgeRanks.from_orders(layout, [order], device)  # ids past E are never used by the passes
        specs = [MaskSpec(n) for _, n in strata_edges(settings.sizes, layout.n_edges)]
        sync(device)
        start = time.perf_counter()
        masked_logits(lm.instrumentation, ids[:, : t + 1], ranks, specs, settings.batch_size)
        sync(device)
        total += time.perf_counter() - start
    return total


def run(lm, text: str, settings: Settings, device, token_ids=None) -> dict:
    trace_text(lm, text, settings, positions=[1, 2], token_ids=token_ids)  # warm-up
    peak_reset(device)
    sync(device)
    start = time.perf_counter()
    strip = trace_text(lm, text, settings, token_ids=token_ids)
    sync(device)
    strip_s, strip_peak = time.perf_counter() - start, peak(device)
    peak_reset(device)
    start = time.perf_counter()
    naive = {
        p.position: trace_prompt(lm, text, settings, position=p.position) if token_ids is None else None
        for p in strip.positions
    }
    sync(device)
    naive_s, naive_peak = time.perf_counter() - start, peak(device)
    same_order = all(np.array_equal(strip.traces[t].order, tr.order) for t, tr in naive.items() if tr is not None)
    max_dtv = max(
        abs(a.trace.tv - b.trace.tv)
        for t, tr in naive.items()
        if tr is not None
        for a, b in zip(strip.traces[t].strata, tr.strata)
    )
    ids = torch.tensor([strip.token_ids], device=device)
    return {
        "positions": len(strip.positions),
        "strip_s": strip_s,
        "naive_s": naive_s,
        "speedup": naive_s / strip_s,
        "stages": {k: round(v, 3) for k, v in strip.timings.items()},
        "strip_peak_gib": strip_peak,
        "naive_peak_gib": naive_peak,
        "same_order": same_order,
        "max_tv_diff": max_dtv,
        "floor_s": floor_seconds(lm, ids, settings, device),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="", help="bench/configs names, random weights (bf16 on a GPU)")
    ap.add_argument("--embedded", default="", help="an embedded model key instead")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument(
        "--dtype", default="bfloat16", choices=["bfloat16", "float32"], help="random-weight models on a GPU"
    )
    args = ap.parse_args()
    settings = Settings(max_tokens=4096, batch_size=args.batch_size)
    if args.embedded:
        lm = load_model(args.embedded, device=args.device, dtype="float32")
        ids = lm.tokenizer(PROMPT)["input_ids"][: args.tokens]
        text = str(lm.tokenizer.decode(ids))
        ids = lm.tokenizer(text)["input_ids"]
        print(args.embedded, len(ids), "tokens", run(lm, text, settings, args.device))
    for name in filter(None, args.models.split(",")):
        dtype = getattr(torch, args.dtype) if args.device.startswith("cuda") else torch.float32
        lm = build(name, args.device, dtype)
        text = random_prompts(1, args.tokens, lm.adapter.config.vocab_size)[0]
        print(
            name,
            args.tokens,
            "tokens, batch",
            args.batch_size,
            args.dtype,
            run(lm, text, settings, args.device),
            flush=True,
        )
        del lm
        torch.cuda.empty_cache() if args.device.startswith("cuda") else None


if __name__ == "__main__":
    main()
