"""Labels and helpers shared by the views: how sizes, tokens, variants and ablation modes are named, which
evaluated size to show first, the trace's edges at one size, and when each component first entered the
trace."""

from __future__ import annotations

import math

import numpy as np

from explorer.results import Trace

__all__ = [
    "MODE_LABELS",
    "VARIANT_LABELS",
    "closest_stratum",
    "count_label",
    "default_stratum",
    "first_entry",
    "format_size",
    "layer_quarter",
    "size_expr",
    "size_label",
    "size_texts",
    "token_label",
    "trace_edges",
    "variant_label",
]

VARIANT_LABELS = {
    "trace": "s-trace",
    "random": "random control",
    "inverse": "inverse control",
    "other_mode": "s-trace, other mode",
}
"""What the charts call each variant of a size (:data:`explorer.options.VARIANTS`)."""
MODE_LABELS = {"all": "all edges removed (the method)", "attention-kept": "attention kept (authors' code)"}
"""What the pages call each ablation mode (:data:`explorer.options.MODES`)."""


def variant_label(trace: Trace, variant: str) -> str:
    """The chart label of ``variant`` in ``trace``: the other mode's is named after that mode."""
    if variant == "other_mode":
        return f"s-trace, {trace.settings.other_mode}"
    return VARIANT_LABELS.get(variant, variant)


def format_size(size: float) -> str:
    """``1e-03`` style for small sizes, plain decimals from 0.01 up."""
    if size >= 0.01:
        return f"{size:g}"
    mant, exp = f"{size:.1e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def size_texts(sizes) -> list[str]:
    """:func:`format_size` of each size (``None`` or NaN: ``""``), for a chart's tooltips and tables."""
    return ["" if v is None or v != v else format_size(float(v)) for v in sizes]


def size_expr(value: str = "datum.value") -> str:
    """A Vega expression that writes the size ``value`` as :func:`format_size` does (``1e-3``, ``1.2e-3``,
    ``0.04``, ``1``): for the size axes' tick labels."""
    return f"{value} >= 0.01 ? format({value}, '~g') : format({value}, '.1~e')"


def count_label(n: int, noun: str = "edge") -> str:
    """``"1 edge"``, ``"2 edges"``, ``"1,234 edges"``."""
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def size_label(trace: Trace, index: int) -> str:
    """Slider label of stratum ``index``: its size and edge count."""
    s = trace.strata[index]
    return f"s = {format_size(s.size)} · {count_label(s.n_edges)}"


def closest_stratum(trace: Trace, size: float) -> int:
    """Index of the stratum whose size is closest to ``size`` on a log scale."""
    target = math.log10(max(size, 1e-12))
    return min(range(len(trace.strata)), key=lambda i: abs(math.log10(trace.strata[i].size) - target))


def default_stratum(trace: Trace) -> int:
    """The first size that keeps the full model's top-1 token, else the middle of the sweep."""
    for i, s in enumerate(trace.strata):
        if s.trace.shared_nucleus >= 1:
            return i
    return len(trace.strata) // 2


def token_label(trace: Trace, t: int) -> str:
    """``"3: France"``: position and token text, with whitespace made visible."""
    text = trace.tokens[t].replace("\n", "\\n").replace("\t", "\\t")
    text = text.replace(" ", "\u2423") if text.strip() == "" else text.strip()
    return f"{t}: {text}"


def layer_quarter(layer: np.ndarray, n_layers: int) -> np.ndarray:
    """Quarter of the depth (0..3) each layer falls in."""
    return np.minimum(4 * np.asarray(layer) // max(n_layers, 1), 3)


def trace_edges(trace: Trace, index: int) -> dict[str, np.ndarray]:
    """The edges of the trace at stratum ``index``: :meth:`EdgeLayout.decode` fields plus ``id``,
    ``rank`` (position in the greedy order), ``weight`` and ``component`` (-1 for residual edges)."""
    n = trace.strata[index].n_edges
    ids = np.asarray(trace.order[:n])
    edges = trace.layout.decode(ids)
    edges["id"] = ids
    edges["rank"] = np.arange(n)
    edges["weight"] = np.asarray(trace.order_weights[:n], dtype=np.float64)
    edges["component"] = trace.layout.component(ids)
    return edges


def first_entry(trace: Trace) -> dict[str, float]:
    """Component name -> the smallest evaluated size whose trace contains one of its edges."""
    entered: dict[str, float] = {}
    for s in trace.strata:
        for name in s.components:
            entered.setdefault(name, s.size)
    return entered
