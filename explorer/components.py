"""A model's components (attention heads and MLPs) as users name them, and a component's place in a trace.

Names, as in circuit-discovery tools (layers and heads count from 0):

- ``a{l}.h{h}``: head ``h`` of layer ``l``'s attention (``a3.h2``);
- ``a{l}`` or ``a{l}.*``: every head of layer ``l``;
- ``m{l}``: layer ``l``'s MLP;
- ``L{l}``: the whole of layer ``l``, every head and the MLP;
- ``*``: every head and MLP of the model.

Residual edges belong to no component. :func:`parse_components` turns names into component indices
(:meth:`explorer.edges.EdgeLayout.component`), :func:`component_edge_ids` gives every edge of the graph
that belongs to some components, :func:`stratum_index` the stratum of a trace at a size, and
:func:`component_in_trace` what a trace holds of one component (its edges at a size, its share of the
trace's weight, the size it entered at). numpy only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from explorer.edges import MLP, EdgeLayout
from explorer.errors import BadSetting
from explorer.results import Trace

if TYPE_CHECKING:
    from explorer.models.loading import LoadedModel

NAMING = (
    "name heads a{layer}.h{head} (a3.h2), every head of a layer a{layer} or a{layer}.*, MLPs m{layer}, "
    "a whole layer L{layer} (its heads and MLP), or * for every head and MLP"
)
_PATTERN = re.compile(r"a(\d+)\.h(\d+)|a(\d+)(?:\.\*)?|m(\d+)|L(\d+)|\*")

FULL = "full"
"""The size argument that names the full graph (also ``None`` and ``1``)."""


def split_names(names: str | Iterable[str] | None) -> list[str]:
    """Component names from a comma-separated string (``"a3.h2, m5"``) or an iterable of names; spaces around
    each are dropped, empty entries refused. Checks the spelling only (:func:`parse_components` checks the
    layers and heads against a model)."""
    if names is None:
        return []
    items = names.split(",") if isinstance(names, str) else list(names)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise BadSetting(f"component names must be text, got {item!r}; {NAMING}")
        name = item.strip()
        if not name:
            raise BadSetting(f"an empty component name in {names!r}; {NAMING}")
        if not _PATTERN.fullmatch(name):
            raise BadSetting(f"unknown component '{name}': {NAMING}")
        out.append(name)
    return out


def parse_components(names: str | Iterable[str] | None, layout: EdgeLayout) -> list[int]:
    """The sorted component indices (``l*H + h`` for heads, ``L*H + l`` for MLPs) that ``names`` stand for
    in a model of ``layout``'s shape; a layer or head outside the model raises :class:`BadSetting`."""
    L, H = layout.n_layers, layout.n_heads

    def layer_of(text: str, name: str) -> int:
        layer = int(text)
        if layer >= L:
            raise BadSetting(f"component '{name}': layer {layer} is outside the model's {L} layers (0 to {L - 1})")
        return layer

    found: set[int] = set()
    for name in split_names(names):
        match = _PATTERN.fullmatch(name)
        assert match is not None  # split_names checked the spelling
        head_layer, head, heads_layer, mlp_layer, whole_layer = match.groups()
        if name == "*":
            found |= set(range(L * H + L))
        elif head_layer is not None:
            layer = layer_of(head_layer, name)
            if int(head) >= H:
                raise BadSetting(
                    f"component '{name}': head {int(head)} is outside the model's {H} heads (0 to {H - 1})"
                )
            found.add(layer * H + int(head))
        elif heads_layer is not None:
            layer = layer_of(heads_layer, name)
            found |= set(range(layer * H, (layer + 1) * H))
        elif mlp_layer is not None:
            found.add(L * H + layer_of(mlp_layer, name))
        else:
            layer = layer_of(whole_layer, name)
            found |= set(range(layer * H, (layer + 1) * H)) | {L * H + layer}
    return sorted(found)


def component_edge_ids(layout: EdgeLayout, components: Iterable[int]) -> np.ndarray:
    """Every edge id of the graph (edges that reach the output node) that belongs to one of ``components``:
    a head's attention edges ``(s -> t)`` for every ``s <= t`` (in the last layer only into the output
    token), an MLP's edge into every token (in the last layer only the output token's). ``[M]`` int64."""
    L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
    target, source = np.tril_indices(T)  # every (t, s) with s <= t
    last = target == T - 1
    parts = []
    for c in sorted(set(int(c) for c in components)):
        if not 0 <= c < layout.n_components:
            raise BadSetting(f"component index {c} is outside the model's {layout.n_components} components")
        if c < L * H:
            layer, head = divmod(c, H)
            keep = slice(None) if layer < L - 1 else last
            parts.append(layout.attention_id(layer, head, target[keep], source[keep]))
        else:
            layer = c - L * H
            tokens = np.arange(T) if layer < L - 1 else np.array([T - 1])
            parts.append(layout.block_id(MLP, layer, tokens))
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


