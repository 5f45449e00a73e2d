"""A trace's subgraph at one size as a component-level edge list, named as circuit-discovery benchmarks
name them (EAP-IG, the MIB benchmark): ``input`` (the embeddings), ``a{l}.h{h}``, ``m{l}`` and ``logits``.

Component ``A`` links to component ``B`` when an edge of ``B`` in the subgraph reads a residual state that
an edge of ``A`` wrote into, directly or through residual edges of the subgraph (``input`` writes every
embedding); ``A -> logits`` when ``A`` writes into the output node that way. An s-Trace attention edge
``(h, s -> t)`` is the head's value path from source ``s`` (``A[t,s] W_O v_s``), so a head is read as
``a{l}.h{h}<v>``; query and key paths are not edges of the graph. Each link counts the token-level edges
behind it (``links``) and sums their local weights (``weight``; 1 for the output's one read).

:func:`component_links` computes the list; :func:`to_csv` and :func:`to_eap_json` write it (the JSON in
the EAP-IG / MIB circuit layout, ``nodes`` and ``edges`` with ``in_graph`` and ``score``, only the edges
in the subgraph). numpy only.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np

from explorer.components import stratum_index
from explorer.results import Trace

INPUT, LOGITS = "input", "logits"


@dataclass
class ComponentLink:
    """``source -> target`` (``target`` with ``<v>`` for a head), with the token-level edges behind it
    (``links``) and their summed local weight (``weight``)."""

    source: str
    target: str
    links: int
    weight: float

    @property
    def name(self) -> str:
        return f"{self.source}->{self.target}"


def _writers(trace: Trace, d: dict[str, np.ndarray], comp: np.ndarray) -> np.ndarray:
    """``[N, C + 1]`` bool: which components (index ``C``: the embeddings) wrote into each node through the
    subgraph's edges (``d``: :meth:`EdgeLayout.decode` of them, ``comp`` their components)."""
    layout = trace.layout
    T, C = layout.n_tokens, layout.n_components
    writers = np.zeros((layout.n_nodes, C + 1), dtype=bool)
    writers[:T, C] = True
    src, dst = d["src_node"], d["dst_node"]
    dst_g = dst // T
    for g in range(1, 2 * layout.n_layers + 1):  # every edge goes up one graph layer or two (parallel MLPs)
        here = dst_g == g
        res = here & (comp < 0)
        writers[dst[res]] |= writers[src[res]]
        other = here & (comp >= 0)
        writers[dst[other], comp[other]] = True
    return writers


def component_links(trace: Trace, size: float | str | None = None) -> list[ComponentLink]:
    """The component-level links of ``trace``'s subgraph at ``size`` (the closest evaluated size; ``None``
    or ``"full"``: the full graph), heaviest first."""
    layout = trace.layout
    C, L, H = layout.n_components, layout.n_layers, layout.n_heads
    index = stratum_index(trace, size)
    n = trace.n_edges if index is None else trace.strata[index].n_edges
    ids = np.asarray(trace.order[:n], dtype=np.int64)
    weights = np.asarray(trace.order_weights[:n], dtype=np.float64)
    d = layout.decode(ids)
    comp = layout.component(ids)
    writers = _writers(trace, d, comp)
    reading = comp >= 0
    counts = np.zeros((layout.n_nodes, C), dtype=np.float64)
    summed = np.zeros((layout.n_nodes, C), dtype=np.float64)
    np.add.at(counts, (d["src_node"][reading], comp[reading]), 1.0)
    np.add.at(summed, (d["src_node"][reading], comp[reading]), weights[reading])
    w = writers.T.astype(np.float64)  # [C + 1, N]
    n_links, weight = w @ counts, w @ summed  # [C + 1 writers, C readers]
    names = layout.component_names()
    writer_name = names + [INPUT]
    reader_name = [f"{x}<v>" if i < L * H else x for i, x in enumerate(names)]
    out = [
        ComponentLink(writer_name[a], reader_name[b], int(n_links[a, b]), float(weight[a, b]))
        for a, b in zip(*np.nonzero(n_links))
    ]
    out += [ComponentLink(writer_name[a], LOGITS, 1, 1.0) for a in np.nonzero(writers[layout.output_node])[0]]
    return sorted(out, key=lambda x: (-x.weight, x.name))


def to_csv(links: list[ComponentLink]) -> str:
    """``source,target,edge,links,weight``: one row per link."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["source", "target", "edge", "links", "weight"])
    for x in links:
        writer.writerow([x.source, x.target, x.name, x.links, repr(x.weight)])
    return buf.getvalue()


def to_eap_json(trace: Trace, links: list[ComponentLink], size: float | str | None = None) -> str:
    """The links in the EAP-IG / MIB circuit layout: ``cfg`` (layers, heads, parallel residual), ``nodes``
    (every component, ``in_graph`` when a link of the subgraph touches it), ``edges`` (``score``: the summed
    weight, ``in_graph``: true, ``links``), and ``metadata`` (model, prompt, size)."""
    layout = trace.layout
    index = stratum_index(trace, size)
    touched = {x.source for x in links} | {x.target.split("<")[0] for x in links}
    nodes = [INPUT, *layout.component_names(), LOGITS]
    data = {
        "cfg": {"n_layers": layout.n_layers, "n_heads": layout.n_heads, "parallel_attn_mlp": layout.parallel},
        "nodes": {name: {"in_graph": name in touched} for name in nodes},
        "edges": {x.name: {"score": x.weight, "in_graph": True, "links": x.links} for x in links},
        "metadata": {
            "model": trace.model_id,
            "prompt": trace.prompt,
            "position": trace.position,
            "size": 1.0 if index is None else trace.strata[index].size,
            "edges": trace.n_edges if index is None else trace.strata[index].n_edges,
        },
    }
    return json.dumps(data, indent=1, ensure_ascii=False)
