"""The Trace page's component panel and what-if (issue "inspect, intervene"): for the component chosen in
the node graph or the inspector, its share of the trace's weight and the size it entered at (from the trace
alone), and, with the model, a head's attention pattern with the trace's edges marked and the tokens its
output promotes and suppresses (:func:`explorer.inspection.inspect_component`); then a what-if that adds or
removes heads, MLPs and layers and evaluates the changed subgraph in one masked pass
(:func:`explorer.whatif.evaluate_subgraph`). ``model``: a function that gives the trace's loaded model, or
``None`` for a trace reopened from a file (the panel then says what needs the model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import streamlit as st

from explorer.components import component_in_trace
from explorer.errors import ExplorerError
from explorer.results import Trace
from explorer.views import component as views
from explorer.views.labels import format_size
from ui.safe import code, plain

ModelSource = Callable[[], object] | None
CACHE = "component_panel_cache"
WHATIF = "whatif_result"
MAX_CACHED = 16


def _key(trace: Trace, *rest) -> tuple:
    return (trace.model_id, trace.revision, tuple(trace.token_ids), trace.settings.mode, *rest)


def _cached(key: tuple, compute):
    """``compute()`` once per ``key`` in this session (a few entries kept)."""
    cache: dict = st.session_state.setdefault(CACHE, {})
    if key not in cache:
        if len(cache) >= MAX_CACHED:
            cache.pop(next(iter(cache)))
        cache[key] = compute()
    return cache[key]


def component_panel(trace: Trace, index: int, name: str, model: ModelSource) -> None:
    """The chosen component at stratum ``index``: share, entry size; its pattern and token effects."""
    size = trace.strata[index].size
    try:
        part = component_in_trace(trace, name, size)
    except ExplorerError as exc:
        st.error(plain(str(exc)))
        return
    entered = "is in no trace evaluated" if part.entered is None else f"entered at s = {format_size(part.entered)}"
    st.markdown(
        f"**{code(part.name)}** {entered}; at s = {format_size(size)} it holds {len(part.edges):,} of the "
        f"trace's {part.n_edges:,} edges and **{100 * part.share:.2g}%** of their summed weight."
    )
    if model is None:
        st.info("The attention pattern and the tokens this component promotes need the model: trace the prompt.")
        return
    try:
        from explorer.inspection import inspect_component

        # the pattern and the token effects do not depend on the size (one forward pass per component);
        # the edges, share and entry size do, and come from the trace alone
        inspection = replace(
            _cached(_key(trace, "inspect", name), lambda: inspect_component(model(), trace, name, None)),  # type: ignore[arg-type]
            component=part,
        )
    except ExplorerError as exc:
        st.error(plain(str(exc)))
        return
    left, right = st.columns(2) if inspection.pattern is not None else (None, st.container())
    if left is not None:
        with left:
            st.altair_chart(views.pattern_chart(inspection), width="stretch")
            st.caption(
                "Query tokens (rows) attend to key tokens (columns); outlined cells are this head's edges in "
                "the trace at this size."
            )
    with right:
        st.altair_chart(views.effects_chart(inspection), width="stretch")
        st.caption(
            f"Its output at the traced token ({code(inspection.tokens[inspection.position])}) projected "
            "through the final norm (linearised) and the unembedding: the tokens it raises and lowers most."
        )


def _choices(trace: Trace) -> list[str]:
    layout = trace.layout
    layers = [f"L{layer}" for layer in range(layout.n_layers)]
    heads = [f"a{layer}" for layer in range(layout.n_layers)]
    return layout.component_names() + heads + layers


def whatif_panel(trace: Trace, index: int, model: ModelSource, chosen: str | None = None) -> None:
    """Add or remove components from this size's subgraph (or the full model) and evaluate it."""
    if model is None:
        st.info("What-if evaluates a changed subgraph with the model: trace the prompt to use it.")
        return
    options = _choices(trace)
    cols = st.columns([2, 2, 1.3])
    remove = cols[0].multiselect(
        "Remove",
        options,
        default=[chosen] if chosen in options else [],
        key="whatif_remove",
        help="a{l}.h{h}: a head; m{l}: an MLP; a{l}: every head of layer l; L{l}: the whole layer",
    )
    add = cols[1].multiselect("Add", options, key="whatif_add", help="added first; removals apply after")
    start = cols[2].radio(
        "Start from", ["this size", "the full model"], key="whatif_start", help="the subgraph that is changed"
    )
    size = trace.strata[index].size if start == "this size" else "full"
    if st.button("Evaluate the changed subgraph", key="whatif_run", disabled=not (add or remove)):
        try:
            from explorer.whatif import evaluate_subgraph

            st.session_state[WHATIF] = (
                _key(trace, size, tuple(add), tuple(remove)),
                evaluate_subgraph(model(), trace, size=size, add=add, remove=remove),  # type: ignore[arg-type]
            )
        except ExplorerError as exc:
            st.error(plain(str(exc)))
            return
    stored = st.session_state.get(WHATIF)
    if not stored or stored[0] != _key(trace, size, tuple(add), tuple(remove)):
        st.caption("Choose components and press Evaluate: one masked pass, the sweep is not recomputed.")
        return
    result = stored[1]
    base, out = result.base, result.output
    m = st.columns(4)
    m[0].metric("TV, unchanged", f"{base.tv:.3f}")
    m[1].metric("TV, changed", f"{out.tv:.3f}", delta=f"{out.tv - base.tv:+.3f}", delta_color="inverse")
    m[2].metric("Edges", f"{result.n_edges:,}", delta=f"{result.n_edges - result.base_edges:+,}")
    m[3].metric("Top-1, changed", out.top[0].token.strip() or repr(out.top[0].token))
    st.altair_chart(views.whatif_chart(result), width="stretch")
    origin = "the full model" if result.from_full else f"s = {format_size(result.size)}"
    removed, added = ", ".join(result.removed) or "nothing", ", ".join(result.added) or "nothing"
    st.caption(f"From {origin}, mode {result.mode}: removed {removed}; added {added}.")
