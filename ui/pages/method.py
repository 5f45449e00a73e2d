"""s-Trace Explorer: the Method page (``/Method``). The method explained in short sections, each with a figure computed
live on the embedded model for one short prompt (the user can change it), and a way to open the view of
the Trace page that shows the same thing."""

from __future__ import annotations

from typing import TypedDict, cast

import pandas as pd
import streamlit as st

from explorer import DEFAULT_MODEL
from explorer.views import distribution, labels, method, method_graph
from ui.nav import open_in_trace_page
from ui.safe import code, escape_md
from ui.state import app_config, sweep_with_progress

DEFAULT_PROMPT = "The capital of France is"


class SweepSettings(TypedDict):
    model_id: str
    revision: str | None
    weighting: str
    mode: str
    controls: bool
    compare_modes: bool


# The sweep the page explains: the method's defaults, with both controls and the other ablation mode, on the
# embedded model (the device and dtype are the configuration's, as the Trace page starts with).
SETTINGS = SweepSettings(
    model_id=DEFAULT_MODEL, revision=None, weighting="l1", mode="all", controls=True, compare_modes=True
)


def open_trace(prompt: str) -> None:
    """Open this prompt on the Trace page with the same sweep (so it is not computed again)."""
    st.session_state.controls = SETTINGS["controls"]
    st.session_state.compare = SETTINGS["compare_modes"]
    open_in_trace_page(SETTINGS["model_id"], prompt, SETTINGS["mode"], SETTINGS["weighting"])


def see_on_trace_page(view: str, prompt: str, key: str) -> None:
    """A button that opens the prompt on the Trace page, naming the view that shows this section."""
    if st.button(f"See it on the Trace page: {view}", key=f"open-{key}", icon=":material/open_in_new:"):
        open_trace(prompt)


def sweep_for(prompt: str):
    """The page's sweep, or ``None`` after showing what went wrong."""
    cfg = app_config()
    return sweep_with_progress(**SETTINGS, device=cfg.device, dtype=cfg.dtype, prompt=prompt)


def section_graph(tr, prompt: str) -> None:
    st.subheader("1. The token-level graph")
    counts = method_graph.graph_counts(tr)
    share = counts.set_index("kind")["share"]
    L, H, T = tr.layout.n_layers, tr.layout.n_heads, tr.layout.n_tokens
    st.markdown(
        f"The model reads the prompt's **{T} tokens** and keeps one running vector per token, the residual "
        "stream, which every layer adds to. Each state of that stream is a **node**: a token's input "
        "embedding, its state after a layer's attention, and after the layer's MLP. Each node is a sum, and "
        "each term of the sum is an **edge**:\n"
        "- a **residual** edge brings the state just below;\n"
        "- an **attention** edge brings what one head copied from one token (the same or an earlier one);\n"
        "- an **MLP** edge brings what the layer's MLP added.\n\n"
        f"This model has {L} layers of {H} heads, so the prompt's graph has {method_graph.graph_nodes(tr):,} nodes and "
        f"**{tr.n_edges:,} edges**, {share['attention']:.0%} of them attention edges. Only nodes that lead to "
        "the output (the last token after the last layer) count. The figure draws every edge of the first two "
        "layers; each diagonal line stands for one edge per head."
    )
    st.altair_chart(method_graph.sketch_chart(tr, layers=2), width="stretch")
    st.dataframe(counts, hide_index=True, column_config={"share": st.column_config.NumberColumn(format="percent")})
    see_on_trace_page("Token graph", prompt, "graph")


def section_weights(tr, prompt: str) -> None:
    st.subheader("2. Edge weights")
    L = tr.layout.n_layers
    st.markdown(
        "Each edge gets a weight: how large its term is (L1 norm of the vector) divided by the summed size "
        "of all the terms of the same node. The weights into a node add up to 1; they are local, and say "
        "nothing yet about the output. (The Trace page also offers L2 norms and *ifr*, information flow "
        "routes, which scores a term by how much it moves the sum.)"
    )
    layer = st.slider(
        "Layer", 0, L - 1, L - 1, key="method_layer", help="whose attention node of the last token to show"
    )
    df = method_graph.node_weights_frame(tr, layer)
    top = df.sort_values("weight", ascending=False).iloc[0]
    st.caption(
        f"Weights into the last token's state after layer {layer}'s attention: {len(df)} edges, summing to "
        f"{df['weight'].sum():.3f}; the heaviest is {top['edge']} from {code(top['source'])} "
        f"({top['weight']:.2f})."
    )
    st.altair_chart(method_graph.node_weights_chart(tr, layer), width="stretch")
    see_on_trace_page("Components (inspect a component's edges and their weights)", prompt, "weights")