def stratum_index(trace: Trace, size: float | str | None) -> int | None:
    """The index of the stratum of ``trace`` at ``size``, the evaluated size closest to it on a log scale;
    ``None`` for the full graph (``size`` ``None``, ``"full"`` or 1, when the trace has no stratum at 1)."""
    if size is None or (isinstance(size, str) and size.strip().lower() == FULL):
        return None
    try:
        value = float(size)
    except (TypeError, ValueError):
        raise BadSetting(f"size must be a number in (0, 1] or '{FULL}', got {size!r}") from None
    if not 0 < value <= 1 or math.isnan(value):
        raise BadSetting(f"size must be in (0, 1] (or '{FULL}'), got {size!r}")
    if not trace.strata:
        return None
    target = math.log10(value)
    best = min(range(len(trace.strata)), key=lambda i: abs(math.log10(trace.strata[i].size) - target))
    if value == 1 and trace.strata[best].n_edges != trace.n_edges:
        return None
    return best


@dataclass
class ComponentEdge:
    """One edge of a component in a trace: its ``rank`` in the greedy order, ``source`` and ``target`` token
    positions (the same for an MLP edge) and local ``weight``."""

    rank: int
    source: int
    target: int
    weight: float


@dataclass
class ComponentInTrace:
    """What a trace holds of one component at one size: ``edges`` (heaviest first), their summed weight
    ``weight`` and its ``share`` of the summed weight of every edge of the trace at that size, ``entered``
    (the smallest evaluated size whose trace holds one of its edges, ``None`` if none does), and the size
    itself (``size``, ``n_edges`` the trace's edges there)."""

    name: str
    kind: str
    layer: int
    head: int | None
    size: float
    n_edges: int
    edges: list[ComponentEdge]
    weight: float
    share: float
    entered: float | None


def component_name(layout: EdgeLayout, component: int) -> str:
    """``a{l}.h{h}`` or ``m{l}`` of a component index."""
    return layout.component_names()[component]


def component_in_trace(trace: Trace, name: str, size: float | str | None = None) -> ComponentInTrace:
    """The edges of one head ``a{l}.h{h}`` or MLP ``m{l}`` in ``trace`` at ``size`` (the closest evaluated
    size, or the full graph for ``None`` / ``"full"``), with its share of the trace's weight and the size at
    which it entered. A name of several components (``a3``, ``L3``) is refused: inspect one at a time."""
    layout = trace.layout
    comps = parse_components(name, layout)
    if len(comps) != 1:
        raise BadSetting(f"'{name}' names {len(comps)} components; name one head a{{l}}.h{{h}} or one MLP m{{l}}")
    c = comps[0]
    index = stratum_index(trace, size)
    n = trace.n_edges if index is None else trace.strata[index].n_edges
    ids = np.asarray(trace.order[:n], dtype=np.int64)
    weights = np.asarray(trace.order_weights[:n], dtype=np.float64)
    mine = np.nonzero(layout.component(ids) == c)[0]
    mine = mine[np.argsort(-weights[mine], kind="stable")]
    decoded = layout.decode(ids[mine])
    edges = [
        ComponentEdge(int(r), int(s), int(t), float(weights[r]))
        for r, s, t in zip(mine, decoded["source"], decoded["target"])
    ]
    canonical = component_name(layout, c)
    entered = next((s.size for s in trace.strata if canonical in s.components), None)
    total = float(weights.sum())
    mine_weight = float(weights[mine].sum())
    L, H = layout.n_layers, layout.n_heads
    is_head = c < L * H
    return ComponentInTrace(
        name=canonical,
        kind="head" if is_head else "mlp",
        layer=c // H if c < L * H else c - L * H,
        head=c % H if c < L * H else None,
        size=1.0 if index is None else trace.strata[index].size,
        n_edges=n,
        edges=edges,
        weight=mine_weight,
        share=mine_weight / total if total > 0 else 0.0,
        entered=entered,
    )


def check_model(lm: LoadedModel, trace: Trace) -> None:
    """Refuse a loaded model other than the one ``trace`` was computed with (another id, or another shape)."""
    layout = trace.layout
    shape = (lm.adapter.n_layers, lm.adapter.n_heads, lm.adapter.parallel_residual)
    if lm.model_id != trace.model_id or shape != (layout.n_layers, layout.n_heads, layout.parallel):
        raise BadSetting(
            f"this trace is of model '{trace.model_id}' ({layout.n_layers} layers x {layout.n_heads} heads); "
            f"the loaded model is '{lm.model_id}' ({shape[0]} layers x {shape[1]} heads): load the trace's model"
        )
    if len(trace.token_ids) != layout.n_tokens:
        raise BadSetting(
            f"this trace holds {len(trace.token_ids)} token ids for a graph of {layout.n_tokens} tokens: it is damaged"
        )
