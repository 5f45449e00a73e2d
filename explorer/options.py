"""The vocabulary of a trace's settings, in one place and free of heavy imports: edge weightings, ablation
modes, the variants evaluated per size, density axes, the size grid, nucleus and recovery levels, and the
devices and dtypes a model can be loaded on."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from typing import Literal, get_args

import numpy as np

from explorer.errors import BadSetting

WEIGHTINGS: tuple[str, ...] = ("l1", "l2", "ifr")
"""Edge weightings (METHOD.md section 2)."""

Mode = Literal["all", "attention-kept"]
MODES: tuple[Mode, ...] = get_args(Mode)
"""Ablation modes (METHOD.md section 4): every removed edge zeroed, or every attention probability kept."""

Variant = Literal["trace", "other_mode", "inverse", "random"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
"""The masked passes of one size: the s-Trace itself, the same subgraph in the other ablation mode, and the
inverse and random controls (METHOD.md section 5)."""

DensityAxis = Literal["log", "linear"]
DENSITY_AXES: tuple[DensityAxis, ...] = get_args(DensityAxis)
"""Density integrates TV over ``log10(s)`` (the method) or ``s`` (the withdrawn paper's variant)."""

DEFAULT_SIZES: tuple[float, ...] = (
    1e-5,
    2e-5,
    4e-5,
    8e-5,
    1e-4,
    2e-4,
    4e-4,
    8e-4,
    1e-3,
    1.2e-3,
    1.4e-3,
    2e-3,
    3e-3,
    4e-3,
    6e-3,
    8e-3,
    1e-2,
    2e-2,
    4e-2,
    6e-2,
    8e-2,
    0.1,
    0.2,
    0.4,
    0.6,
    0.8,
    1.0,
)
"""The size grid ``s`` (fraction of the graph's edges) of a sweep."""

NUCLEUS_LEVELS: tuple[int, ...] = (99, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1)
"""Nucleus levels ``k`` (percent of mass) of the shared-nucleus metric, largest first."""

RECOVERY_LEVELS: tuple[int, ...] = (1, 10, 50, 90)
"""Levels whose recovery size (first size reaching that shared nucleus) a trace reports."""

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
"""Device names; ``cuda:N`` names one GPU as well."""

DTYPES: tuple[str, ...] = ("float32", "bfloat16", "float16")
"""Model dtypes; ``auto`` picks bfloat16 on a GPU, float32 on the CPU."""


def is_device_name(device) -> bool:
    """Whether ``device`` is one of :data:`DEVICES` or ``cuda:N`` (``N`` in ASCII digits; whether it exists
    here is another question: :func:`explorer.models.loading.resolve_device`)."""
    return isinstance(device, str) and (device in DEVICES or re.fullmatch(r"cuda:[0-9]+", device) is not None)


def check_modes(modes) -> tuple[Mode, ...]:
    """``modes``, each checked to be one of :data:`MODES`, at least one and none twice (else
    :class:`~explorer.errors.BadSetting`)."""
    if isinstance(modes, str):
        raise BadSetting(f"ablation modes must be a sequence of mode names, got the string {modes!r}")
    checked: list[Mode] = []
    for mode in modes:
        if mode not in MODES:
            raise BadSetting(f"unknown ablation mode '{mode}'; choose one of {', '.join(MODES)}")
        if mode in checked:
            raise BadSetting(f"ablation mode '{mode}' is given twice")
        checked.append(mode)
    if not checked:
        raise BadSetting(f"give at least one ablation mode ({', '.join(MODES)})")
    return tuple(checked)


def check_sizes(sizes) -> tuple[float, ...]:
    """Validate a size grid: a sequence of at least one real number, each ``0 < s <= 1`` (NaN is not);
    returned sorted, without repeats."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Iterable):
        raise BadSetting(f"sizes must be a sequence of numbers with 0 < s <= 1, got {sizes!r}")
    out: set[float] = set()
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Real) or not 0 < float(s) <= 1:
            raise BadSetting(f"sizes must be numbers with 0 < s <= 1, got {s!r}")
        out.add(float(s))
    if not out:
        raise BadSetting("sizes must be numbers with 0 < s <= 1: give at least one")
    return tuple(sorted(out))


def smallest_size(n_edges: int) -> str:
    """The smallest size, written with 3 significant digits, that keeps at least one of ``n_edges`` edges
    (a size ``s`` keeps ``floor(s * E)``: :func:`explorer.search.strata_edges`)."""
    x = 1.0 / n_edges
    step = 10.0 ** (math.floor(math.log10(x)) - 2)
    k = max(1, math.floor(x / step))
    while math.floor(float(text := f"{k * step:.3g}") * n_edges) < 1:
        k += 1
    return text


def check_sizes_give_edges(sizes, n_edges: int, where: str = "this prompt") -> None:
    """Refuse a size grid of which no size keeps an edge of a graph of ``n_edges`` edges (every stratum
    would be empty), saying which size is the smallest that would."""
    if not any(math.floor(s * n_edges) >= 1 for s in check_sizes(sizes)):
        raise BadSetting(
            f"the sizes give no edge on {where}: its graph has E = {n_edges} edges and a size s "
            f"keeps floor(s * E) of them; the smallest size that keeps one is {smallest_size(n_edges)}"
        )


def check_top_k(top_k: int, vocab_size: int) -> None:
    """Refuse a top-k larger than the model's vocabulary."""
    if top_k > vocab_size:
        raise BadSetting(f"top_k is {top_k}, but the model's vocabulary has only {vocab_size} tokens")
