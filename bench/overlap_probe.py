"""The timeline of one trace's masked passes beside its host search: when each stretch of the search ended,
when each batch waited for the edges it reads, was launched, and finished on the device.

    python -m bench.overlap_probe --models smollm2-135m,llama-3.1-8b --length 48

Models from bench/configs with random weights (bf16 on a GPU), 27 sizes, both controls, mode ``all``; the
masked passes replayed as CUDA graphs (``--eager``: not). Three warm-up traces of the length, then one
probed. Times in ms from the start of ``evaluate``.
"""

from __future__ import annotations

import argparse
import threading
import time

import torch

import explorer.orders as orders
import explorer.passes as passes
import explorer.trace as pipeline
from bench.support import build, random_prompts
from explorer import pass_graphs
from explorer.results import Settings
from explorer.search import HeapSearch


def probe(lm, length: int) -> list[tuple[float, str]]:
    """The events of one trace, ``(seconds, what)``; device ends by CUDA events read afterwards."""
    events: list[tuple[float, str]] = []
    device_ends: list[tuple[torch.cuda.Event, float, str]] = []
    lock = threading.Lock()

    def note(what: str) -> None:
        with lock:
            events.append((time.perf_counter(), what))

    originals = (HeapSearch.advance, orders.GreedyOrder._popped, passes.masked_logits, pipeline.evaluate)

    def advance(self, stop):
        popped = originals[0](self, stop)
        note(f"search popped {popped}")
        return popped

    def popped(self, n):
        note(f"wait for {n} edges")
        got = originals[1](self, n)
        note(f"  have {got}")
        return got

    def masked_logits(inst, input_ids, ranks, specs, batch_size, positions=None):
        note(f"launch batch of {len(specs)}")
        out = originals[2](inst, input_ids, ranks, specs, batch_size, positions)
        note("  launched")
        if torch.cuda.is_available():
            end = torch.cuda.Event(enable_timing=True)
            end.record()
            device_ends.append((end, time.perf_counter(), f"device done with batch of {len(specs)}"))
        return out

    def evaluate(*args, **kwargs):
        note("evaluate starts")
        if torch.cuda.is_available():
            start = torch.cuda.Event(enable_timing=True)
            start.record()
            device_ends.append((start, time.perf_counter(), "start"))
        out = originals[3](*args, **kwargs)
        note("evaluate ends")
        return out

    HeapSearch.advance, orders.GreedyOrder._popped = advance, popped
    passes.masked_logits, pipeline.evaluate = masked_logits, evaluate
    try:
        settings = Settings(controls=True)
        prompts = random_prompts(4, length, lm.model.config.vocab_size)
        for p in prompts[:3]:
            pipeline.trace_prompt(lm, p, settings)
        events.clear()
        device_ends.clear()
        tr = pipeline.trace_prompt(lm, prompts[3], settings)
    finally:
        HeapSearch.advance, orders.GreedyOrder._popped = originals[:2]
        passes.masked_logits, pipeline.evaluate = originals[2:]
    if device_ends:
        torch.cuda.synchronize()
        start_event, start_host, _ = device_ends[0]
        for event, _, what in device_ends[1:]:
            events.append((start_host + start_event.elapsed_time(event) / 1000, what))
    print(f"  timings: {', '.join(f'{k} {v * 1000:.1f}' for k, v in tr.timings.items())} ms")
    return sorted(events)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="smollm2-135m")
    ap.add_argument("--length", type=int, default=48)
    ap.add_argument("--eager", action="store_true")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    for name in args.models.split(","):
        lm = build(name, args.device, torch.bfloat16 if args.device == "cuda" else torch.float32)
        if not args.eager:
            pass_graphs.enable(lm.instrumentation, lm.device)
        print(f"{name}, {args.length} tokens, passes {'eager' if args.eager else 'replayed'}:")
        events = probe(lm, args.length)
        t0 = next(t for t, what in events if what == "evaluate starts")
        for t, what in events:
            print(f"  {(t - t0) * 1000:8.1f}  {what}")
        del lm


if __name__ == "__main__":
    main()
