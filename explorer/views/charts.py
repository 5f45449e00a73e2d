"""The Trace page's views for a notebook: the same builders the app calls, addressed by size.

Each helper takes a :class:`explorer.results.Trace` and a relative size ``size`` (the evaluated size
closest to it on a log scale; ``None``: the first size that keeps the full model's top-1 token) and
returns what the app draws: Altair charts, which a notebook displays as they are, and the layer x head
node graph as a networkx graph or as a vis-network page (:class:`HTMLView` displays it in a notebook).

    from explorer.views import charts
    charts.curves(trace)
    charts.distribution(trace, size=0.4)
    charts.node_graph(trace, size=0.4)
"""

from __future__ import annotations

import html
from pathlib import Path

import altair as alt
import networkx as nx

from explorer.results import Trace
from explorer.views import composition as _composition
from explorer.views import curves as _curves
from explorer.views import distribution as _distribution
from explorer.views import labels
from explorer.views import node_graph as _node_graph
from explorer.views import token_graph as _token_graph


def index_of(trace: Trace, size: float | None = None) -> int:
    """The stratum the helpers draw: the one closest to ``size``, or the first keeping the top-1."""
    return labels.default_stratum(trace) if size is None else labels.closest_stratum(trace, size)


def distribution(trace: Trace, size: float | None = None) -> alt.HConcatChart:
    """The "Output distribution" view: the full model's top tokens beside the subgraph's."""
    return _distribution.chart(trace, index_of(trace, size))


def curves(trace: Trace, size: float | None = None) -> alt.HConcatChart:
    """The "Error against size" view: TV and shared nucleus of the trace and its controls, ``size`` marked."""
    return _curves.chart(trace, index_of(trace, size))


def composition(trace: Trace, size: float | None = None) -> alt.VConcatChart:
    """The "Composition" view: the trace's edges by kind and by quarter of depth."""
    return _composition.chart(trace, index_of(trace, size))


def token_graph(trace: Trace, size: float | None = None) -> alt.LayerChart:
    """The "Token graph" view (readable for prompts up to ``token_graph.MAX_TOKENS`` tokens)."""
    return _token_graph.chart(trace, index_of(trace, size))


class HTMLView:
    """A self-contained HTML page that a notebook shows in an inline frame; ``save(path)`` writes it."""

    def __init__(self, page: str, height: int = 640):
        self.html = page
        self.height = height

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{html.escape(self.html, quote=True)}" width="100%" '
            f'height="{self.height + 20}" style="border:none"></iframe>'
        )

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.html, encoding="utf-8")
        return path


class NodeGraph(HTMLView):
    """The "Components" view: ``graph`` is the networkx graph the app builds, and the object displays as
    the app's vis-network drawing."""

    def __init__(self, graph: nx.DiGraph, height: int = 620):
        super().__init__(_node_graph.to_html(graph, height=height), height)
        self.graph = graph


def node_graph(trace: Trace, size: float | None = None, size_by: str = "edges", height: int = 620) -> NodeGraph:
    """The "Components" view at ``size``; nodes sized by ``size_by`` (``edges`` or ``weight``)."""
    return NodeGraph(_node_graph.build(trace, index_of(trace, size), size_by), height)


def component_edges(trace: Trace, name: str, size: float | None = None) -> list[dict]:
    """The edges of one head (``a{l}.h{h}``) or MLP (``m{l}``) in the trace at ``size``, heaviest first."""
    return _node_graph.node_edges(trace, index_of(trace, size), name)
