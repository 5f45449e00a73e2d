"""A trace's subgraph at one size as an attribution-graph JSON in the layout of Neuronpedia's graph viewer
(its public schema ``apps/webapp/app/api/graph/graph-schema.json``; circuit-tracer's
``frontend/graph_models.py`` is its Python form): top-level ``metadata``, ``qParams``, ``nodes``, ``links``.

Nodes are the subgraph's residual states ``(g, t)`` (METHOD.md section 1), following circuit-tracer's ids:

- input embeddings (``g = 0``): ``feature_type`` ``"embedding"``, layer ``"E"``, id ``E_{token id}_{t}``;
- the state after layer ``l``'s attention (``g = 2l+1``) and after its MLP (``g = 2l+2``): feature types
  ``"residual after attention"`` / ``"residual after mlp"``, layer ``l``, feature 0 / 1, id
  ``{l}_{feature}_{t}``; the ``clerp`` names the heads or MLP whose edges write into it;
- the output node: ``feature_type`` ``"logit"``, layer ``L + 1``, id ``{L+1}_{top-1 id}_{t}``, the full
  model's top-1 token and probability (``is_target_logit``, ``token_prob``).

Links are the subgraph's edges, those between the same two states summed (the heads of one layer that
read one source token, and the residual edge beside them); ``weight`` is the summed local edge weight.
A node's ``influence`` is the smallest evaluated size whose trace reaches it.

:class:`AttributionGraph` is a typed model of the layout: :meth:`AttributionGraph.from_dict` validates a
graph JSON (required fields and their types, unique node ids, links between known nodes), and
:meth:`AttributionGraph.to_dict` writes it. numpy only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from typing import Any, cast

import numpy as np

from explorer.components import stratum_index
from explorer.edges import EdgeLayout
from explorer.errors import BadTraceFile
from explorer.results import Trace

GENERATOR = "s-Trace Explorer"
STATE_TYPES = {1: "residual after attention", 0: "residual after mlp"}


class _Invalid(Exception):
    pass


def _is(value, kind: type) -> bool:
    """``isinstance`` where a bool is not a number, and an int is a float."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def _check(value: Any, kinds: tuple[type, ...], where: str, nullable: bool = False) -> Any:
    """``value`` if it is of one of ``kinds`` (or ``None`` when ``nullable``), a float for ``(float,)``."""
    if value is None and nullable:
        return None
    if not any(_is(value, k) for k in kinds):
        names = " or ".join(k.__name__ for k in kinds) + (" or null" if nullable else "")
        raise _Invalid(f"{where}: expected {names}, got {type(value).__name__}")
    return float(cast(float, value)) if kinds == (float,) else value


def _field(
    d: dict, key: str, kinds: tuple[type, ...], where: str, optional: bool = False, nullable: bool = False, default=None
) -> Any:
    """``d[key]`` checked by :func:`_check`; a missing key is ``default`` when ``optional``, else refused.
    Optional fields may be null."""
    if key not in d:
        if optional:
            return default
        raise _Invalid(f"{where}.{key}: missing")
    return _check(d[key], kinds, f"{where}.{key}", nullable or optional)


def _strings(value, where: str) -> list[str]:
    _check(value, (list,), where)
    return [_check(v, (str,), f"{where}[{i}]") for i, v in enumerate(value)]


@dataclass
class Metadata:
    """The graph's description: ``slug`` (its name), ``scan`` (the model id), the prompt and its tokens, and
    the optional ``info``, ``generation_settings``, ``pruning_settings`` and ``node_threshold``."""

    slug: str
    scan: str
    prompt_tokens: list[str]
    prompt: str
    info: dict | None = None
    generation_settings: dict | None = None
    pruning_settings: dict | None = None
    node_threshold: float | None = None

    @classmethod
    def from_dict(cls, d: dict) -> Metadata:
        w = "metadata"
        return cls(
            slug=_field(d, "slug", (str,), w),
            scan=_field(d, "scan", (str,), w),
            prompt_tokens=_strings(_field(d, "prompt_tokens", (list,), w), f"{w}.prompt_tokens"),
            prompt=_field(d, "prompt", (str,), w),
            info=_field(d, "info", (dict,), w, optional=True),
            generation_settings=_field(d, "generation_settings", (dict,), w, optional=True),
            pruning_settings=_field(d, "pruning_settings", (dict,), w, optional=True),
            node_threshold=_field(d, "node_threshold", (float,), w, optional=True),
        )


@dataclass
class QParams:
    """The viewer's saved state: pinned nodes, supernodes, link type, clicked node, subgraph positions."""

    pinnedIds: list[str] = field(default_factory=list)
    supernodes: list[list[str]] = field(default_factory=list)
    linkType: str = "both"
    clickedId: str = ""
    sg_pos: str = ""

    @classmethod
    def from_dict(cls, d: dict) -> QParams:
        w = "qParams"
        supernodes = _field(d, "supernodes", (list,), w, optional=True, default=[])
        return cls(
            pinnedIds=_strings(_field(d, "pinnedIds", (list,), w, optional=True, default=[]), f"{w}.pinnedIds"),
            supernodes=[_strings(s, f"{w}.supernodes[{i}]") for i, s in enumerate(supernodes)],
            linkType=_field(d, "linkType", (str,), w, optional=True, default="both"),
            clickedId=_field(d, "clickedId", (str,), w, optional=True, default=""),
            sg_pos=_field(d, "sg_pos", (str,), w, optional=True, default=""),
        )


