"""The density of one input and its nucleus-recovery sizes (METHOD.md section 6), from a trace's TV and
shared-nucleus curves over the evaluated sizes. numpy only: the result types use it without torch."""

from __future__ import annotations

import numpy as np

from explorer.options import DENSITY_AXES, RECOVERY_LEVELS


def density(sizes, tv, axis: str = "log") -> float:
    """``integral TV(s) d log10(s)`` (``axis="log"``, default) or ``d s`` (``"linear"``, the withdrawn
    paper's variant), trapezoid rule over the evaluated sizes, ``s`` clipped to ``[1e-8, 1]``."""
    s = np.clip(np.asarray(sizes, dtype=np.float64), 1e-8, 1.0)
    y = np.asarray(tv, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    x = np.log10(s[order]) if axis == "log" else s[order]
    if axis not in DENSITY_AXES:
        raise ValueError(f"density axis must be one of {DENSITY_AXES}")
    return float(np.trapezoid(y[order], x)) if len(x) > 1 else 0.0


def recovery_sizes(sizes, nucleus, levels=RECOVERY_LEVELS) -> dict[int, float | None]:
    """The smallest size whose shared nucleus reaches each level (``None`` if none does)."""
    pairs = sorted(zip(sizes, nucleus))
    return {k: next((s for s, n in pairs if n >= k), None) for k in levels}
