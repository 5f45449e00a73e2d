"""Where a corpus prompt's time goes on one GPU: the model's lock timed for several worker counts, then one
worker under cProfile, with every masked pass already recorded (a long corpus's steady state).

    python -m bench.corpus_profile --prompts 40 --batch-size 162 --workers 1,2,3

The prompts are those of :mod:`bench.corpus_throughput` (the shipped forty-word windows' token counts,
random ids; the model from ``bench/configs`` with random weights, bf16; both modes, both controls). They
are traced once to record their passes (:mod:`explorer.pass_graphs`), then again for each worker count
with the model's lock replaced by one that adds up how long it is held, then once under cProfile
(its top functions by own time and by cumulative time are printed).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import threading
import time
from pathlib import Path

import torch

from bench.corpus_throughput import id_corpus, window_lengths
from bench.support import build
from explorer import pass_graphs
from explorer.corpus.local import run_corpus
from explorer.results import Settings


class TimedLock:
    """A lock that adds up how long it is held (``held``, seconds) and how often (``holds``)."""

    def __init__(self):
        self._lock, self._since, self.held, self.holds = threading.Lock(), 0.0, 0.0, 0

    def acquire(self, blocking: bool = True) -> bool:
        got = self._lock.acquire(blocking)
        if got:
            self._since = time.perf_counter()
        return got

    def release(self) -> None:
        self.held += time.perf_counter() - self._since
        self.holds += 1
        self._lock.release()


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--prompts", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=162)
    ap.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    lm = build(args.model, args.device, torch.bfloat16)
    corpus = id_corpus(window_lengths(args.prompts), lm.model.config.vocab_size)
    n = len(corpus.prompts)
    if lm.device.type == "cuda":
        pass_graphs.enable(lm.instrumentation, lm.device)
    settings = Settings(controls=True, max_tokens=256, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        run_corpus(lm, corpus, Path(tmp) / "record", settings)
        for workers in (int(w) for w in args.workers.split(",")):
            lock = TimedLock()
            lm.lock = lock  # type: ignore[assignment]
            start = time.perf_counter()
            run_corpus(lm, corpus, Path(tmp) / f"workers-{workers}", settings, workers=workers)
            wall = time.perf_counter() - start
            print(
                f"{workers} worker(s): {n / wall:.2f} prompts/s; lock held {lock.held / n * 1e3:.1f} ms per prompt "
                f"of {wall / n * 1e3:.1f} ms ({lock.holds / n:.1f} holds per prompt)",
                flush=True,
            )
        lm.lock = threading.Lock()
        profile = cProfile.Profile()
        profile.enable()
        run_corpus(lm, corpus, Path(tmp) / "profiled", settings)
        profile.disable()
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()
