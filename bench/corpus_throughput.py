"""Corpus throughput on one GPU: prompts per second of ``explorer corpus`` with a model loaded once, for
several worker counts and batch sizes, the GPU's utilisation while it runs, and whether the rows agree.

    python -m bench.corpus_throughput --model llama-3.1-8b --prompts 200 --runs 1x32,2x32,2x162
    python -m bench.corpus_throughput --prompts 100 --runs 1x32e,1x32,2x32
    python -m bench.corpus_throughput --prompts 400 --runs 2x162,3x162


The prompts have the token counts of the shipped forty-word Bible windows (``smollm2-135m-kjv40``: the
papers' setting, 42-59 tokens) with random token ids, for a model with random weights from
``bench/configs`` (bf16); both modes, both controls, 27 sizes. A run ``WxB`` traces with ``W`` workers
(threads sharing the model) and ``B`` masked subgraphs per forward pass. Its time is the tracing time once
the model is loaded (:attr:`explorer.corpus.driver.RunSummary.trace_seconds`); the utilisation is the
mean of ``nvidia-smi``'s samples every 100 ms over the run. Rows are compared with the first run's, the
``seconds`` column aside (or with those of ``--against``, another run's ``--keep``, say another version's):
identical, or the largest difference of the float columns. A run ``WxBe``
runs the masked passes eagerly; the others replay them as CUDA graphs where a length repeats
(explorer/pass_graphs.py).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from bench.support import build
from explorer import pass_graphs
from explorer.corpus.local import run_corpus
from explorer.corpus.sources import Corpus, Prompt, prompt_id
from explorer.results import Settings

WINDOWS = Path(__file__).resolve().parent.parent / "explorer" / "data" / "results" / "smollm2-135m-kjv40"


def window_lengths(n: int) -> list[int]:
    """The token counts of the first ``n`` shipped forty-word windows (one row per prompt and mode); past
    the 200 shipped, their counts again in the same order (a longer corpus of the same lengths)."""
    table = pq.read_table(WINDOWS / "part-00000.parquet", columns=["prompt_index", "n_tokens"])
    by_prompt = dict(zip(table.column("prompt_index").to_pylist(), table.column("n_tokens").to_pylist()))
    lengths = [by_prompt[i] for i in sorted(by_prompt)]
    return [lengths[i % len(lengths)] for i in range(n)]


def id_corpus(lengths: list[int], vocab: int) -> Corpus:
    """Prompts of random token ids (space-separated, :class:`bench.support.IdTokenizer`) of these lengths."""
    rng = np.random.default_rng(7)
    texts = [" ".join(map(str, rng.integers(100, vocab - 100, n))) for n in lengths]
    return Corpus("random ids", [Prompt(prompt_id(i, t, None), t) for i, t in enumerate(texts)])


class Utilisation:
    """``nvidia-smi``'s GPU utilisation, sampled every 100 ms while in the ``with`` block: ``mean`` (%)."""

    def __enter__(self):
        cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) if torch.cuda.is_available() else None
        return self

    def __exit__(self, *exc):
        self.mean = float("nan")
        if self._proc is None:
            return
        self._proc.terminate()
        out, _ = self._proc.communicate()
        samples = [float(x) for x in out.split() if x.strip().replace(".", "").isdigit()]
        self.mean = sum(samples) / len(samples) if samples else float("nan")


def rows_of(folder: Path):
    """The run's rows sorted by prompt, mode and size, without the ``seconds`` column."""
    frames = [pq.read_table(p).to_pandas() for p in sorted(folder.glob("part-*.parquet"))]
    import pandas as pd

    rows = pd.concat(frames).drop(columns=["seconds"]).sort_values(["prompt_index", "mode", "size"])
    return rows.reset_index(drop=True)


def compare(a, b) -> str:
    if a.equals(b):
        return "identical"
    floats = [c for c in a.columns if a[c].dtype.kind == "f"]
    rest_a, rest_b = a.drop(columns=floats).astype(str), b.drop(columns=floats).astype(str)
    counts = {c: int((rest_a[c] != rest_b[c]).sum()) for c in rest_a.columns}
    differing = [f"{c} ({n} rows)" for c, n in counts.items() if n]
    worst, where = 0.0, ""
    nan_moved = []
    for c in floats:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        if not np.array_equal(np.isnan(x), np.isnan(y)):
            nan_moved.append(f"{c} ({np.isnan(x).sum()} against {np.isnan(y).sum()})")
        both = ~np.isnan(x) & ~np.isnan(y)
        gap = float(np.abs(x[both] - y[both]).max(initial=0.0))
        worst, where = (gap, c) if gap > worst else (worst, where)
    moved = f"; NaN in other places: {', '.join(nan_moved)}" if nan_moved else ""
    rest = f"OTHER COLUMNS DIFFER: {', '.join(differing)}" if differing else "other columns equal"
    return f"{rest}; largest float difference {worst:.2e} ({where}){moved}"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b")
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--runs", default="1x32,2x32,2x162", help="workers x batch size, comma-separated")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--keep", type=Path, help="write the first run's rows to this Parquet file")
    ap.add_argument("--against", type=Path, help="compare every run with the rows of this file (--keep's)")
    args = ap.parse_args()
    lm = build(args.model, args.device, torch.bfloat16 if args.device == "cuda" else torch.float32)
    corpus = id_corpus(window_lengths(args.prompts), lm.model.config.vocab_size)
    lengths = [len(p.text.split()) for p in corpus.prompts]
    spread = f"{min(lengths)}-{max(lengths)} tokens (median {np.median(lengths):.0f})"
    print(f"{args.model}: {len(lengths)} prompts of {spread}")
    first = pq.read_table(args.against).to_pandas() if args.against else None
    with tempfile.TemporaryDirectory() as tmp:
        warm = Settings(controls=True, max_tokens=256)
        run_corpus(lm, replace(corpus, prompts=corpus.prompts[:3]), Path(tmp) / "warm", warm)
        for run in args.runs.split(","):
            eager = run.endswith("e")
            workers, batch = (int(x) for x in run.removesuffix("e").split("x"))
            pass_graphs.disable(lm.instrumentation)
            graphs = None if eager else pass_graphs.enable(lm.instrumentation, lm.device)
            settings = Settings(controls=True, max_tokens=256, batch_size=batch)
            folder = Path(tmp) / run
            with Utilisation() as gpu:
                summary = run_corpus(lm, corpus, folder, settings, workers=workers)
            rows = rows_of(folder)
            agreement = "reference" if first is None else compare(first, rows)
            if first is None:
                first = rows
                if args.keep:
                    rows.to_parquet(args.keep)
            print(
                f"{workers} worker(s), batch {batch}{', eager' if eager else ''}: {summary.traced} prompts in "
                f"{summary.trace_seconds:.1f} s = "
                f"{summary.traced / summary.trace_seconds:.2f} prompts/s; GPU utilisation {gpu.mean:.0f}%; "
                f"{'' if graphs is None else f'{graphs.captures} captures, {graphs.replays} replays; '}"
                f"rows: {agreement}",
                flush=True,
            )


if __name__ == "__main__":
    main()