@dataclass
class Node:
    """One node: ``node_id``, ``feature``, ``layer`` (text or number), ``ctx_idx`` (token position),
    ``feature_type``, ``jsNodeId``, ``clerp`` (its label); optional ``influence``, ``activation``, and for
    logit nodes ``token_prob`` and ``is_target_logit``."""

    node_id: str
    feature: int | None
    layer: str | int
    ctx_idx: int
    feature_type: str
    jsNodeId: str
    clerp: str
    influence: float | None = None
    activation: float | None = None
    token_prob: float | None = None
    is_target_logit: bool | None = None

    @classmethod
    def from_dict(cls, d: object, where: str) -> Node:
        if not isinstance(d, dict):
            raise _Invalid(f"{where}: expected an object")
        return cls(
            node_id=_field(d, "node_id", (str,), where),
            feature=_field(d, "feature", (int,), where, nullable=True),
            layer=_field(d, "layer", (str, int), where),
            ctx_idx=_field(d, "ctx_idx", (int,), where),
            feature_type=_field(d, "feature_type", (str,), where),
            jsNodeId=_field(d, "jsNodeId", (str,), where),
            clerp=_field(d, "clerp", (str,), where),
            influence=_field(d, "influence", (float,), where, optional=True),
            activation=_field(d, "activation", (float,), where, optional=True),
            token_prob=_field(d, "token_prob", (float,), where, optional=True),
            is_target_logit=_field(d, "is_target_logit", (bool,), where, optional=True),
        )


@dataclass
class Link:
    """One link: ``source`` and ``target`` node ids and its ``weight``."""

    source: str
    target: str
    weight: float

    @classmethod
    def from_dict(cls, d: object, where: str) -> Link:
        if not isinstance(d, dict):
            raise _Invalid(f"{where}: expected an object")
        return cls(
            _field(d, "source", (str,), where), _field(d, "target", (str,), where), _field(d, "weight", (float,), where)
        )


