"""Corpus statistics (METHOD.md sections 6-7) over loaded results: density against entropy, the mean error
curve with its inter-quartile band, nucleus recovery, top-1 token frequency per size, and density across
models. Pure functions of :class:`explorer.corpus.store.Results`, returning small DataFrames.

For an all-positions run (:attr:`Results.positions <explorer.corpus.store.Results.positions>`, one row per
text, position and mode): density against the position's context length and against the next token's log
unigram frequency (:func:`density_position`, :func:`density_next_frequency`, :func:`position_correlations`),
and the mean density per context length (:func:`density_by_position`). These take the positions table
itself, so that any table with its columns (a synthetic one, a filtered one) can be given. A short
context's graph has few edges, and the sizes whose edge count rounds to 0 are not evaluated, so its
density integrates over fewer decades of ``s`` (a smaller density): :func:`full_grid` keeps the positions
that evaluate the whole grid."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import cast

import numpy as np
import pandas as pd
from scipy import stats

from explorer.corpus.store import Results
from explorer.options import RECOVERY_LEVELS

VARIANT_COLUMNS = {"trace": "tv", "random": "tv_random", "inverse": "tv_inverse"}


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation over ``n`` pairs (pairs with a missing value are left out)."""

    rho: float
    p: float
    n: int

    def __str__(self) -> str:
        return f"rho = {self.rho:+.2f} (p = {self.p:.2g}, n = {self.n})"


def spearman(x, y) -> Correlation:
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3:
        return Correlation(float("nan"), float("nan"), int(ok.sum()))
    res = stats.spearmanr(x[ok], y[ok])
    # scipy builds its SignificanceResult class at run time (_make_tuple_bunch): pyright sees neither field
    rho, p = res.statistic, res.pvalue  # pyright: ignore[reportAttributeAccessIssue]
    return Correlation(float(rho), float(p), int(ok.sum()))


def prompts_of(results: Results, mode: str) -> pd.DataFrame:
    """Per-prompt rows of one ablation mode."""
    df = results.prompts
    return cast(pd.DataFrame, df[df["mode"] == mode]).reset_index(drop=True)  # a boolean mask selects rows


def strata_of(results: Results, mode: str) -> pd.DataFrame:
    df = results.strata
    return cast(pd.DataFrame, df[df["mode"] == mode]).reset_index(drop=True)


def density_entropy(results: Results, mode: str, axis: str = "log") -> Correlation:
    """Spearman rho of density against the full model's entropy, over the prompts."""
    df = prompts_of(results, mode)
    return spearman(df["density" if axis == "log" else "density_linear"], df["entropy"])


def mean_curve(results: Results, mode: str) -> pd.DataFrame:
    """TV against size over the corpus: per size and variant (trace, random, inverse) the mean, the
    25th and 75th percentiles and the number of prompts. Variants without values are left out."""
    df = strata_of(results, mode)
    out = []
    for variant, col in VARIANT_COLUMNS.items():
        for size, vals in df.groupby("size")[col]:
            v = vals.dropna().to_numpy(dtype=float)
            if len(v):
                out.append(
                    {
                        "size": size,
                        "variant": variant,
                        "mean": v.mean(),
                        "q25": np.percentile(v, 25),
                        "q75": np.percentile(v, 75),
                        "n": len(v),
                    }
                )
    return pd.DataFrame(out, columns=["size", "variant", "mean", "q25", "q75", "n"])


def nucleus_recovery(results: Results, mode: str) -> pd.DataFrame:
    """Per k (1, 10, 50, 90): the share of prompts whose shared nucleus reaches k at some evaluated size,
    and the median and quartiles of the smallest such size over those prompts."""
    df = prompts_of(results, mode)
    rows = []
    for k in RECOVERY_LEVELS:
        v = df[f"recovery_{k}"].dropna().to_numpy(dtype=float)
        q = np.percentile(v, [25, 50, 75]) if len(v) else [np.nan] * 3
        rows.append({"k": k, "recovered": len(v) / max(len(df), 1), "q25": q[0], "median": q[1], "q75": q[2]})
    return pd.DataFrame(rows)


RECOVERY_BY = (1e-2, 0.1, 0.4)
"""The sizes :func:`recovery_by` reads the shares at: the end of the construction phase, a tenth of the
graph, and 0.4 (where a small model's top-1 usually comes back)."""


def recovery_by(results: Results, mode: str, sizes=RECOVERY_BY) -> pd.DataFrame:
    """Per k (1, 10, 50, 90) and size ``by`` of ``sizes``: the share of prompts whose shared nucleus
    reaches k at an evaluated size of at most ``by`` (``k, by, share, n``). Unlike the share at some size
    (at ``s = 1`` every subgraph is the whole model), it tells prompts apart."""
    df = prompts_of(results, mode)
    rows = []
    for k in RECOVERY_LEVELS:
        first = df[f"recovery_{k}"].to_numpy(dtype=float)  # NaN: never reached
        for by in sizes:
            reached = np.nan_to_num(first, nan=np.inf) <= by * (1 + 1e-9)
            rows.append(
                {"k": k, "by": float(by), "share": float(reached.mean()) if len(first) else np.nan, "n": len(first)}
            )
    return pd.DataFrame(rows, columns=["k", "by", "share", "n"])


