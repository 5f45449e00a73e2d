"""CPU benchmark: one full s-Trace sweep (27 sizes) of the embedded model on a 40-token prompt.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.cpu_sweep [--repeats 5]

Prints the median time per stage, without and with the inverse and random controls.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from explorer import Settings, load_model, trace_prompt

PROMPT = (
    "The old lighthouse keeper climbed the narrow stairs every evening to light the lamp, "
    "and for forty years the fishing boats and cargo ships that passed the rocky coast at night, in fog and rain, "
    "were guided safely home by"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lm = load_model("smollm2-135m", device="cpu", dtype="float32")
    print(
        f"model load {time.perf_counter() - t0:.2f} s; {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    n_tokens = len(lm.tokenizer(PROMPT)["input_ids"])
    for controls in (False, True):
        settings = Settings(controls=controls)
        trace_prompt(lm, PROMPT, settings)  # warm-up
        runs = [trace_prompt(lm, PROMPT, settings).timings for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        stages = ", ".join(f"{k} {v:.3f}" for k, v in med.items() if k != "total")
        print(
            f"{n_tokens} tokens, controls={controls}: median total {med['total']:.2f} s ({stages}) "
            f"over {args.repeats} runs"
        )


if __name__ == "__main__":
    main()
