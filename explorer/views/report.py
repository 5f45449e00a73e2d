"""A standalone HTML report of one trace at one size: a header (model, prompt, traced position, target,
settings, density), the node graph, the output distribution, the error curves (with the target's), the
composition, the token graph and the per-size table, in one file that opens from disk with no server and
no network.

The Altair charts are drawn by vega-embed, whose bundle (Vega, Vega-Lite, vega-embed; from the pinned
``vl-convert-python``) is inlined once; each chart's spec sits in a ``<script type="application/json">``
block beside its ``<div>``. The node graph is its vis-network page (inlined), kept as a JSON string
and set as a sandboxed ``<iframe>``'s ``srcdoc`` once the page is laid out (so that it fits the frame).
vega-embed's menu saves each chart as SVG or PNG, offline. Every text from the trace is HTML-escaped, and
``<``, ``>`` and ``&`` are escaped inside the JSON blocks, so no token or prompt can end a script."""

from __future__ import annotations

import html
import json
from functools import lru_cache

import altair as alt

from explorer.results import Trace, table_rows
from explorer.views import charts, labels
from explorer.views import target as target_view
from explorer.views import token_graph as token_view

EMBED_OPTIONS = {"actions": {"export": True, "source": False, "compiled": False, "editor": False}, "renderer": "svg"}
"""vega-embed options: the menu offers SVG and PNG only (no links to the online editor)."""


@lru_cache(maxsize=1)
def vega_bundle() -> str:
    """The Vega, Vega-Lite and vega-embed JavaScript as one script, for the Vega-Lite version Altair writes
    (defines ``vegaEmbed``); about 0.9 MB, built once per process."""
    import vl_convert
    from altair.utils._importers import vl_version_for_vl_convert

    snippet = "window.vegaEmbed = vegaEmbed; window.vegaLite = vegaLite; window.vega = vega;"
    return vl_convert.javascript_bundle(snippet, vl_version=vl_version_for_vl_convert())


def script_json(value) -> str:
    """``value`` as JSON that is safe inside a ``<script>`` element."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def stratum_of(trace: Trace, size: float | str | None) -> int:
    """The stratum the report shows: the closest to ``size``, the last for ``"full"``, or (``None``) the
    first that keeps the full model's top-1, where the app opens."""
    if isinstance(size, str) and size.strip().lower() == "full":
        return len(trace.strata) - 1
    return charts.index_of(trace, None if size is None else float(size))


def figures(trace: Trace, index: int) -> list[tuple[str, str, alt.TopLevelMixin]]:
    """``(id, title, chart)`` of each Altair view of the report at stratum ``index``."""
    size = trace.strata[index].size
    curves = target_view.beside_curves(trace, index) if trace.target is not None else charts.curves(trace, size)
    out: list[tuple[str, str, alt.TopLevelMixin]] = [
        ("distribution", "Output distribution", charts.distribution(trace, size)),
        ("curves", "Error against size", curves),
        ("composition", "Composition", charts.composition(trace, size)),
    ]
    if token_view.readable(trace):
        out.append(("token-graph", "Token graph", charts.token_graph(trace, size)))
    return out


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _header(trace: Trace, index: int) -> str:
    s = trace.strata[index]
    st = trace.settings
    full = trace.full.top[0]
    kept = trace.recovery.get(1)
    rows = [
        ("Model", trace.model_id + (f" (revision {trace.revision})" if trace.revision else "")),
        ("Prompt", trace.prompt),
        ("Traced", f"the prediction after token {labels.token_label(trace, trace.position)}"),
        ("Next token", "-" if trace.next_token is None else repr(trace.next_token)),
        ("Target / foil", f"{trace.target!r} / {trace.foil!r}" if trace.foil else repr(trace.target)),
        (
            "Settings",
            f"weights {st.weighting}, mode {st.mode} ({labels.MODE_LABELS.get(st.mode, st.mode)}), "
            f"controls {'on' if st.controls else 'off'}, {len(trace.strata)} sizes",
        ),
        ("Graph", f"{trace.layout.n_layers} layers x {trace.layout.n_heads} heads, {trace.n_edges:,} edges"),
        ("Full model", f"top-1 {full.token!r} (p = {full.prob:.3f}), entropy {trace.full.entropy:.3f} nats"),
        (
            "Density",
            f"{trace.density:.4f} ({st.density_axis} s); top-1 first kept at s = "
            + ("-" if kept is None else labels.format_size(kept)),
        ),
        ("Shown", labels.size_label(trace, index) + f": TV {s.trace.tv:.4f}, shared nucleus {s.trace.shared_nucleus}"),
    ]
    cells = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="header">{cells}</table>'


