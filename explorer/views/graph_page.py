"""The node graph's page: vis-network (the copy pyvis ships, in-lined: no network needed) drawing a graph
of :func:`explorer.views.node_graph.build` on the model's layer x head grid, with its axes, a legend for
colour (the size at which a component entered) and size, and the chosen component highlighted.

One page serves both uses. Standalone (:func:`standalone`: a notebook, a saved file) it holds its graph.
In the app (:func:`frame_page`) it starts empty and draws each graph its parent window posts to it
(``{"type": "strace-graph", "graph": graph_data(...)}``, or that as JSON text), so a slider move sends the
graph, not the library; a click on a component posts ``{"type": "strace-node", "node": name}`` back.
Tooltips are plain text (vis-network writes a string title as text), so token texts need no escaping
there; the data embedded in the standalone page is JSON with ``<``, ``>`` and ``&`` escaped, which cannot
end its script.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import networkx as nx

from explorer.views import style
from explorer.views.labels import format_size

AXIS_COLOUR = "#777777"
SELECTED_COLOUR = style.RULE_COLOUR
X_STEP, Y_STEP = 46, 26
LEGEND_HEIGHT = 84  # px under the graph, within the page's height


@lru_cache(maxsize=1)
def vis_library() -> tuple[str, str]:
    """vis-network's script and style sheet, from the pyvis package."""
    lib = resources.files("pyvis") / "templates" / "lib" / "vis-9.1.2"
    return (lib / "vis-network.min.js").read_text(encoding="utf-8"), (lib / "vis-network.css").read_text(
        encoding="utf-8"
    )


def grid_x(head: int, n_heads: int) -> float:
    """x of head column ``head``; the MLPs' column (``head = -1``) sits right of the last head."""
    return (n_heads + 0.5) * X_STEP if head < 0 else head * X_STEP


def grid_y(layer: int, n_layers: int) -> float:
    """y of ``layer`` (0 at the bottom; ``n_layers`` is the output, above the last layer)."""
    return (n_layers + 1) * Y_STEP - (layer + 1) * Y_STEP


