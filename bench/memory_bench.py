"""Peak GPU memory of one trace by stage, against the cost preview's estimate (explorer/cost.py).

    python -m bench.memory_bench --models qwen3-0.6b,llama-3.1-8b --lengths 256,512,1024

Models from bench/configs with random weights (bf16), 27 sizes, both controls, mode ``all``. Each stage of
``trace_prompt`` is wrapped: the peak of device memory allocated while it runs (absolute, so the weights
and whatever earlier stages left are included) and what it leaves allocated. The whole trace's peak is
the largest stage peak. One trace per length after a warm-up at 32 tokens; the random control's order is
computed within the trace (not kept from an earlier one).
"""

from __future__ import annotations

import argparse
import functools
import json
import time

import torch

import explorer.chain_search as chain_search
import explorer.intervene as intervene
import explorer.orders as orders
import explorer.passes as passes
import explorer.trace as pipeline
from bench.support import build, random_prompts
from explorer.cost import estimate_cost
from explorer.errors import OutOfMemory
from explorer.graph import TokenGraph
from explorer.orders import random_control_order
from explorer.results import Settings

GIB = 2**30
STAGES = {
    "random control": (pipeline, "start_random_control"),  # a large graph's: searched before the forward pass
    "forward": None,  # the instrumentation's recorded_forward, wrapped per model
    "graph": (pipeline, "build_graph"),
    "search CSR": (TokenGraph, "search_csr"),
    "search (device part)": (pipeline, "greedy_search"),
    "random order to the device": (pipeline, "search_position"),
    "greedy order to the host": (pipeline.Searched, "finish"),
    "ranks": (intervene.EdgeRanks, "empty"),
    "ranks placed": (intervene.EdgeRanks, "fill"),
    "masked passes": (passes, "masked_logits"),
}


SEARCH_PARTS = {  # inside either search on the device (explorer/chain_search.py), reported per search
    "random keys": (orders, "random_keys"),
    "weight ranks": (orders, "dense_rank"),
    "level plans": (orders, "plan_levels"),
    "key sort": (chain_search, "_argsort_keys"),
    "trie": (chain_search, "_trie_positions"),
    "pre-order": (chain_search, "_preorder"),
    "depth's edges": (chain_search, "_at_depth"),
    "sort by parent": (chain_search, "stable_sort_by"),
    "round check": (chain_search, "_increasing"),  # once per round of push counters
}


