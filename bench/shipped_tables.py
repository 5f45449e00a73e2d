"""The shipped results' tables in bench/RESULTS.md, from explorer/data/results (or --root), and with
``--before DIR`` (a copy of earlier results of the same runs) what moved between the two.

    python -m bench.shipped_tables [--root DIR] [--before DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from explorer.corpus import stats
from explorer.corpus.store import Results, load_results, shipped_root

RUNS = {
    "smollm2-135m": "smollm2-135m, project",
    "gemma3-270m": "gemma3-270m, project",
    "smollm2-135m-kjv40": "smollm2-135m, Bible 40 words",
    "gemma3-270m-kjv40": "gemma3-270m, Bible 40 words",
}
MODES = ("all", "attention-kept")


def _rho(c: stats.Correlation) -> str:
    return f"{c.rho:+.2f} (p {c.p:.0e})"


def main_table(results: dict[str, Results]) -> list[str]:
    lines = [
        "| results | mode | n | tokens (median) | density (log s) mean | rho(density, entropy) "
        "| same, linear-s density | rho(density, tokens) | top-1 first kept at (median s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for mode in MODES:
            df = stats.prompts_of(res, mode)
            tokens = stats.spearman(df["density"], df["n_tokens"])
            lines.append(
                f"| {RUNS[name]} | {mode} | {len(df)} | {df['n_tokens'].median():.0f} | {df['density'].mean():.2f} "
                f"| {_rho(stats.density_entropy(res, mode))} | {_rho(stats.density_entropy(res, mode, 'linear'))} "
                f"| {tokens.rho:+.2f} | {df['recovery_1'].median():.2g} |"
            )
    return lines


def cross_model(results: dict[str, Results]) -> list[str]:
    lines = []
    for a, b, what in (
        ("smollm2-135m", "gemma3-270m", "project set"),
        ("smollm2-135m-kjv40", "gemma3-270m-kjv40", "Bible windows"),
    ):
        for mode in MODES:
            pair = stats.paired_density(results[a], results[b], mode)
            c = stats.spearman(pair.iloc[:, -2], pair.iloc[:, -1])
            lines.append(f"- {what}, `{mode}`: rho {c.rho:+.2f} (p {c.p:.0e}, n {c.n})")
    return lines


def nucleus_at_full(results: dict[str, Results]) -> list[str]:
    lines = [
        "| results | mode | shared nucleus 99 at s = 1 | 90 | below 90 | max TV at s = 1 |",
        "|---|---|---|---|---|---|",
    ]
    for name, res in results.items():
        for mode in MODES:
            full = stats.strata_of(res, mode)
            full = full[full["size"] == 1.0]
            nuc = full["shared_nucleus"]
            lines.append(
                f"| {RUNS[name]} | {mode} | {(nuc == 99).mean():.0%} | {(nuc == 90).mean():.0%} "
                f"| {(nuc < 90).mean():.0%} | {full['tv'].max():.1e} |"
            )
    return lines


def moved(before: dict[str, Results], after: dict[str, Results]) -> list[str]:
    lines = [
        "| results | mode | density mean before / after | change: mean, largest | max TV change (same strata) "
        "| strata whose shared nucleus changed | prompts whose top-1 first-kept size changed |",
        "|---|---|---|---|---|---|---|",
    ]
    key = ["prompt_id", "mode", "size"]
    for name in after:
        for mode in MODES:
            b, a = stats.prompts_of(before[name], mode), stats.prompts_of(after[name], mode)
            m = b.merge(a, on="prompt_id", suffixes=("_b", "_a"))
            d = m["density_a"] - m["density_b"]
            sb, sa = stats.strata_of(before[name], mode), stats.strata_of(after[name], mode)
            s = sb.merge(sa, on=key, suffixes=("_b", "_a"))
            tv = (s["tv_a"] - s["tv_b"]).abs().max()
            nuc = (s["shared_nucleus_a"] != s["shared_nucleus_b"]).mean()
            rec = ~np.isclose(m["recovery_1_a"].fillna(-1), m["recovery_1_b"].fillna(-1))
            lines.append(
                f"| {RUNS[name]} | {mode} | {m['density_b'].mean():.2f} / {m['density_a'].mean():.2f} "
                f"| {d.mean():+.3f}, {d.abs().max():.3f} | {tv:.1e} | {nuc:.1%} | {rec.mean():.0%} |"
            )
    return lines


def _load(root: Path) -> dict[str, Results]:
    return {name: load_results(root / name) for name in RUNS if (root / name).is_dir()}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--root", type=Path, default=shipped_root())
    ap.add_argument("--before", type=Path, default=None)
    args = ap.parse_args()
    results = _load(args.root)
    pd.set_option("display.width", 200)
    print("\n".join(main_table(results)), "", "\n".join(cross_model(results)), "", sep="\n")
    print("\n".join(nucleus_at_full(results)), "", sep="\n")
    if args.before:
        print("\n".join(moved(_load(args.before), results)))


if __name__ == "__main__":
    main()
