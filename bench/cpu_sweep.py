"""CPU benchmark: one full s-Trace sweep (27 sizes) of the embedded model on a 40-token prompt.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cpu_sweep [--repeats 5] [--words 40,100,200] [--rows]

Prints the median time per stage, without and with the inverse and random controls, beside the cost
preview's estimate (:func:`explorer.cost.estimate_cost`). ``--words``: prompts of that many words (the
prompt's words repeated), for the estimate's fit. ``--rows``: also the share of the masked passes'
(subgraph, token) rows, over all layers, that their MLPs and attention projections are computed on (the
rest is skipped: no kept edge there).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

import explorer.intervene as intervene
from explorer import Settings, load_model, trace_prompt
from explorer.cost import estimate_cost

PROMPT = (
    "The old lighthouse keeper climbed the narrow stairs every evening to light the lamp, "
    "and for forty years the fishing boats and cargo ships that passed the rocky coast at night, in fog and rain, "
    "were guided safely home by"
)


class RowShares:
    """Counts, while in the ``with`` block, the rows of every masked pass: all of them, and those its MLPs
    and its attention projections are computed on."""

    def __enter__(self):
        self.dense = self.mlp = self.attention = 0
        self._plain = intervene.masked_pass

        def counted(inst, input_ids, masks, positions=None):
            n = len(masks.n_keep) * input_ids.shape[1]
            for layer in range(inst.adapter.n_layers):
                mlp, attention = masks.mlp_rows(layer), masks.attention_rows(layer)
                self.dense += n
                self.mlp += n if mlp is None else len(mlp[0])
                self.attention += n if attention is None else len(attention[0])
            return self._plain(inst, input_ids, masks, positions)

        intervene.masked_pass = counted
        return self

    def __exit__(self, *exc):
        intervene.masked_pass = self._plain

    def summary(self) -> str:
        return f"MLP rows {self.mlp / self.dense:.0%}, attention projections' rows {self.attention / self.dense:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--words", default="", help="prompts of these word counts (comma-separated)")
    parser.add_argument("--rows", action="store_true", help="the share of rows the passes compute")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    print(
        f"model load {time.perf_counter() - t0:.2f} s; {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    words = PROMPT.split() * 8
    prompts = [" ".join(words[: int(n)]) for n in args.words.split(",") if n] or [PROMPT]
    for prompt in prompts:
        n_tokens = len(lm.tokenizer(prompt)["input_ids"])
        for controls in (False, True):
            settings = Settings(controls=controls, max_tokens=max(256, n_tokens))
            trace_prompt(lm, prompt, settings)  # warm-up
            with RowShares() if args.rows else contextlib.nullcontext() as rows:
                runs = [trace_prompt(lm, prompt, settings).timings for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            stages = ", ".join(f"{k} {v:.3f}" for k, v in med.items() if k != "total")
            estimate = estimate_cost(lm.model.config, n_tokens, settings, "cpu", "float32").seconds
            print(
                f"{n_tokens} tokens, controls={controls}: median total {med['total']:.2f} s ({stages}) "
                f"over {args.repeats} runs; estimated {estimate:.2f} s"
                + (f"; {rows.summary()}" if rows is not None else "")
            )


if __name__ == "__main__":
    main()