class StageMemory:
    """Wraps the stage functions; ``peaks[name]`` and ``left[name]`` in bytes, ``seconds[name]`` and
    ``calls[name]`` summed over its calls. A stage that runs inside another is named ``outer / inner``
    (the search's parts); the outer stage's peak includes the inner ones'."""

    def __init__(self, lm, search_parts: bool = False):
        self.peaks: dict[str, int] = {}
        self.left: dict[str, int] = {}
        self.entry: dict[str, int] = {}  # allocated when the call that reached the peak began
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[list] = []  # [name, peak so far] of the stages running now, outermost first
        self.whole = 0  # the peak of everything since the last reset, inside the stages or between them
        self._originals: list[tuple] = []  # (owner, attribute, value) to put back
        for name, where in STAGES.items():
            owner, attr = (lm.instrumentation, "recorded_forward") if where is None else where
            self._wrap(name, owner, attr)
        if search_parts:
            for name, (owner, attr) in SEARCH_PARTS.items():
                self._wrap(name, owner, attr)

    def close(self) -> None:
        """Put the wrapped functions back. A second model's wrappers around the first's would each reset
        the peak, so that the outer ones saw only what followed the inner ones' last reset."""
        for owner, attr, value in reversed(self._originals):
            setattr(owner, attr, value)
        self._originals.clear()

    def _wrap(self, name, owner, attr):
        self._originals.append((owner, attr, owner.__dict__.get(attr, getattr(owner, attr))))
        real = getattr(owner, attr)
        is_class_method = isinstance(owner, type) and isinstance(owner.__dict__.get(attr), classmethod)
        fn = real.__func__ if is_class_method else real

        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            torch.cuda.synchronize()
            self._lift()
            inside = name in SEARCH_PARTS and self._stack  # the stack holds full names already
            full = f"{self._stack[-1][0]} / {name}" if inside else name
            self._stack.append([full, 0])
            torch.cuda.reset_peak_memory_stats()
            entry = torch.cuda.memory_allocated()
            t0 = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            finally:
                torch.cuda.synchronize()
                self._lift()
                _, peak = self._stack.pop()
                self.seconds[full] = self.seconds.get(full, 0.0) + time.perf_counter() - t0
                self.calls[full] = self.calls.get(full, 0) + 1
                if peak >= self.peaks.get(full, 0):
                    self.peaks[full], self.entry[full] = peak, entry
                self.left[full] = torch.cuda.memory_allocated()
                if self._stack:
                    self._stack[-1][1] = max(self._stack[-1][1], peak)
            return out

        setattr(owner, attr, classmethod(wrapped) if is_class_method else wrapped)

    def _lift(self) -> None:
        """Give the peak since the last reset to every running stage, and reset it."""
        peak = torch.cuda.max_memory_allocated()
        self.whole = max(self.whole, peak)
        for entry in self._stack:
            entry[1] = max(entry[1], peak)
        torch.cuda.reset_peak_memory_stats()

    def whole_peak(self) -> int:
        """The peak since the last :meth:`reset`, between the stages too (work outside every stage)."""
        torch.cuda.synchronize()
        self._lift()
        return self.whole

    def reset(self):
        torch.cuda.reset_peak_memory_stats()
        self.whole = 0
        self.peaks.clear()
        self.left.clear()
        self.entry.clear()
        self.seconds.clear()
        self.calls.clear()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--models", default="qwen3-0.6b,llama-3.1-8b")
    ap.add_argument("--lengths", default="256,512,1024")
    ap.add_argument("--batch-size", type=int, default=Settings().batch_size)
    ap.add_argument("--no-controls", action="store_true", help="without the inverse and random controls")
    ap.add_argument("--json", default=None, help="also write the rows as JSON lines to this file")
    ap.add_argument("--force", action="store_true", help="run traces that the cost preview would refuse")
    ap.add_argument("--search-parts", action="store_true", help="also the device search's parts, per search")
    args = ap.parse_args()
    if args.force:
        pipeline.check_memory = lambda lm, settings, n_tokens: settings
    settings = Settings(controls=not args.no_controls, batch_size=args.batch_size, max_tokens=4096)
    rows = []
    for name in args.models.split(","):
        lm = build(name, "cuda", torch.bfloat16)
        weights = torch.cuda.memory_allocated()
        stages = StageMemory(lm, args.search_parts)
        pipeline.trace_prompt(lm, random_prompts(1, 32, lm.model.config.vocab_size)[0], settings)
        for length in [int(x) for x in args.lengths.split(",")]:
            stages.reset()
            random_control_order.clear()
            prompt = random_prompts(1, length, lm.model.config.vocab_size, seed=length)[0]
            t0 = time.perf_counter()
            try:
                tr = pipeline.trace_prompt(lm, prompt, settings)
            except (OutOfMemory, torch.OutOfMemoryError) as exc:  # refused by the preview, or out of memory
                peaks = {k: v / GIB for k, v in stages.peaks.items()}
                entry = {k: v / GIB for k, v in stages.entry.items()}
                why = str(exc.__cause__ or exc)[:400]
                failed = {"model": name, "tokens": length, "failed": why, "stage_peak_gib": peaks}
                print(json.dumps({**failed, "stage_entry_gib": entry}), flush=True)
                torch.cuda.empty_cache()
                continue
            wall = time.perf_counter() - t0
            # the settings it ran with: a smaller batch of masked passes where only that fits
            est = estimate_cost(lm.model.config, length, tr.settings, device="cuda", dtype=torch.bfloat16)
            peak = stages.whole_peak()  # at least every stage's: the trace's whole peak
            row = {
                "model": name,
                "tokens": length,
                "controls": settings.controls,
                "batch_size": tr.settings.batch_size,
                "edges": tr.n_edges,
                "weights_gib": weights / GIB,
                "peak_gib": peak / GIB,
                "bytes_per_edge": (peak - weights) / tr.n_edges,
                "seconds": wall,
                "estimate_peak_gib": est.peak_bytes / GIB,
                "estimate_seconds": est.seconds,
                "peak_outside_stages": peak > max(stages.peaks.values()),
                "stage_peak_gib": {k: v / GIB for k, v in stages.peaks.items()},
                "stage_left_gib": {k: v / GIB for k, v in stages.left.items()},
                "stage_entry_gib": {k: v / GIB for k, v in stages.entry.items()},
                "stage_seconds": dict(stages.seconds),
                "stage_calls": dict(stages.calls),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            torch.cuda.empty_cache()
        stages.close()
        del lm, stages
        torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()
