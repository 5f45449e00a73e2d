"""The layer x head node graph: one node per attention head and per MLP that has an edge in the trace,
placed on a layer x head grid (layers bottom to top, MLPs in the rightmost column), plus the embeddings
below and the output above. Nodes are sized by edge count or summed weight and coloured by the size at
which they first entered the trace. A flow edge ``A -> B`` counts how often an edge of ``B`` reads a state
that ``A`` wrote into, directly or through residual edges of the trace.

Built with networkx; rendered with pyvis with its JavaScript in-lined (no network needed); :func:`isolated`
makes that page run in an opaque origin inside the app's iframe.
"""

from __future__ import annotations

import html
import math
import re

import networkx as nx
import numpy as np

from explorer.edges import KIND_NAMES
from explorer.results import Trace
from explorer.views import style
from explorer.views.labels import first_entry, format_size, token_label, trace_edges

EMB, OUT = "emb", "out"
SIZE_BY = ("edges", "weight")
PALETTE = style.ENTRY_PALETTE
X_STEP, Y_STEP = 46, 26
MAX_FLOWS = 200


def entry_colour(size: float, smallest: float) -> str:
    """Colour of a size on a log scale from ``smallest`` (dark) to 1 (yellow)."""
    lo = math.log10(smallest)
    frac = 0.0 if lo >= 0 else (math.log10(size) - lo) / -lo
    return PALETTE[min(int(round(frac * (len(PALETTE) - 1))), len(PALETTE) - 1)]


def flows(trace: Trace, edges: dict[str, np.ndarray]) -> np.ndarray:
    """``[C + 1, C + 1]`` counts of (writer, reading edge) pairs between components.

    Components are indexed as in :meth:`EdgeLayout.component`, with ``C`` (the embeddings) as an extra
    writer; the last column (index ``C``) counts what reaches the output node. A node's writers are the
    components whose trace edges end in it, plus the writers of the node below it when the residual edge
    between them is in the trace.
    """
    lay = trace.layout
    T = lay.n_tokens
    n_comp = lay.n_components
    writers = np.zeros((lay.n_nodes, n_comp + 1), dtype=bool)
    writers[:T, n_comp] = True  # input embeddings
    comp, src, dst = edges["component"], edges["src_node"], edges["dst_node"]
    dst_g = dst // T
    for g in range(1, 2 * lay.n_layers + 1):
        here = dst_g == g
        res = here & (comp < 0)
        writers[dst[res]] |= writers[src[res]]
        other = here & (comp >= 0)
        writers[dst[other], comp[other]] = True
    reads = np.zeros((lay.n_nodes, n_comp + 1), dtype=np.float64)
    other = comp >= 0
    np.add.at(reads, (src[other], comp[other]), 1.0)
    reads[lay.output_node, n_comp] += 1.0
    return writers.T.astype(np.float64) @ reads


def build(trace: Trace, index: int, size_by: str = "edges") -> nx.DiGraph:
    """The node graph at stratum ``index``. Node attributes: ``label``, ``kind`` (head, mlp, emb, out),
    ``layer``, ``head``, ``edges``, ``weight``, ``entered``, ``x``, ``y``, ``size``, ``color``, ``title``;
    edge attribute ``links`` (flow count) and ``value``."""
    lay = trace.layout
    L, H = lay.n_layers, lay.n_heads
    names = lay.component_names()
    n_comp = len(names)
    edges = trace_edges(trace, index)
    comp = edges["component"]
    counts = np.bincount(comp[comp >= 0], minlength=n_comp)
    weights = np.bincount(comp[comp >= 0], weights=edges["weight"][comp >= 0], minlength=n_comp)
    entered = first_entry(trace)
    smallest = trace.strata[0].size
    present = np.nonzero(counts)[0]
    big = (counts if size_by == "edges" else weights)[present]
    top = float(big.max()) if len(big) else 1.0

    g = nx.DiGraph()
    top_y = (L + 1) * Y_STEP
    g.add_node(
        EMB,
        label="embeddings",
        kind="emb",
        layer=-1,
        head=-1,
        edges=0,
        weight=0.0,
        entered=smallest,
        x=((H - 1) * X_STEP) / 2,
        y=top_y + 1.4 * Y_STEP,
        size=10,
        color="#9e9e9e",
        shape="box",
        title="input embeddings (graph layer 0)",
    )
    g.add_node(
        OUT,
        label="output",
        kind="out",
        layer=L,
        head=-1,
        edges=0,
        weight=0.0,
        entered=smallest,
        x=((H - 1) * X_STEP) / 2,
        y=0,
        size=10,
        color="#9e9e9e",
        shape="box",
        title=html.escape(f"output node: last token {token_label(trace, lay.n_tokens - 1)} after the last MLP"),
    )
    for c in present:
        name = names[c]
        is_mlp = c >= L * H
        layer = c - L * H if is_mlp else c // H
        head = -1 if is_mlp else c % H
        value = float(counts[c] if size_by == "edges" else weights[c])
        size = 3 + 9 * math.sqrt(value / top) if top > 0 else 3
        when = entered.get(name, trace.strata[index].size)
        g.add_node(
            name,
            label=name,
            kind="mlp" if is_mlp else "head",
            layer=int(layer),
            head=int(head),
            edges=int(counts[c]),
            weight=float(weights[c]),
            entered=when,
            x=(H + 0.5) * X_STEP if is_mlp else head * X_STEP,
            y=top_y - (layer + 1) * Y_STEP,
            size=size,
            color=entry_colour(when, smallest),
            shape="square" if is_mlp else "dot",
            title=f"{name}: {int(counts[c])} edges, summed weight {weights[c]:.3g}, entered at s = {format_size(when)}",
        )
    flow = flows(trace, edges)
    node_of: dict[int, str] = {int(i): names[i] for i in present}
    node_of[n_comp] = EMB
    rows, cols = np.nonzero(flow[:, :n_comp])
    pairs = [(flow[r, c], node_of.get(r), node_of.get(c)) for r, c in zip(rows.tolist(), cols.tolist())]
    out_col = flow[:, n_comp]  # column n_comp doubles as "reaches the output"
    pairs += [(out_col[r], node_of.get(r), OUT) for r in np.nonzero(out_col)[0].tolist()]
    pairs = sorted((p for p in pairs if p[1] and p[2] and p[1] != p[2]), key=lambda p: -p[0])[:MAX_FLOWS]
    top_flow = max((p[0] for p in pairs), default=1.0)
    for links, a, b in pairs:
        g.add_edge(
            a,
            b,
            links=int(links),
            value=float(links),
            width=0.5 + 3.5 * links / top_flow,
            title=f"{a} -> {b}: {int(links)} links",
        )
    return g