def first_steps(tr) -> str:
    """A sentence on where the search goes first, from the trace's own order."""
    first = method.first_of_kind(tr, "attention")
    lead = method.first_edges(tr, first["rank"] if first else 0)
    if not first:
        return ""
    kinds = cast(pd.Series, lead["kind"])
    residual, mlp = int((kinds == "residual").sum()), int((kinds == "mlp").sum())
    return (
        f" Here its first {first['rank']} edges are {residual} residual and {mlp} MLP edges, before its first "
        f"attention edge: **{first['component']}** reading {code(first['source'])} into {code(first['target'])} "
        f"(rank {first['rank']}). The first 100 edges:"
    )


def section_search(tr, prompt: str) -> int:
    st.subheader("3. Greedy search and nested sizes")
    st.markdown(
        "The search starts at the output and keeps a list of the edges that lead into what it has reached. "
        "It always takes the heaviest of them next; when that edge starts at a node not reached yet, the "
        "node's own incoming edges join the list. This orders **all** the edges. The trace of relative size "
        f"*s* is the first *s* × {tr.n_edges:,} edges of that order, so every trace contains all smaller ones "
        "and is connected to the output." + first_steps(tr)
    )
    st.dataframe(
        method.first_edges(tr, 100),
        hide_index=True,
        height=280,
        column_config={"weight": st.column_config.NumberColumn(format="%.3f")},
    )
    st.markdown(
        f"The sizes evaluated go from {labels.format_size(tr.strata[0].size)} to 1 (sizes too small to hold "
        "one edge are skipped). Pick one: the figures below follow it."
    )
    index = st.select_slider(
        "Size of the subgraph",
        options=list(range(len(tr.strata))),
        value=labels.default_stratum(tr),
        key=f"method-size-{abs(hash((tr.prompt, tr.n_edges)))}",
        format_func=lambda i: labels.size_label(tr, i),
    )
    st.altair_chart(method.sizes_chart(tr, index), width="stretch")
    see_on_trace_page("the size slider and Components", prompt, "search")
    return index


def section_ablation(tr, prompt: str, index: int) -> None:
    st.subheader("4. Zero ablation, in two modes")
    rec = method.mode_recovery(tr)
    fmt = lambda s: f"s = {labels.format_size(s)}" if s else "no size"
    st.markdown(
        "To test a trace, the model runs again on the same prompt with every edge **outside** the trace "
        "multiplied by 0; everything after it is recomputed, so later attention and MLPs see the changed "
        "states. For an attention edge, the head's attention probability from that token is set to 0 (the "
        "others are not rescaled). Two modes:\n"
        "- **all** (the method as described): attention, MLP and residual edges outside the trace are removed;\n"
        "- **attention kept**: only residual and MLP edges are removed, every attention probability stays. The "
        "authors' published code did this in effect: its attention mask was passed under a name the attention "
        "function ignores.\n\n"
        "With attention kept, every head still reads every token, so much less has to be inside the trace "
        f"for the model to work. For this prompt the top-1 token comes back at {fmt(rec.get('all'))} with "
        f"all edges removed and at {fmt(rec.get('attention-kept'))} with attention kept."
    )
    st.altair_chart(method.modes_chart(tr, index), width="stretch")
    see_on_trace_page("Error against size (turn on Compare modes)", prompt, "ablation")


def section_metrics(tr, prompt: str, index: int) -> None:
    st.subheader("5. Total variation and shared nucleus")
    out = tr.strata[index].trace
    st.markdown(
        "Two numbers compare the subgraph's next-token distribution *q* with the full model's *p*:\n"
        "- **total variation** (TV): half the summed absolute difference over the whole vocabulary; 0 when "
        "they are the same, 1 when they share nothing;\n"
        "- **shared nucleus**: for *k* = 99, 90, ..., 5, 1 %, take each distribution's shortest list of top "
        "tokens whose probability reaches *k* %; the shared nucleus is the largest *k* whose two lists are "
        "identical, in order. 1 % or more means the top-1 token is kept."
    )
    c1, c2, c3 = st.columns(3)
    c1.metric("Size", labels.format_size(tr.strata[index].size))
    c2.metric("TV", f"{out.tv:.3f}")
    c3.metric("Shared nucleus", f"{out.shared_nucleus}%")
    st.altair_chart(distribution.chart(tr, index), width="content")
    st.caption("The nucleus lists at this size, from the ten top tokens kept per distribution:")
    st.dataframe(method.nucleus_frame(tr, index), hide_index=True, height=35 * 13 + 3)
    see_on_trace_page("Output distribution", prompt, "metrics")


