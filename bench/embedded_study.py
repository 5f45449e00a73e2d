"""The embedded model over the small varied prompt set, in both ablation modes, with both controls.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.embedded_study [--model smollm2-135m] [--out bench/out]

Prints, per mode: the mean TV curve of the trace and of the inverse and random controls, the median
size at which the top-1 token comes back (shared nucleus >= 1), and density statistics; writes every
trace as JSON under --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
from importlib.resources import files
from pathlib import Path

import numpy as np

from explorer import Settings, load_model, trace_prompt
from explorer.export import to_json
from explorer.options import DEFAULT_SIZES


def prompts() -> list[str]:
    text = files("explorer.data").joinpath("prompts_small.txt").read_text(encoding="utf-8")
    return [line.replace("\\n", "\n") for line in text.splitlines() if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--out", default="bench/out/embedded_study")
    parser.add_argument("--weights", default="l1")
    args = parser.parse_args()
    lm = load_model(args.model, device="cpu", dtype="float32")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    items = prompts()
    for mode in ("all", "attention-kept"):
        settings = Settings(mode=mode, controls=True, weighting=args.weights)
        traces = []
        for i, prompt in enumerate(items):
            tr = trace_prompt(lm, prompt, settings)
            (out / f"{mode}-{i:03d}.json").write_text(to_json(tr, indent=None))
            traces.append(tr)
        full_tv = [tr.strata[-1].trace.tv for tr in traces]
        print(
            f"\n### {args.model}, mode `{mode}`, weights {args.weights}, {len(traces)} prompts "
            f"({min(len(t.tokens) for t in traces)}-{max(len(t.tokens) for t in traces)} tokens)\n"
        )
        print(f"max TV of the trace at s = 1: {max(full_tv):.2e}\n")
        print("| s | prompts | trace TV | inverse TV | random TV | trace top-1 kept |")
        print("|---|---|---|---|---|---|")
        for size in DEFAULT_SIZES:
            found = [next((s for s in tr.strata if s.size == size), None) for tr in traces]
            rows = [r for r in found if r is not None]
            if not rows:
                continue
            mean = lambda v: float(np.mean([r.outputs[v].tv for r in rows]))
            kept = np.mean([r.trace.shared_nucleus >= 1 for r in rows])
            print(
                f"| {size:g} | {len(rows)} | {mean('trace'):.3f} | {mean('inverse'):.3f} | "
                f"{mean('random'):.3f} | {kept:.0%} |"
            )
        top1 = [tr.recovery[1] for tr in traces]
        dens = [tr.density for tr in traces]
        dens_rand = [tr.density_of("random") for tr in traces]
        print(
            f"\nmedian size at which the top-1 token comes back: {statistics.median(top1):g} "
            f"(quartiles {np.quantile(top1, 0.25):g} - {np.quantile(top1, 0.75):g})"
        )
        print(
            f"density (log s): mean {np.mean(dens):.3f}, median {np.median(dens):.3f}, sd {np.std(dens):.3f}, "
            f"min {min(dens):.3f}, max {max(dens):.3f}; random control's density mean {np.mean(dens_rand):.3f}"
        )
        entropies = [tr.full.entropy for tr in traces]
        from scipy.stats import spearmanr

        rho, p_value = spearmanr(dens, entropies)  # a (statistic, pvalue) named tuple
        print(f"Spearman rho(density, full-model entropy) = {rho:.3f} (p = {p_value:.3g})")
        summary = {"mode": mode, "density": dens, "entropy": entropies, "top1_size": top1, "prompts": items}
        (out / f"summary-{mode}.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