def axis_nodes(n_layers: int, n_heads: int) -> list[dict]:
    """The grid's labels as text nodes, from the model's shape alone: every few layers ``L0``...; under the
    columns ``h0``... and ``MLP``."""
    bottom = (n_layers + 1) * Y_STEP + Y_STEP / 2
    font = {"size": 11, "color": AXIS_COLOUR}
    step = max(1, n_layers // 10)
    layers = [(f"axis L{l}", f"L{l}", -X_STEP, grid_y(l, n_layers)) for l in range(0, n_layers, step)]
    heads = [(f"axis h{h}", f"h{h}", grid_x(h, n_heads), bottom) for h in range(n_heads)]
    mlp = [("axis MLP", "MLP", grid_x(-1, n_heads), bottom)]
    return [
        {"id": i, "label": label, "x": x, "y": y, "shape": "text", "font": font, "axis": True}
        for i, label, x, y in layers + heads + mlp
    ]


def graph_data(graph: nx.DiGraph) -> dict:
    """What the page draws of ``graph``: its ``size``, vis-network ``nodes`` (axis labels included) and
    ``edges``, the ``clickable`` components, the ``selected`` one and the ``legend``."""
    meta = graph.graph
    nodes = axis_nodes(meta["n_layers"], meta["n_heads"])
    selected = meta.get("selected")
    for name, a in graph.nodes(data=True):
        node = {
            "id": name,
            "label": a["label"] if a["kind"] in ("emb", "out") else " ",
            "x": float(a["x"]),
            "y": float(a["y"]),
            "size": float(a["size"]),
            "color": a["color"],
            "shape": a["shape"],
            "title": a["title"],
            "font": {"size": 10},
            "borderWidth": 0.5,
        }
        if a["kind"] == "absent":
            node["color"] = {"background": "rgba(0,0,0,0)", "border": SELECTED_COLOUR}
            node["borderWidth"] = 2
            node["shapeProperties"] = {"borderDashes": [3, 2]}
        elif name == selected:
            ring = {"background": a["color"], "border": SELECTED_COLOUR}
            node["color"] = ring | {"highlight": ring, "hover": ring}
            node["borderWidth"] = node["borderWidthSelected"] = 3
        nodes.append(node)
    edges = [
        {
            "from": u,
            "to": v,
            "width": float(a["width"]),
            "title": a["title"],
            "color": {"color": "#8a8a8a", "opacity": 0.45},
            "arrows": "to",
            "smooth": False,
        }
        for u, v, a in graph.edges(data=True)
    ]
    clickable = [n for n, a in graph.nodes(data=True) if a["kind"] in ("head", "mlp")]
    smallest, top = meta["smallest"], meta["top"]
    by = "edges" if meta["size_by"] == "edges" else "summed weight"
    legend = {
        "colour_title": "colour: entered the trace at size s",
        "colours": list(style.ENTRY_PALETTE),
        "colour_from": format_size(smallest),
        "colour_to": "1",
        "size_title": f"node size: {by} here",
        "size_small": "few" if top <= 0 else "1" if by == "edges" else "small",
        "size_large": f"{top:,.0f}" if by == "edges" else f"{top:.3g}",
        "arrow_title": "arrow A \u2192 B: edges of B that read what A wrote (width: how many); "
        "the heaviest into each layer",
    }
    return {
        "size": format_size(meta["size"]),
        "nodes": nodes,
        "edges": edges,
        "clickable": clickable,
        "selected": selected if selected in graph and graph.nodes[selected]["kind"] != "absent" else None,
        "legend": legend,
    }


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8">
<style>{css}</style>
<style>
html, body {{ margin: 0; background: #ffffff; font: 11px sans-serif; color: #444444; }}
#graph {{ width: 100%; height: {graph_height}px; }}
#legend {{ display: flex; flex-wrap: wrap; gap: 4px 22px; align-items: flex-start; padding: 4px 8px;
  border-top: 1px solid #eeeeee; line-height: 1.35; }}
#legend .part {{ min-width: 150px; }}
#legend .bar {{ height: 9px; margin: 2px 0 0; }}
#legend .ends {{ display: flex; justify-content: space-between; }}
#legend .dots {{ display: flex; align-items: center; gap: 6px; margin-top: 2px; }}
#legend .dot {{ display: inline-block; border-radius: 50%; background: #31688e; }}
</style>
<script>{script}</script>
</head><body>
<div id="graph"></div><div id="legend"></div>
<a id="save-png" href="#" download="node-graph.png" style="position: absolute; top: 4px; right: 8px; color: #31688e;"
  onclick="this.href = document.querySelector('#graph canvas').toDataURL('image/png');">Save as PNG</a>
<script>
var nodes = new vis.DataSet(), edges = new vis.DataSet(), clickable = new Set();
var network = new vis.Network(document.getElementById("graph"), {{nodes: nodes, edges: edges}}, {{
  physics: {{enabled: false}},
  interaction: {{hover: true, tooltipDelay: 120, multiselect: false}},
  nodes: {{font: {{size: 10}}}},
  edges: {{smooth: false}}
}});
var drawn = false;
function element(tag, cls, text) {{
  var e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
}}
function legend(l) {{
  var box = document.getElementById("legend");
  box.replaceChildren();
  var colour = element("div", "part");
  colour.appendChild(element("div", "", l.colour_title));
  var bar = element("div", "bar");
  bar.style.background = "linear-gradient(to right, " + l.colours.join(", ") + ")";
  colour.appendChild(bar);
  var ends = element("div", "ends");
  ends.appendChild(element("span", "", l.colour_from));
  ends.appendChild(element("span", "", l.colour_to));
  colour.appendChild(ends);
  var size = element("div", "part");
  size.appendChild(element("div", "", l.size_title));
  var dots = element("div", "dots");
  [[6, l.size_small], [18, l.size_large]].forEach(function (d) {{
    var dot = element("span", "dot");
    dot.style.width = dot.style.height = d[0] + "px";
    dots.appendChild(dot);
    dots.appendChild(element("span", "", d[1]));
  }});
  size.appendChild(dots);
  var arrows = element("div", "part", l.arrow_title);
  box.append(colour, size, arrows);
}}
function draw(g) {{
  // a tooltip still shown is the last graph's
  document.querySelectorAll("div.vis-tooltip").forEach(function (t) {{ t.style.visibility = "hidden"; }});
  nodes.clear(); edges.clear();
  nodes.add(g.nodes); edges.add(g.edges);
  clickable = new Set(g.clickable);
  legend(g.legend);
  if (!drawn) {{ network.fit(); drawn = true; }}
  network.unselectAll();
  if (g.selected) network.selectNodes([g.selected]);
  document.body.setAttribute("data-size", g.size);
  document.body.setAttribute("data-drawn", String(Number(document.body.getAttribute("data-drawn") || 0) + 1));
}}
network.on("click", function (p) {{
  if (p.nodes.length && clickable.has(p.nodes[0])) {{
    window.parent.postMessage({{type: "strace-node", node: p.nodes[0]}}, "*");
  }}
}});
window.addEventListener("message", function (e) {{
  if (e.source !== window.parent || !e.data || e.data.type !== "strace-graph") return;
  draw(typeof e.data.graph === "string" ? JSON.parse(e.data.graph) : e.data.graph);
}});
{start}
</script>
</body></html>
"""


def script_json(value) -> str:
    """``value`` as JSON that is safe inside a ``<script>``: ``<``, ``>`` and ``&`` as ``\\u`` escapes."""
    text = json.dumps(value, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def page(height: int = 620, graph: nx.DiGraph | None = None) -> str:
    """The page: holding ``graph`` (standalone), or empty until its parent posts one (the app's frame)."""
    script, css = vis_library()
    start = f"draw({script_json(graph_data(graph))});" if graph is not None else ""
    return _PAGE.format(css=css, script=script, graph_height=int(height) - LEGEND_HEIGHT, start=start)


def standalone(graph: nx.DiGraph, height: int = 620) -> str:
    """A self-contained page of ``graph`` (a notebook's inline frame, a saved file)."""
    return page(height, graph)


@lru_cache(maxsize=4)
def frame_page(height: int = 620) -> str:
    """The app's frame: the page without a graph, which draws what its parent posts."""
    return page(height)
