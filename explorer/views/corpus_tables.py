"""The corpus tables: data frames for the Corpus and Compare pages, built from loaded corpus results
(:class:`explorer.corpus.store.Results`) with :mod:`explorer.corpus.stats`.

Every frame carries ``model`` (a label, unique among the results shown), ``model_id`` (what the Trace page
loads) and ``mode`` (the ablation mode), so that one chart can hold several models and both modes. Nothing
here imports Streamlit; :mod:`explorer.views.scatter` and :mod:`explorer.views.corpus_curves` draw these
frames.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from explorer.corpus import stats
from explorer.corpus.frequency import FILE as FREQUENCY_FILE
from explorer.corpus.store import PART_RE, RUN_FILE, Results
from explorer.options import MODES
from explorer.views.labels import MODE_LABELS, format_size, size_texts

OVERLAY = "overlay both"
MODE_CHOICES = {**MODE_LABELS, OVERLAY: "overlay both modes"}
AXES = {"log": "over log10 s (the method)", "linear": "over linear s (withdrawn paper)"}
SELECTION_FIELDS = ["model", "mode", "prompt_id"]
SCATTER_COLUMNS = [
    "model",
    "model_id",
    "weighting",
    "mode",
    "prompt_id",
    "prompt_index",
    "text",
    "gold",
    "n_tokens",
    "entropy",
    "density",
    "full_top1_token",
    "full_top1_prob",
    "full_top1_freq",
    "freq_log",
    "recovery_1",
    "top1_first_kept",
]


def modes_of(choice: str, available) -> list[str]:
    """The ablation modes a mode choice (``all``, ``attention-kept`` or :data:`OVERLAY`) shows, among
    those the results hold."""
    wanted = list(MODES) if choice == OVERLAY else [choice]
    return [m for m in wanted if m in set(available)]


def labels(results: list[Results]) -> list[str]:
    """One label per results folder: its model id; where two share a model id, the folder's name if it
    holds the model id (``smollm2-135m-kjv40``), else both (``gpt2 (run-a)``), and never the model id
    twice (a folder named as its model is labelled by the model id alone)."""
    counts = Counter(r.model_id for r in results)
    out = []
    for r in results:
        name = Path(r.folder).name
        if counts[r.model_id] == 1 or name == r.model_id:
            label = r.model_id
        elif r.model_id in name:
            label = name
        else:
            label = f"{r.model_id} ({name})"
        while label in out:
            label += "'"
        out.append(label)
    return out


def signature(folder: Path | str) -> tuple:
    """Names, sizes and modification times of a results folder's files: changes when a run adds to it,
    so a cache keyed by it reloads the folder."""
    folder = Path(folder)
    try:
        names = sorted(p for p in os.listdir(folder) if p in (RUN_FILE, FREQUENCY_FILE) or PART_RE.match(p))
    except OSError:
        return ()
    out = []
    for name in names:
        try:
            st = os.stat(folder / name)
        except OSError:
            continue
        out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def summary(results: list[Results]) -> pd.DataFrame:
    """One row per results folder: model, source, prompts, rows (per prompt, or every position), modes,
    sizes, weighting, controls, folder."""
    rows = []
    for label, r in zip(labels(results), results):
        s = r.run.settings
        prompt_ids = cast(pd.Series, r.table["prompt_id"])
        rows.append(
            {
                "model": label,
                "source": r.run.source,
                "prompts": int(prompt_ids.nunique()),
                "rows": "every position" if r.all_positions else "per prompt",
                "modes": ", ".join(r.modes),
                "sizes": len(s.get("sizes", [])),
                "weighting": s.get("weighting", "?"),
                "controls": bool(s.get("controls", False)),
                "frequencies": r.frequencies.source if r.frequencies else "none",
                "folder": str(r.folder),
            }
        )
    return pd.DataFrame(rows)


def prompt_table(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """The per-prompt rows of every results folder in ``modes``, with ``model``, ``model_id`` and
    ``weighting`` columns in front (the table the page offers for download)."""
    parts = []
    for label, r in zip(labels(results), results):
        df = r.prompts
        df = df[df["mode"].isin(modes)].copy()
        df.insert(0, "weighting", r.run.settings.get("weighting", "l1"))
        df.insert(0, "model_id", r.model_id)
        df.insert(0, "model", label)
        parts.append(df)
    if not parts:
        return pd.DataFrame(columns=["model", "model_id", "weighting"])
    return pd.concat(parts, ignore_index=True)


def scatter_frame(table: pd.DataFrame, axis: str = "log") -> pd.DataFrame:
    """Points of the density/entropy scatter from :func:`prompt_table`: ``density`` is the density over
    log10 s (``axis="log"``) or over linear s; ``freq_log`` is log10(1 + the full model's top-1 token
    frequency per million); ``top1_first_kept`` is ``recovery_1`` written as a size, or ``never``."""
    df = table.copy()
    if axis == "linear":
        df["density"] = df["density_linear"]
    df["freq_log"] = np.log10(1.0 + df["full_top1_freq"].astype(float))
    df["top1_first_kept"] = [t or "never" for t in size_texts(df["recovery_1"])]
    return cast(pd.DataFrame, df[SCATTER_COLUMNS]).reset_index(drop=True)


def correlations(results: list[Results], modes: list[str], axis: str = "log") -> pd.DataFrame:
    """Spearman rho of density against the full model's entropy, per model and mode."""
    rows = []
    for label, r in zip(labels(results), results):
        for mode in modes:
            if mode in r.modes:
                c = stats.density_entropy(r, mode, axis)
                rows.append({"model": label, "mode": mode, "rho": c.rho, "p": c.p, "n": c.n})
    return pd.DataFrame(rows, columns=["model", "mode", "rho", "p", "n"])