@dataclass
class AttributionGraph:
    """A graph in the viewer's layout: ``metadata``, ``qParams``, ``nodes``, ``links``."""

    metadata: Metadata
    qParams: QParams
    nodes: list[Node]
    links: list[Link]

    @classmethod
    def from_dict(cls, data: object) -> AttributionGraph:
        """Validate ``data`` (a parsed graph JSON); anything that does not fit raises :class:`BadTraceFile`."""
        try:
            if not isinstance(data, dict):
                raise _Invalid("the graph: expected a JSON object")
            for key in ("metadata", "qParams", "nodes", "links"):
                if key not in data:
                    raise _Invalid(f"{key}: missing")
            graph = cls(
                metadata=Metadata.from_dict(_check(data["metadata"], (dict,), "metadata")),
                qParams=QParams.from_dict(_check(data["qParams"], (dict,), "qParams")),
                nodes=[Node.from_dict(n, f"nodes[{i}]") for i, n in enumerate(_check(data["nodes"], (list,), "nodes"))],
                links=[Link.from_dict(x, f"links[{i}]") for i, x in enumerate(_check(data["links"], (list,), "links"))],
            )
            ids = [n.node_id for n in graph.nodes]
            if len(set(ids)) != len(ids):
                raise _Invalid("nodes: a node_id appears twice")
            known = set(ids)
            for i, link in enumerate(graph.links):
                if link.source not in known or link.target not in known:
                    raise _Invalid(f"links[{i}]: links {link.source!r} -> {link.target!r}, not both nodes of the graph")
        except _Invalid as exc:
            raise BadTraceFile(f"not an attribution graph in the Neuronpedia layout: {exc}") from None
        return graph

    def to_dict(self) -> dict:
        """Plain JSON values; optional fields that are ``None`` are left out."""

        def plain(obj) -> dict:
            return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}

        return {
            "metadata": plain(self.metadata),
            "qParams": plain(self.qParams),
            "nodes": [plain(n) for n in self.nodes],
            "links": [plain(x) for x in self.links],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def read_graph(text: str | bytes) -> AttributionGraph:
    """The :class:`AttributionGraph` of a graph JSON's text, validated."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadTraceFile(f"not an attribution graph JSON: {exc}") from None
    return AttributionGraph.from_dict(data)


def _node_entry(layout: EdgeLayout, order: np.ndarray, strata_n: list[int], sizes: list[float]) -> np.ndarray:
    """``[N]``: the smallest evaluated size whose trace has an edge at each node (inf where none does)."""
    d = layout.decode(order[: strata_n[-1]])
    first = np.full(layout.n_nodes, np.iinfo(np.int64).max, dtype=np.int64)
    ranks = np.arange(strata_n[-1])
    np.minimum.at(first, d["src_node"], ranks)
    np.minimum.at(first, d["dst_node"], ranks)
    first[layout.output_node] = 0
    at = np.searchsorted(np.asarray(strata_n), first, side="right")  # first stratum holding that rank
    entry = np.full(layout.n_nodes, np.inf)
    has = at < len(sizes)
    entry[has] = np.asarray(sizes)[at[has]]
    return entry


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "prompt"


def to_graph(trace: Trace, size: float | str | None = None, top_writers: int = 3) -> AttributionGraph:
    """The trace's subgraph at ``size`` (the closest evaluated size; ``None`` or ``"full"``: the full graph)
    as an :class:`AttributionGraph`."""
    layout = trace.layout
    L, T = layout.n_layers, layout.n_tokens
    index = stratum_index(trace, size)
    n = trace.n_edges if index is None else trace.strata[index].n_edges
    s = 1.0 if index is None else trace.strata[index].size
    order = np.asarray(trace.order, dtype=np.int64)
    weights = np.asarray(trace.order_weights, dtype=np.float64)[:n]
    d = layout.decode(order[:n])
    names = layout.component_names()
    strata_n = [st.n_edges for st in trace.strata] or [trace.n_edges]
    entry = _node_entry(layout, order, strata_n, [st.size for st in trace.strata] or [1.0])
    top = trace.full.top[0]

    def node_id(node: int) -> str:
        g, t = divmod(node, T)
        if g == 0:
            return f"E_{trace.token_ids[t]}_{t}"
        if g == 2 * L:
            return f"{L + 1}_{top.id}_{t}"
        return f"{(g - 1) // 2}_{(g - 1) % 2}_{t}"

    writers: dict[int, dict[str, float]] = {}
    comp = layout.component(order[:n])
    for c, dst, w in zip(comp.tolist(), d["dst_node"].tolist(), weights.tolist()):
        if c >= 0:
            mine = writers.setdefault(dst, {})
            mine[names[c]] = mine.get(names[c], 0.0) + w
    nodes = []
    for node in sorted(set(d["src_node"].tolist()) | set(d["dst_node"].tolist()) | {layout.output_node}):
        g, t = divmod(node, T)
        tok = trace.tokens[t]
        influence = None if not np.isfinite(entry[node]) else float(entry[node])
        if g == 0:
            kind, layer, feature, js = "embedding", "E", t, f"E_{trace.token_ids[t]}-{t}"
            clerp = f"token {t} {tok!r}"
        elif g == 2 * L:
            kind, layer, feature, js = "logit", L + 1, top.id, f"L_{top.id}-{t}"
            clerp = f'Output "{top.token}" (p={top.prob:.3f})'
        else:
            l, feature = (g - 1) // 2, (g - 1) % 2
            kind, layer, js = STATE_TYPES[g % 2], l, f"{l}_{feature}-0"
            by = sorted(writers.get(node, {}).items(), key=lambda kv: -kv[1])[:top_writers]
            written = ", ".join(f"{k} {v:.2f}" for k, v in by)
            clerp = f"{kind}, layer {l}, token {t} {tok!r}" + (f": {written}" if written else "")
        nodes.append(
            Node(
                node_id=node_id(node),
                feature=int(feature),
                layer=str(layer) if isinstance(layer, int) else layer,
                ctx_idx=t,
                feature_type=kind,
                jsNodeId=js,
                clerp=clerp,
                influence=influence,
                token_prob=float(top.prob) if g == 2 * L else None,
                is_target_logit=True if g == 2 * L else None,
            )
        )
    pair = d["src_node"].astype(np.int64) * layout.n_nodes + d["dst_node"]
    pairs, inverse = np.unique(pair, return_inverse=True)
    summed = np.bincount(inverse, weights=weights, minlength=len(pairs))
    links = [
        Link(node_id(int(p // layout.n_nodes)), node_id(int(p % layout.n_nodes)), float(w))
        for p, w in sorted(zip(pairs.tolist(), summed.tolist()), key=lambda pw: -pw[1])
    ]
    settings = trace.settings
    return AttributionGraph(
        metadata=Metadata(
            slug=f"{_slug(trace.prompt)}-s{s:g}",
            scan=trace.model_id,
            prompt_tokens=list(trace.tokens),
            prompt=trace.prompt,
            info={
                "description": f"s-Trace subgraph of size s = {s:g} ({n} of {trace.n_edges} edges) of the "
                f"prediction after token {trace.position}; density {trace.density:.3f}",
                "generator": {"name": GENERATOR},
            },
            generation_settings={
                "method": "s-trace",
                "weighting": settings.weighting,
                "mode": settings.mode,
                "position": trace.position,
                "target": trace.target,
            },
            pruning_settings={"size": s, "edges": n, "total_edges": trace.n_edges},
        ),
        qParams=QParams(),
        nodes=nodes,
        links=links,
    )