def section_controls(tr, prompt: str, index: int) -> None:
    st.subheader("6. The controls")
    s = tr.strata[index]
    rand, inv = s.outputs.get("random"), s.outputs.get("inverse")
    st.markdown(
        "Is the trace special, or would any subgraph of that many edges do? Two controls answer it, with the "
        "same edge count:\n"
        "- **random**: a random connected subgraph grown back from the output (residual and MLP edges first, "
        "then random attention edges), with every residual edge kept;\n"
        "- **inverse**: the trace's attention and MLP edges removed, everything else kept.\n\n"
        "A trace is only interesting where its TV lies well below the random control's. (While the trace holds "
        "only residual edges, the inverse control removes nothing, so its TV is near 0.)"
        + (
            f" At s = {labels.format_size(s.size)}: trace {s.trace.tv:.3f}, random {rand.tv:.3f}, inverse {inv.tv:.3f}."
            if rand and inv
            else ""
        )
    )
    st.altair_chart(method.controls_chart(tr, index), width="stretch")
    see_on_trace_page("Error against size", prompt, "controls")


def section_density(tr, prompt: str) -> None:
    st.subheader("7. Density")
    rand = tr.density_of("random") if "random" in tr.strata[0].outputs else None
    st.markdown(
        "One number per prompt: the area under the TV curve, with size on a log10 scale (trapezoids over the "
        "evaluated strata, each at its actual size: its whole number of edges over E, a little below the grid "
        'size it was rounded down from; the slider and the recovery sizes, such as "top-1 first kept at", '
        "keep the grid's names). About 0 means a tiny subgraph already reproduces the model; about 5, that it "
        f"needs nearly the whole graph. This prompt: **density {tr.density:.2f}**"
        + (f" (the random control's, dashed: {rand:.2f})." if rand is not None else ".")
    )
    st.altair_chart(method.density_chart(tr), width="stretch")
    see_on_trace_page("Density, at the top of the page", prompt, "density")


def section_phases(tr, prompt: str, index: int) -> None:
    st.subheader("8. Construction and refinement")
    kept = tr.recovery.get(1)
    phases = method.phase_frame(tr)
    late = cast(pd.DataFrame, phases[phases.measure != "attention edges"])["share"].iloc[0]
    text = (
        "The papers call sizes 1e-4 to 1e-2 the **construction** phase and 1e-2 to 1 the **refinement** "
        "phase: on large models a small subgraph of mostly early-layer edges already gives the head of the "
        "distribution, and later, increasingly attention, edges refine the rest. The figure shows the share "
        "of attention edges, and of edges in the last quarter of the layers, at each size."
    )
    if late > 0.5:
        text += (
            f" Here the smallest trace has {late:.0%} of its edges in the last quarter: it is the last "
            "token's own stream, followed down from the output."
        )
    if kept:
        text += f" The top-1 token comes back at s = {labels.format_size(kept)}, in the {method.phase_label(kept)}"
        text += ": this small model needs more of its graph than the papers' large ones." if kept > 1e-2 else "."
    st.markdown(text)
    st.altair_chart(method.phase_chart(tr, index), width="stretch")
    see_on_trace_page("Composition", prompt, "phases")


def section_settings(prompt: str) -> None:
    st.subheader("9. The Trace page's settings")
    st.markdown(
        "- **Edge weight**: l1 (default), l2 or ifr (section 2);\n"
        "- **Ablation mode**, and **Compare modes** to draw the other mode's curve (section 4);\n"
        "- **Random and inverse controls** (section 6);\n"
        "- **Size of the subgraph**: the slider every view follows (section 3);\n"
        "- **Guided examples**: prompts chosen to contrast, each with a sentence on what to look for."
    )
    see_on_trace_page("the sidebar", prompt, "settings")


def main() -> None:
    st.title("How the s-trace works")
    st.caption(
        "How much of a model's computation does a prompt need? Each figure below is computed live, on "
        f"the embedded model ({DEFAULT_MODEL}), for the prompt in the box: change it and they change."
    )
    last: str = st.session_state.get("method_last_prompt", DEFAULT_PROMPT)  # kept across visits to other pages
    prompt = st.text_input("Prompt (short: a few tokens)", value=last, key="method_prompt")
    st.session_state.method_last_prompt = prompt
    sweep = sweep_for(prompt)
    if sweep is None:
        return
    tr = sweep.trace
    st.markdown(
        f"**{len(tr.tokens)} tokens**: "
        + " · ".join(code(labels.token_label(tr, t)) for t in range(len(tr.tokens)))
        + f" · the full model's top-1 next token: **{escape_md(repr(tr.full.top[0].token))}** "
        f"({tr.full.top[0].prob:.0%})"
    )
    section_graph(tr, prompt)
    section_weights(tr, prompt)
    index = section_search(tr, prompt)
    section_ablation(tr, prompt, index)
    section_metrics(tr, prompt, index)
    section_controls(tr, prompt, index)
    section_density(tr, prompt)
    section_phases(tr, prompt, index)
    section_settings(prompt)


if __name__ == "__main__":
    main()
