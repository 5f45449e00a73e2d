"""The vocabulary of a trace's settings, in one place and free of heavy imports: edge weightings, ablation
modes, the variants evaluated per size, density axes, the size grid, nucleus and recovery levels, and the
devices and dtypes a model can be loaded on."""

from __future__ import annotations

from typing import Literal, get_args

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
    1e-5, 2e-5, 4e-5, 8e-5, 1e-4, 2e-4, 4e-4, 8e-4, 1e-3, 1.2e-3, 1.4e-3, 2e-3, 3e-3, 4e-3, 6e-3,
    8e-3, 1e-2, 2e-2, 4e-2, 6e-2, 8e-2, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0,
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


def is_device_name(device: str) -> bool:
    """Whether ``device`` is one of :data:`DEVICES` or ``cuda:N`` (whether it exists here is another
    question: :func:`explorer.models.loading.resolve_device`)."""
    return device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit())


def check_modes(modes) -> tuple[Mode, ...]:
    """``modes``, each checked to be one of :data:`MODES` (else :class:`~explorer.errors.BadSetting`)."""
    checked: list[Mode] = []
    for mode in modes:
        if mode not in MODES:
            raise BadSetting(f"unknown ablation mode '{mode}'; choose one of {', '.join(MODES)}")
        checked.append(mode)
    return tuple(checked)


def check_sizes(sizes) -> tuple[float, ...]:
    """Validate a size grid: each ``0 < s <= 1``; returned sorted, without repeats."""
    out = sorted({float(s) for s in sizes})
    if not out or out[0] <= 0 or out[-1] > 1:
        raise BadSetting("sizes must be numbers with 0 < s <= 1")
    return tuple(out)