def strip_cdn(html: str) -> str:
    """Remove the Bootstrap ``<link>``/``<script>`` tags pyvis adds from a CDN (not needed offline)."""
    html = re.sub(r"<link[^>]*bootstrap[^>]*>", "", html, flags=re.S)
    return re.sub(r"<script[^>]*bootstrap[^>]*>\s*</script>", "", html, flags=re.S)


def to_html(graph: nx.DiGraph, height: int = 640) -> str:
    """Self-contained HTML (vis-network in-lined) with the grid positions fixed."""
    from pyvis.network import Network

    net = Network(height=f"{height}px", width="100%", directed=True, cdn_resources="in_line", bgcolor="#ffffff")
    L = max((a["layer"] for _, a in graph.nodes(data=True)), default=0)
    H = max((a["head"] for _, a in graph.nodes(data=True)), default=0) + 1
    top_y = (L + 1) * Y_STEP
    for l in range(0, L, max(1, L // 10)):
        net.add_node(
            f"layer {l}",
            label=f"L{l}",
            x=-X_STEP,
            y=float(top_y - (l + 1) * Y_STEP),
            shape="text",
            physics=False,
            font={"size": 11, "color": "#777777"},
        )
    for h in range(H):
        net.add_node(
            f"head {h}",
            label=f"h{h}",
            x=float(h * X_STEP),
            y=float(top_y + Y_STEP / 2),
            shape="text",
            physics=False,
            font={"size": 11, "color": "#777777"},
        )
    net.add_node(
        "mlps",
        label="MLP",
        x=float((H + 0.5) * X_STEP),
        y=float(top_y + Y_STEP / 2),
        shape="text",
        physics=False,
        font={"size": 11, "color": "#777777"},
    )
    for name, a in graph.nodes(data=True):
        label = a["label"] if a["kind"] in ("emb", "out") else " "  # pyvis shows the id for an empty label
        net.add_node(
            name,
            label=label,
            x=float(a["x"]),
            y=float(a["y"]),
            size=float(a["size"]),
            color=a["color"],
            shape=a["shape"],
            title=a["title"],
            physics=False,
            font={"size": 10},
            borderWidth=0.5,
        )
    for u, v, a in graph.edges(data=True):
        net.add_edge(
            u,
            v,
            width=float(a["width"]),
            title=a["title"],
            color={"color": "#8a8a8a", "opacity": 0.45},
            arrows="to",
            smooth=False,
        )
    net.toggle_physics(False)
    return strip_cdn(net.generate_html(notebook=False))


_ISOLATED = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>html, body {{ margin: 0; }}</style></head>
<body>
<textarea id="page" hidden>{page}</textarea>
<script>
(function () {{
  var bytes = new TextEncoder().encode(document.getElementById("page").value), text = "";
  for (var i = 0; i < bytes.length; i += 32768) {{
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 32768));
  }}
  location.replace("data:text/html;charset=utf-8;base64," + btoa(text));
}})();
</script>
</body></html>
"""


def isolated(page: str) -> str:
    """``page`` (:func:`to_html`'s) as a document for an iframe's ``srcdoc`` that runs it in an opaque origin.

    Streamlit sandboxes its iframes with both ``allow-scripts`` and ``allow-same-origin``, so a ``srcdoc``
    page would run with the app's own origin (its cookies, storage and DOM). This document holds ``page``
    as inert, HTML-escaped text and replaces itself at once with ``page`` as a ``data:`` URL, which always
    has an opaque origin: the graph's scripts run, but reach nothing of the app."""
    return _ISOLATED.format(page=html.escape(page, quote=False))


def node_edges(trace: Trace, index: int, name: str) -> list[dict]:
    """The trace's edges of component ``name`` at stratum ``index``, heaviest first: rank in the greedy
    order, kind, layer, head, source and target tokens, weight."""
    names = trace.layout.component_names()
    if name not in names:
        return []
    c = names.index(name)
    edges = trace_edges(trace, index)
    sel = np.nonzero(edges["component"] == c)[0]
    sel = sel[np.argsort(-edges["weight"][sel], kind="stable")]
    return [
        {
            "rank": int(edges["rank"][i]),
            "kind": KIND_NAMES[int(edges["kind"][i])],
            "layer": int(edges["layer"][i]),
            "head": int(edges["head"][i]) if edges["head"][i] >= 0 else None,
            "source": token_label(trace, int(edges["source"][i])),
            "target": token_label(trace, int(edges["target"][i])),
            "weight": float(edges["weight"][i]),
        }
        for i in sel
    ]