def frequency_by_size(results: Results, mode: str) -> pd.DataFrame:
    """Per size: the mean unigram frequency (per million, and mean log10(1 + per million)) of the
    subgraph's top-1 token against that of the full model's top-1, over the prompts; and the share of
    prompts whose subgraph keeps the full model's top-1."""
    full_cols = ["prompt_id", "full_top1_freq", "full_top1_id"]
    df = strata_of(results, mode).merge(prompts_of(results, mode)[full_cols], on="prompt_id")
    rows = []
    for size, g in df.groupby("size"):
        sub, full = g["top1_freq"].astype(float), g["full_top1_freq"].astype(float)
        same = cast(pd.Series, g["top1_id"] == g["full_top1_id"])  # two columns compared
        rows.append(
            {
                "size": size,
                "trace_mean": sub.mean(),
                "full_mean": full.mean(),
                "trace_mean_log": np.log10(1 + sub).mean(),
                "full_mean_log": np.log10(1 + full).mean(),
                "same_top1": float(same.mean()),
            }
        )
    return pd.DataFrame(rows)


def _key(df: pd.DataFrame) -> pd.Series:
    return cast(pd.Series, df["text"] + "\x00" + df["gold"].fillna(""))  # two columns joined


def paired_density(a: Results, b: Results, mode: str) -> pd.DataFrame:
    """Density of the prompts both results hold (matched on text and gold): ``text, density_a, density_b``."""
    pa_, pb = prompts_of(a, mode), prompts_of(b, mode)
    left = pd.DataFrame({"key": _key(pa_), "text": pa_["text"], "density_a": pa_["density"]})
    right = pd.DataFrame({"key": _key(pb), "density_b": pb["density"]})
    return left.merge(right, on="key").drop(columns="key")


def cross_model(results: list[Results], mode: str) -> pd.DataFrame:
    """Spearman rho of per-prompt density for every pair of results, on their shared prompts."""
    rows = []
    for a, b in combinations(results, 2):
        pair = paired_density(a, b, mode)
        c = spearman(pair["density_a"], pair["density_b"])
        rows.append({"model_a": a.model_id, "model_b": b.model_id, "rho": c.rho, "p": c.p, "n": c.n})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "rho", "p", "n"])


# all positions ------------------------------------------------------------------------------------

POSITION_AGAINST = {"position": "context length (tokens)", "next_frequency": "next token's log frequency"}


def full_grid(positions: pd.DataFrame, n_sizes: int | None = None) -> pd.DataFrame:
    """The positions that evaluate ``n_sizes`` sizes (default: the most of any position of the table; the
    run's grid, ``len(run.settings["sizes"])``, when given): those whose density integrates over the whole
    grid, not a shorter range that skips the sizes with no edge."""
    counts = cast(pd.Series, positions["n_sizes"])
    want = n_sizes if n_sizes is not None else (int(counts.max()) if len(counts) else 0)
    return cast(pd.DataFrame, positions[counts >= want]).reset_index(drop=True)


def positions_in(positions: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The rows of one ablation mode of a positions table (:attr:`Results.positions`)."""
    return cast(pd.DataFrame, positions[positions["mode"] == mode]).reset_index(drop=True)


def next_freq_log(positions: pd.DataFrame) -> pd.Series:
    """log10(1 + the next token's unigram frequency per million) per row (NaN where it has none: after the
    last token of a text, or a run without frequencies)."""
    return cast(pd.Series, np.log10(1.0 + positions["next_token_freq"].astype(float)))


def _density(df: pd.DataFrame, axis: str) -> pd.Series:
    return cast(pd.Series, df["density" if axis == "log" else "density_linear"])


def density_position(positions: pd.DataFrame, mode: str, axis: str = "log") -> Correlation:
    """Spearman rho of density against the context length (``n_context = position + 1``), over every
    position of every text in ``mode``."""
    df = positions_in(positions, mode)
    return spearman(df["n_context"], _density(df, axis))


def density_next_frequency(positions: pd.DataFrame, mode: str, axis: str = "log") -> Correlation:
    """Spearman rho of density against the next token's log unigram frequency, over the positions of
    ``mode`` that have one (ranks: the same as against the frequency itself)."""
    df = positions_in(positions, mode)
    return spearman(next_freq_log(df), _density(df, axis))


def position_correlations(positions: pd.DataFrame, modes: list[str] | None = None, axis: str = "log") -> pd.DataFrame:
    """Per mode (default: every mode of the table) and per quantity (``position``, ``next_frequency``):
    Spearman rho of density against it, its p-value and the number of positions; columns ``mode,
    against, rho, p, n``."""
    modes = list(dict.fromkeys(positions["mode"])) if modes is None else modes
    rows = []
    for mode in modes:
        for against, fn in (("position", density_position), ("next_frequency", density_next_frequency)):
            c = fn(positions, mode, axis)
            rows.append({"mode": mode, "against": against, "rho": c.rho, "p": c.p, "n": c.n})
    return pd.DataFrame(rows, columns=["mode", "against", "rho", "p", "n"])


def density_by_position(positions: pd.DataFrame, mode: str, axis: str = "log") -> pd.DataFrame:
    """Per context length: the mean density over the texts, its 25th and 75th percentiles and the number
    of texts; columns ``n_context, mean, q25, q75, n``."""
    df = positions_in(positions, mode)
    out = []
    for n_context, vals in _density(df, axis).groupby(df["n_context"]):
        v = vals.dropna().to_numpy(dtype=float)
        if len(v):
            out.append(
                {
                    "n_context": int(cast(int, n_context)),
                    "mean": v.mean(),
                    "q25": np.percentile(v, 25),
                    "q75": np.percentile(v, 75),
                    "n": len(v),
                }
            )
    return pd.DataFrame(out, columns=["n_context", "mean", "q25", "q75", "n"])
