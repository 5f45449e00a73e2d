"""The result types of a trace, apart from the pipeline that computes them (:mod:`explorer.trace`):
:class:`Settings` (how a trace is computed), :class:`Output` (one next-token distribution's summary),
:class:`Stratum` (one size and its variants' outputs), :class:`Trace` (one prompt over all sizes), and
their plain-value forms (JSON, the per-size table). numpy only: charts and notebooks load them without
torch.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field

import numpy as np

from explorer.density import density
from explorer.edges import EdgeLayout
from explorer.errors import BadSetting
from explorer.options import (
    DEFAULT_SIZES,
    DENSITY_AXES,
    MODES,
    WEIGHTINGS,
    DensityAxis,
    Mode,
    Variant,
    check_sizes,
)
from explorer.order_codec import encode_order

DEFAULT_MAX_TOKENS = 256
TRACE_SCHEMA = "s-trace-explorer/trace"
TRACE_SCHEMA_VERSION = 1
"""What a trace JSON says it is (``schema``, ``schema_version``); :mod:`explorer.trace_file` reads it back."""


@dataclass(frozen=True)
class Settings:
    """How a trace is computed. ``mode`` is the ablation mode (METHOD.md section 4); ``compare_modes``
    also evaluates the trace in the other mode; ``controls`` adds the inverse and random controls. Every
    field is checked (type and range; a bad one raises :class:`~explorer.errors.BadSetting`); ``top_k``
    against the model's vocabulary when tracing."""

    weighting: str = "l1"
    mode: Mode = "all"
    controls: bool = False
    compare_modes: bool = False
    sizes: tuple[float, ...] = DEFAULT_SIZES
    seed: int = 0
    density_axis: DensityAxis = "log"
    top_k: int = 10
    max_tokens: int = DEFAULT_MAX_TOKENS
    batch_size: int = 32

    def __post_init__(self):
        if self.weighting not in WEIGHTINGS:
            raise BadSetting(f"unknown edge weighting '{self.weighting}'; choose one of {', '.join(WEIGHTINGS)}")
        if self.mode not in MODES:
            raise BadSetting(f"unknown ablation mode '{self.mode}'; choose one of {', '.join(MODES)}")
        if self.density_axis not in DENSITY_AXES:
            raise BadSetting(f"unknown density axis '{self.density_axis}'; choose log or linear")
        for name in ("controls", "compare_modes"):
            value = getattr(self, name)
            if not isinstance(value, (bool, np.bool_)):
                raise BadSetting(f"{name} must be True or False, got {value!r}")
            object.__setattr__(self, name, bool(value))
        for name, least in (("seed", 0), ("top_k", 1), ("max_tokens", 1), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
                raise BadSetting(f"{name} must be a whole number, got {value!r}")
            if value < least:
                raise BadSetting(f"{name} must be at least {least}, got {value}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "sizes", check_sizes(self.sizes))

    @property
    def other_mode(self) -> Mode:
        return MODES[1 - MODES.index(self.mode)]


@dataclass
class TokenProb:
    token: str
    id: int
    prob: float


@dataclass
class Output:
    """A next-token distribution's summary: top tokens, entropy (nats), and error against the full model
    (``tv``, ``shared_nucleus``; 0 for the full model itself) and gold-token cross-entropy if given.
    ``full_top_probs``: this distribution's probability of each of the full model's top tokens.
    ``target_prob``, ``foil_prob``: its probability of the trace's target and foil token, and
    ``target_logit_diff`` the target's logit minus the foil's (``log q_target - log q_foil``)."""

    top: list[TokenProb]
    entropy: float
    tv: float = 0.0
    shared_nucleus: int = 99
    gold_ce: float | None = None
    full_top_probs: list[float] = field(default_factory=list)
    target_prob: float | None = None
    foil_prob: float | None = None
    target_logit_diff: float | None = None


@dataclass
class Stratum:
    """One size ``s`` with ``n_edges = floor(s * E)`` edges. ``outputs`` maps a variant (``trace``,
    ``inverse``, ``random``, ``other_mode``) to its output; ``kinds`` counts the trace's attention, MLP
    and residual edges; ``components`` counts edges per ``a{l}.h{h}`` / ``m{l}`` (non-zero only)."""

    size: float
    n_edges: int
    outputs: dict[Variant, Output]
    kinds: dict[str, int]
    components: dict[str, int]

    @property
    def trace(self) -> Output:
        return self.outputs["trace"]


@dataclass
class Trace:
    """s-Trace of the prediction after token ``position`` of ``prompt``: the graph rooted at the output
    node ``(2L, position)``, the same as tracing the text cut after that token. ``tokens`` and
    ``token_ids`` are the traced tokens ``0..position``; ``next_token`` the text's actual next token, if it
    has one. ``order`` holds the ``E`` edge ids in greedy order (ids as in :class:`explorer.edges.EdgeLayout`),
    ``order_weights`` their weights. ``target`` (default: the actual next token, else the full model's
    top-1) and ``foil`` are followed across sizes (:attr:`Output.target_prob`); the greedy order does not
    depend on them."""

    model_id: str
    revision: str | None
    prompt: str
    tokens: list[str]
    token_ids: list[int]
    gold: str | None
    settings: Settings
    layout: EdgeLayout
    full: Output
    strata: list[Stratum]
    density: float
    recovery: dict[int, float | None]
    timings: dict[str, float]
    order: np.ndarray = field(repr=False)
    order_weights: np.ndarray = field(repr=False)
    position: int = -1
    next_token: str | None = None
    target: str | None = None
    foil: str | None = None

    def __post_init__(self):
        if self.position < 0:
            self.position = len(self.tokens) - 1

    @property
    def n_edges(self) -> int:
        return self.layout.n_edges

    def curve(self, variant: Variant = "trace", metric: str = "tv") -> tuple[list[float], list[float]]:
        """``(sizes, values)`` of one metric for one variant, over the strata that have it."""
        pts = [(s.size, getattr(s.outputs[variant], metric)) for s in self.strata if variant in s.outputs]
        return [p[0] for p in pts], [p[1] for p in pts]

    def actual_sizes(self, variant: Variant = "trace") -> list[float]:
        """Each stratum's actual relative size ``n_edges / E`` (the grid's size rounded down to whole
        edges), over the strata that have ``variant``."""
        return [s.n_edges / self.n_edges for s in self.strata if variant in s.outputs]

    def density_of(self, variant: Variant = "trace", axis: DensityAxis | None = None) -> float:
        """The area under ``variant``'s TV curve over the strata's actual sizes (METHOD.md section 6)."""
        return density(self.actual_sizes(variant), self.curve(variant, "tv")[1], axis or self.settings.density_axis)

    def to_dict(self, order: bool = True) -> dict:
        """Everything, as plain JSON-ready values; the edge order and its weights as one compressed block
        (:mod:`explorer.order_codec`), left out with ``order=False``."""
        settings = asdict(self.settings)
        settings["sizes"] = list(self.settings.sizes)
        data = {
            "schema": TRACE_SCHEMA,
            "schema_version": TRACE_SCHEMA_VERSION,
            "model": {"id": self.model_id, "revision": self.revision},
            "prompt": self.prompt,
            "tokens": self.tokens,
            "token_ids": self.token_ids,
            "position": self.position,
            "next_token": self.next_token,
            "gold": self.gold,
            "target": self.target,
            "foil": self.foil,
            "settings": settings,
            "graph": {
                "layers": self.layout.n_layers,
                "heads": self.layout.n_heads,
                "tokens": self.layout.n_tokens,
                "parallel_residual": self.layout.parallel,
                "edges": self.n_edges,
            },
            "full": asdict(self.full),
            "strata": [asdict(s) for s in self.strata],
            "density": self.density,
            "density_axis": self.settings.density_axis,
            "recovery": {str(k): v for k, v in self.recovery.items()},
            "timings": self.timings,
        }
        if order:
            data["order"] = encode_order(self.order, self.order_weights)
        return data

    def to_json(self, indent: int | None = 1) -> str:
        """:meth:`to_dict` as JSON: settings, tokens, strata with their metrics, per-component edge counts
        (``a{l}.h{h}`` / ``m{l}``), the edge order; :func:`explorer.trace_file.read_trace` reads it back."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_frame(self):
        """The per-size table as a pandas DataFrame (:func:`table_rows`): size, edges, TV, shared nucleus,
        entropy, top-1 token, edge kinds, and each control's TV and shared nucleus."""
        import pandas as pd

        return pd.DataFrame(table_rows(self))


def table_rows(trace: Trace) -> list[dict]:
    """One row per size: edges, TV, shared nucleus, entropy, top-1 token, edge kinds, and each other
    variant's TV and shared nucleus."""
    rows = []
    for s in trace.strata:
        row = {
            "size": s.size,
            "edges": s.n_edges,
            "tv": s.trace.tv,
            "shared_nucleus": s.trace.shared_nucleus,
            "entropy": s.trace.entropy,
            "top1": s.trace.top[0].token,
            "top1_prob": s.trace.top[0].prob,
            "gold_ce": s.trace.gold_ce,
            **{f"{k}_edges": v for k, v in s.kinds.items()},
        }
        if trace.target is not None:
            row["target_prob"] = s.trace.target_prob
        if trace.foil is not None:
            row["foil_prob"] = s.trace.foil_prob
            row["target_logit_diff"] = s.trace.target_logit_diff
        for variant, out in s.outputs.items():
            if variant != "trace":
                row[f"tv_{variant}"] = out.tv
                row[f"shared_nucleus_{variant}"] = out.shared_nucleus
        rows.append(row)
    return rows


@dataclass
class PositionSummary:
    """One position ``t`` of a text traced by :func:`explorer.text.trace_text`: the prediction after token
    ``t``. ``next_token`` is the text's actual next token (``None`` after the last), with its probability
    and rank (1 = the top) under the full model; ``entropy``, ``top1`` are the full model's; ``density``
    and ``density_linear`` integrate the trace's TV over ``log10(s)`` and ``s``; ``recovery`` the first
    size whose shared nucleus reaches each level; ``generated``: whether the next token was generated."""

    position: int
    token: str
    next_token: str | None
    next_token_prob: float | None
    next_token_rank: int | None
    entropy: float
    top1: str
    top1_prob: float
    density: float
    density_linear: float
    recovery: dict[int, float | None]
    generated: bool = False


@dataclass
class TextTrace:
    """Many positions of one text, traced together (:func:`explorer.text.trace_text`). ``tokens`` are the
    whole text's; ``positions`` one summary per traced position, in order; ``traces`` the whole
    :class:`Trace` of each position when kept. ``generated_from``: the index of the first generated token
    when the text is a prompt and the model's continuation, else ``None``."""

    model_id: str
    revision: str | None
    text: str
    tokens: list[str]
    token_ids: list[int]
    settings: Settings
    positions: list[PositionSummary]
    traces: dict[int, Trace] = field(default_factory=dict, repr=False)
    generated_from: int | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def rows(self) -> list[dict]:
        """One row per traced position (the :class:`PositionSummary` fields, recovery as ``top1_kept_at``
        and ``nucleus{k}_at``)."""
        rows = []
        for p in self.positions:
            row = asdict(p)
            recovery = row.pop("recovery")
            row["top1_kept_at"] = recovery.get(1)
            row.update({f"nucleus{k}_at": v for k, v in recovery.items() if k != 1})
            rows.append(row)
        return rows

    def to_frame(self):
        """:meth:`rows` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows())

    def to_dict(self) -> dict:
        """Everything but the per-position traces' edge orders, as plain JSON-ready values."""
        settings = asdict(self.settings)
        settings["sizes"] = list(self.settings.sizes)
        return {
            "model": {"id": self.model_id, "revision": self.revision},
            "text": self.text,
            "tokens": self.tokens,
            "token_ids": self.token_ids,
            "generated_from": self.generated_from,
            "settings": settings,
            "positions": self.rows(),
            "traces": {str(t): trace.to_dict(order=False) for t, trace in self.traces.items()},
            "timings": self.timings,
        }

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