def _table(trace: Trace, index: int) -> str:
    rows = table_rows(trace)
    columns = list(rows[0])
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)

    def cell(v) -> str:
        if isinstance(v, float):
            return _esc(f"{v:.4g}")
        return _esc("" if v is None else repr(v) if isinstance(v, str) else v)

    body = "".join(
        f"<tr{' class=shown' if i == index else ''}>" + "".join(f"<td>{cell(r[c])}</td>" for c in columns) + "</tr>"
        for i, r in enumerate(rows)
    )
    return f'<table class="sizes"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 28px; }
table.header th { text-align: left; padding-right: 16px; vertical-align: top; }
table.sizes { border-collapse: collapse; font-size: 0.85em; }
table.sizes td, table.sizes th { border: 1px solid #ddd; padding: 2px 6px; text-align: right; }
table.sizes tr.shown { background: #fff3c4; }
iframe.graph { width: 100%; height: 720px; border: 1px solid #ddd; }
div.chart { width: 100%; }
div.chart.vega-embed { width: 100%; display: flex; }
div.chart.vega-embed details, div.chart.vega-embed details summary { position: relative; }
.note { color: #666; font-size: 0.9em; }
"""


def report_html(trace: Trace, size: float | str | None = None) -> str:
    """The report of ``trace`` at ``size`` (:func:`stratum_of`) as one self-contained HTML document."""
    index = stratum_of(trace, size)
    graph = charts.node_graph(trace, trace.strata[index].size)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>s-Trace report: {_esc(trace.prompt[:80])}</title>",
        f"<style>{STYLE}</style>",
        f'<script type="text/javascript">{vega_bundle()}</script>',
        "</head><body>",
        "<h1>s-Trace report</h1>",
        _header(trace, index),
        "<h2>Components</h2>",
        '<p class="note">Heads and MLPs with edges in the trace at this size, on the layer x head grid, '
        "coloured by the size at which they entered; arrows: the flow between them.</p>",
        '<iframe class="graph" id="node-graph" sandbox="allow-scripts allow-downloads" title="node graph"></iframe>',
        f'<script type="application/json" id="node-graph-page">{script_json(graph.html)}</script>',
    ]
    for key, title, chart in figures(trace, index):
        parts += [
            f"<h2>{_esc(title)}</h2>",
            f'<div class="chart" id="chart-{key}"></div>',
            f'<script type="application/json" id="spec-{key}">{script_json(chart.to_dict())}</script>',
        ]
    parts += [
        "<h2>Per size</h2>",
        _table(trace, index),
        '<p class="note">Written by s-Trace Explorer; opens offline. Each chart\'s menu saves it as SVG or PNG.</p>',
        "<script>",
        "var frame = document.getElementById('node-graph');",
        "void frame.offsetWidth;  // laid out first: the graph fits the frame's size when it starts",
        "frame.srcdoc = JSON.parse(document.getElementById('node-graph-page').textContent);",
        f"const embedOptions = {script_json(EMBED_OPTIONS)};",
        "document.querySelectorAll('div.chart').forEach(function (div) {",
        "  var spec = JSON.parse(document.getElementById('spec-' + div.id.slice(6)).textContent);",
        "  vegaEmbed(div, spec, embedOptions).catch(function (e) { div.textContent = 'chart error: ' + e; });",
        "});",
        "</script>",
        "</body></html>",
    ]
    return "\n".join(parts)