def length_correlation(results: Results, mode: str = "all") -> stats.Correlation:
    """Spearman rho of density against the prompt's length in tokens, in ``mode``."""
    p = stats.prompts_of(results, mode)
    return stats.spearman(p["density"], p["n_tokens"])


def _per_mode(results: list[Results], modes: list[str], fn) -> pd.DataFrame:
    parts = []
    for label, r in zip(labels(results), results):
        for mode in modes:
            if mode in r.modes:
                df = fn(r, mode)
                df.insert(0, "mode", mode)
                df.insert(0, "model", label)
                parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model", "mode"])


def curve_frame(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """:func:`stats.mean_curve` of every model and mode: ``model, mode, size, variant, mean, q25, q75, n``."""
    return _per_mode(results, modes, stats.mean_curve)


def recovery_frame(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """:func:`stats.nucleus_recovery` of every model and mode: ``model, mode, k, recovered, q25, median, q75``."""
    return _per_mode(results, modes, stats.nucleus_recovery)


def recovery_by_frame(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """:func:`stats.recovery_by` of every model and mode: ``model, mode, k, by, share, n``."""
    return _per_mode(results, modes, stats.recovery_by)


def recovery_table(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """Per model, mode and k, what the Nucleus recovery view draws, as a table to read: the share of
    prompts reaching k by each size of :data:`stats.RECOVERY_BY` and at some size, and the smallest size
    reaching k (quartiles and median) written as sizes are everywhere (``1e-3``, ``0.04``)."""
    rec = recovery_frame(results, modes)
    if rec.empty:
        return rec
    by = recovery_by_frame(results, modes)
    wide = by.pivot_table(index=["model", "mode", "k"], columns="by", values="share", sort=False)
    wide.columns = [f"by s = {format_size(float(b))}" for b in wide.columns]
    out = rec.merge(wide.reset_index(), on=["model", "mode", "k"], how="left")
    out = out.rename(columns={"recovered": "at some size"})
    for c in ("q25", "median", "q75"):
        out[c] = size_texts(out[c])
    shares = [c for c in out.columns if c.startswith("by s = ")]
    return cast(pd.DataFrame, out[["model", "mode", "k", *shares, "at some size", "q25", "median", "q75"]])


def has_frequencies(results: Results) -> bool:
    """Whether the results hold unigram frequencies of the full model's top-1 tokens."""
    return results.frequencies is not None and cast(pd.Series, results.prompts["full_top1_freq"]).notna().any()


def frequency_frame(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """:func:`stats.frequency_by_size` of every model and mode that has token frequencies, as a long table:
    ``model, mode, size, top1`` (the subgraph's or the full model's top-1), ``mean_log``, ``mean``,
    ``same_top1``."""
    parts = []
    for label, r in zip(labels(results), results):
        if not has_frequencies(r):
            continue
        for mode in modes:
            if mode not in r.modes:
                continue
            f = stats.frequency_by_size(r, mode)
            for who, prefix in (("subgraph's top-1", "trace"), ("full model's top-1", "full")):
                parts.append(
                    pd.DataFrame(
                        {
                            "model": label,
                            "mode": mode,
                            "size": f["size"],
                            "top1": who,
                            "mean_log": f[f"{prefix}_mean_log"],
                            "mean": f[f"{prefix}_mean"],
                            "same_top1": f["same_top1"],
                        }
                    )
                )
    cols = ["model", "mode", "size", "top1", "mean_log", "mean", "same_top1"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def pair_frame(a: Results, b: Results, label_a: str, label_b: str, modes: list[str]) -> pd.DataFrame:
    """:func:`stats.paired_density` of two models per mode (density over log10 s, the prompts both hold):
    ``mode, text, density_a, density_b, model_a, model_b, model_id_a, model_id_b``."""
    parts = []
    for mode in modes:
        if mode in a.modes and mode in b.modes:
            df = stats.paired_density(a, b, mode)
            df.insert(0, "mode", mode)
            parts.append(df)
    df = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=["mode", "text", "density_a", "density_b"])
    )
    df["model_a"], df["model_b"] = label_a, label_b
    df["model_id_a"], df["model_id_b"] = a.model_id, b.model_id
    return df


def cross_table(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """:func:`stats.cross_model` per mode, with model labels: ``mode, model_a, model_b, rho, p, n``."""
    names = labels(results)
    parts = []
    for mode in modes:
        have = [(n, r) for n, r in zip(names, results) if mode in r.modes]
        if len(have) < 2:
            continue
        df = stats.cross_model([r for _, r in have], mode)
        pairs = [(x, y) for i, (x, _) in enumerate(have) for (y, _) in have[i + 1 :]]
        df["model_a"] = [x for x, _ in pairs]
        df["model_b"] = [y for _, y in pairs]
        df.insert(0, "mode", mode)
        parts.append(df)
    cols = ["mode", "model_a", "model_b", "rho", "p", "n"]
    return cast(pd.DataFrame, pd.concat(parts, ignore_index=True)[cols]) if parts else pd.DataFrame(columns=cols)


def selected_row(frame: pd.DataFrame, points: list[dict] | None, fields=SELECTION_FIELDS) -> dict | None:
    """The row of ``frame`` that a chart selection (a list of ``{field: value}`` for the selected points,
    as ``st.altair_chart(on_select=...)`` returns it) names; ``None`` if none or no longer shown."""
    if not points:
        return None
    point = points[0]
    if not isinstance(point, dict) or any(f not in point for f in fields):
        return None
    hit = frame
    for f in fields:
        hit = cast(pd.DataFrame, hit[hit[f].astype(str) == str(point[f])])
    return None if hit.empty else hit.iloc[0].to_dict()


def to_csv(df: pd.DataFrame) -> bytes:
    return df.to_csv(index=False).encode("utf-8")


def to_parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


# ------------------------------------------------------------------------------------- all positions

POSITION_COLUMNS = [
    "model",
    "model_id",
    "mode",
    "prompt_id",
    "prompt_index",
    "category",
    "position",
    "n_context",
    "token",
    "next_token",
    "next_token_prob",
    "next_token_rank",
    "next_token_freq",
    "freq_log",
    "entropy",
    "density",
]


def position_runs(results: list[Results]) -> tuple[list[Results], list[Results]]:
    """``results`` split into the normal runs and the all-positions runs, each in order."""
    return [r for r in results if not r.all_positions], [r for r in results if r.all_positions]


def positions_of(results: Results, full_grid: bool = False) -> pd.DataFrame:
    """The positions of an all-positions run; with ``full_grid``, only those that evaluate every size of
    the run's grid (:func:`stats.full_grid`)."""
    return (
        stats.full_grid(results.positions, len(results.run.settings.get("sizes", [])))
        if full_grid
        else results.positions
    )


def grid_note(results: list[Results], modes: list[str]) -> str:
    """How many positions evaluate the whole size grid, and from which context length on."""
    notes = []
    for label, r in zip(labels(results), results):
        df = r.positions[r.positions["mode"].isin(modes)]
        full = positions_of(r, True)
        context = cast(pd.Series, full[full["mode"].isin(modes)]["n_context"])
        since = f", from {int(context.min())} tokens of context on" if len(context) else ""
        notes.append(
            f"{label}: {len(context)} of {len(df)} positions evaluate all {len(r.run.settings['sizes'])} sizes{since}"
        )
    return "; ".join(notes)


def position_frame(
    results: list[Results], modes: list[str], axis: str = "log", full_grid: bool = False
) -> pd.DataFrame:
    """The positions of every all-positions run in ``modes``, one row per (text, position, mode), with
    ``model`` and ``model_id`` in front: ``density`` over log10 s (``axis="log"``) or over linear s;
    ``freq_log`` is log10(1 + the next token's frequency per million); ``full_grid``: only the positions
    that evaluate the whole size grid. The text itself is left out (the points of a chart carry its index
    and the position's token)."""
    parts = []
    for label, r in zip(labels(results), results):
        df = positions_of(r, full_grid)
        df = cast(pd.DataFrame, df[df["mode"].isin(modes)]).copy()
        if axis == "linear":
            df["density"] = df["density_linear"]
        df["freq_log"] = stats.next_freq_log(df)
        df["model"], df["model_id"] = label, r.model_id
        parts.append(cast(pd.DataFrame, df[POSITION_COLUMNS]))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=POSITION_COLUMNS)


def position_means(
    results: list[Results], modes: list[str], axis: str = "log", full_grid: bool = False
) -> pd.DataFrame:
    """:func:`stats.density_by_position` of every all-positions run and mode: ``model, mode, n_context,
    mean, q25, q75, n``."""
    return _per_mode(results, modes, lambda r, mode: stats.density_by_position(positions_of(r, full_grid), mode, axis))


def position_correlations(
    results: list[Results], modes: list[str], axis: str = "log", full_grid: bool = False
) -> pd.DataFrame:
    """:func:`stats.position_correlations` of every all-positions run, per mode: ``model, mode, against,
    rho, p, n`` (``against``: context length, or the next token's log frequency)."""
    parts = []
    for label, r in zip(labels(results), results):
        df = stats.position_correlations(positions_of(r, full_grid), [m for m in modes if m in r.modes], axis)
        df["against"] = [stats.POSITION_AGAINST[a] for a in df["against"]]
        df.insert(0, "model", label)
        parts.append(df)
    cols = ["model", "mode", "against", "rho", "p", "n"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)


def position_table(results: list[Results], modes: list[str]) -> pd.DataFrame:
    """Every row of the all-positions runs in ``modes`` (text included), with ``model`` and ``model_id`` in
    front (the table the page offers for download)."""
    parts = []
    for label, r in zip(labels(results), results):
        df = r.positions
        df = cast(pd.DataFrame, df[df["mode"].isin(modes)]).copy()
        df.insert(0, "model_id", r.model_id)
        df.insert(0, "model", label)
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model", "model_id"])
