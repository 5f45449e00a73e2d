"""s-Trace Explorer: the "Trace a prompt" page (the app's default page, ``/``).

Pick a model and a prompt in the sidebar, and the prompt's token after which the prediction is traced
(default: the last); the whole size sweep is computed once and cached, and the slider moves over the
evaluated sizes, re-drawing the linked views. A target token (and a foil) is followed across sizes beside
TV (:mod:`ui.trace_target`). The URL's query parameters (``model``, ``prompt``, ``size``, ``position``,
``target``, ``foil``) reproduce a view.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from explorer import DEFAULT_MODEL
from explorer.config import AppConfig
from explorer.examples import BY_KEY as EXAMPLE_BY_KEY
from explorer.examples import EXAMPLES
from explorer.export import to_csv, to_json
from explorer.results import Trace, table_rows
from explorer.sweep_cache import Sweep
from explorer.views import composition, distribution, labels, node_graph, target, token_graph
from ui import trace_target
from ui.nav import take_open_request
from ui.safe import plain
from ui.state import (
    app_config,
    debug_panel,
    device_options,
    dtype_options,
    prompt_tokens,
    remember_widgets,
    restore_widgets,
    sweep_with_progress,
    view,
)

OTHER = "other: hub id or local folder"
WEIGHTS = {"l1": "l1 (default)", "l2": "l2", "ifr": "ifr (information flow routes)"}
MODES = labels.MODE_LABELS


LAST = "last_widgets"
WIDGETS = (
    "preset",
    "model_text",
    "device",
    "dtype",
    "revision",
    "prompt",
    "weighting",
    "mode",
    "compare",
    "controls",
    "position",
    "target",
    "foil",
)


def set_model(model: str) -> None:
    if model in app_config().models or not app_config().allow_other_models:
        st.session_state.preset = model
    else:
        st.session_state.preset = OTHER
        st.session_state.model_text = model


def init_state() -> None:
    """Fill the page's state: on a session's first run from the URL (model, prompt, size, position, target,
    foil); when another page asked to open a prompt, from that request; after a visit to another page
    (which drops this page's widget state), from the inputs of this page's last run."""
    state = st.session_state
    if "initialised" not in state:
        state.initialised = True
        qp = st.query_params
        set_model(qp.get("model", app_config().default_model))
        state.prompt = qp.get("prompt", EXAMPLES[0].prompt)
        try:
            state.url_size = float(qp["size"]) if "size" in qp else None
        except ValueError:
            state.url_size = None
        trace_target.init_target_state(qp)
    else:
        restore_widgets(LAST)
    state.setdefault("device", app_config().device)
    state.setdefault("dtype", app_config().dtype)
    state.setdefault("compare", False)
    state.setdefault("controls", True)
    request = take_open_request()
    if request:
        set_model(request["model"])
        state.prompt = request["prompt"]
        state.url_size = None
        for key in ("mode", "weighting"):
            if request.get(key):
                state[key] = request[key]
        trace_target.take_request(request)


def use_example() -> None:
    """Load the picked guided example: its prompt, settings, starting size and component to inspect."""
    state = st.session_state
    ex = EXAMPLE_BY_KEY.get(state.example)
    if ex is None:
        return
    state.prompt = ex.prompt
    state.weighting, state.mode = ex.weighting, ex.mode
    state.controls, state.compare = ex.controls, ex.compare_modes
    state.url_size = ex.size
    if ex.component:
        state.node = ex.component


def sidebar(cfg: AppConfig) -> dict:
    """The inputs that define a sweep; the configuration says which models may be chosen."""
    sb = st.sidebar
    sb.header("Model")
    options = list(cfg.models) + ([OTHER] if cfg.allow_other_models else [])
    if st.session_state.get("preset") not in options:
        refused = st.session_state.get("preset")
        st.session_state.preset = cfg.default_model
        if refused:
            st.warning(
                f"This app offers only these models: {', '.join(cfg.models)}; showing {cfg.default_model} "
                f"instead of {plain(refused)}."
            )
    preset = sb.selectbox("Model", options, key="preset", label_visibility="collapsed")
    model_id = preset
    if preset == OTHER:
        hint = "org/name or /path" if cfg.allow_local_paths else "org/name"
        model_id = sb.text_input("Hub id or local folder", key="model_text", placeholder=hint).strip()
    c1, c2 = sb.columns(2)
    devices, dtypes = device_options(cfg), dtype_options(cfg)
    for key, offered in (("device", devices), ("dtype", dtypes)):
        if st.session_state.get(key) not in offered:
            st.session_state[key] = offered[0]
    device = c1.selectbox("Device", devices, key="device", disabled=len(devices) == 1)
    dtype = c2.selectbox("Dtype", dtypes, key="dtype", disabled=len(dtypes) == 1)
    revision = None
    if not cfg.demo:
        revision = sb.text_input("Revision (optional)", key="revision", placeholder="main").strip() or None

    sb.header("Prompt")
    example = sb.selectbox(
        "Guided examples",
        [""] + list(EXAMPLE_BY_KEY),
        key="example",
        on_change=use_example,
        format_func=lambda k: EXAMPLE_BY_KEY[k].label if k else "pick an example...",
    )
    prompt = sb.text_area("Prompt", key="prompt", height=90)
    if example and prompt == EXAMPLE_BY_KEY[example].prompt:
        sb.caption(f"**What to look for** ({DEFAULT_MODEL}): {EXAMPLE_BY_KEY[example].look_for}")

    sb.header("Method")
    weighting = sb.radio("Edge weight", list(WEIGHTS), format_func=WEIGHTS.get, key="weighting", horizontal=True)
    mode = sb.radio("Ablation mode", list(MODES), format_func=MODES.get, key="mode")
    compare = sb.toggle("Compare modes (also evaluate the other mode)", key="compare")
    controls = sb.toggle("Random and inverse controls", key="controls")
    return dict(
        model_id=model_id,
        device=device,
        dtype=dtype,
        revision=revision,
        prompt=prompt,
        weighting=weighting,
        mode=mode,
        controls=controls,
        compare_modes=compare,
    )


def run_sweep(inputs: dict) -> Sweep | None:
    """Compute (or fetch) the sweep with a progress bar; show any failure as an error and return None."""
    if not inputs["model_id"]:
        st.info("Type a hub id or a local folder in the sidebar.")
        return None
    start = time.perf_counter()
    return sweep_with_progress(lambda frac, message: f"{message} ({time.perf_counter() - start:.1f} s)", **inputs)


@view(
    "Components",
    "Heads (dots) and MLPs (squares) on a layer x head grid, first layer at the bottom; size: "
    "edges or summed weight in the trace; colour: the size at which they entered (dark early, yellow late); "
    "arrows: how their edges chain.",
)
def draw_node_graph(sweep: Sweep, index: int) -> None:
    size_by = st.radio(
        "Node size",
        node_graph.SIZE_BY,
        horizontal=True,
        key="size_by",
        format_func=lambda s: "edge count" if s == "edges" else "summed weight",
    )
    graph = node_graph.build(sweep.trace, index, size_by)
    st.iframe(node_graph.isolated(node_graph.to_html(graph, height=620)), height=640)
    names: list[str] = [n for n, a in graph.nodes(data=True) if a["kind"] in ("head", "mlp")]
    names.sort(key=lambda n: -graph.nodes[n]["edges"])
    if not names:
        st.caption("Only residual edges at this size: no head or MLP is in the trace yet.")
        return
    name = st.selectbox(
        "Inspect a component's edges", names, key="node", format_func=lambda n: f"{n} ({graph.nodes[n]['edges']} edges)"
    )
    st.dataframe(
        pd.DataFrame(node_graph.node_edges(sweep.trace, index, name)),
        hide_index=True,
        height=220,
        width="stretch",
        column_config={"weight": st.column_config.NumberColumn(format="%.4f")},
    )


@view(
    "Output distribution",
    "Grey: the full model; blue: the subgraph at this size. Left: the full model's top "
    "tokens; right: the subgraph's own top tokens.",
)
def draw_distribution(sweep: Sweep, index: int) -> None:
    out = sweep.trace.strata[index].trace
    c1, c2, c3 = st.columns(3)
    c1.metric("TV", f"{out.tv:.3f}", help="total variation from the full model's distribution (0 = identical)")
    c2.metric("Shared nucleus", f"{out.shared_nucleus}%", help="largest nucleus with the same ordered tokens")
    c3.metric("Entropy (nats)", f"{out.entropy:.2f}")
    st.altair_chart(distribution.chart(sweep.trace, index), width="content")


@view(
    "Error against size",
    "Each line: how far the subgraph's prediction is from the full model's as it grows; "
    "the s-trace should sit well below the random control. Red dashes: the slider's size. " + trace_target.CAPTION,
)
def draw_curves(sweep: Sweep, index: int) -> None:
    trace_target.draw_target(sweep, index)
    st.altair_chart(target.beside_curves(sweep.trace, index), width="content")


@view("Composition", "Share of this size's edges by kind and by quarter of the model's depth.")
def draw_composition(sweep: Sweep, index: int) -> None:
    st.altair_chart(composition.chart(sweep.trace, index), width="stretch")


@view(
    "Token graph",
    "Tokens along x, residual-stream states up the model along y; lines are the trace's edges "
    f"(attention diagonal, residual and MLP vertical; the first {token_graph.MAX_EDGES} in greedy order).",
)
def draw_token_graph(sweep: Sweep, index: int) -> None:
    if not token_graph.readable(sweep.trace):
        st.info(f"The prompt has more than {token_graph.MAX_TOKENS} tokens: too long to draw token by token.")
        return
    st.altair_chart(token_graph.chart(sweep.trace, index), width="stretch")


def size_slider(trace: Trace, key: str) -> int:
    """The slider over evaluated strata; starts at the URL's size or the first size keeping the top-1."""
    url_size = st.session_state.get("url_size")
    default = labels.closest_stratum(trace, url_size) if url_size else labels.default_stratum(trace)
    return st.sidebar.select_slider(
        "Size of the subgraph",
        options=list(range(len(trace.strata))),
        value=default,
        key=key,
        format_func=lambda i: labels.size_label(trace, i),
        help="relative size s = kept edges / all edges, on a log scale",
    )


def header(sweep: Sweep, index: int) -> None:
    tr = sweep.trace
    s = tr.strata[index]
    st.markdown(
        f"**{plain(tr.model_id)}** · {len(tr.tokens)} tokens traced · {tr.n_edges:,} edges · "
        f"{tr.settings.weighting} weights · ablation: {tr.settings.mode}"
    )
    nxt = "none (the end of the prompt)" if tr.next_token is None else trace_target.quoted(tr.next_token)
    st.markdown(
        f"Traced: the prediction after token {tr.position}, {trace_target.quoted(tr.tokens[-1])}; "
        f"the text's next token: {nxt}; target: {trace_target.quoted(tr.target)}"
        + (f", foil: {trace_target.quoted(tr.foil)}" if tr.foil is not None else "")
    )
    c = st.columns(5)
    c[0].metric("Size", labels.format_size(s.size), f"{s.n_edges:,} edges", delta_color="off", delta_arrow="off")
    c[1].metric(
        "Top-1 here",
        plain(repr(s.trace.top[0].token)),
        f"full: {plain(repr(tr.full.top[0].token))}",
        delta_color="off",
        delta_arrow="off",
    )
    c[2].metric(
        "Density",
        f"{tr.density:.2f}",
        help="integral of TV over log10 s: high means the prompt needs much of the graph",
    )
    rec = tr.recovery.get(1)
    c[3].metric("Top-1 kept from", labels.format_size(rec) if rec else "never")
    c[4].metric(
        "Time", f"{sweep.trace_s:.1f} s", f"model load {sweep.load_s:.1f} s", delta_color="off", delta_arrow="off"
    )


def downloads(sweep: Sweep) -> None:
    tr = sweep.trace
    c1, c2, _ = st.columns([1, 1, 3])
    c1.download_button("Trace JSON", to_json(tr), file_name="s-trace.json", mime="application/json")
    c2.download_button("Per-size CSV", to_csv(tr), file_name="s-trace.csv", mime="text/csv")
    with st.expander("Per-size table"):
        st.dataframe(pd.DataFrame(table_rows(tr)), hide_index=True, width="stretch")


def main() -> None:
    cfg = app_config()
    st.title("s-Trace Explorer")
    st.caption(
        "How much of a language model's computation does a prompt need? The s-trace keeps the smallest "
        "subgraphs, of growing size s, that reproduce the next-token distribution."
    )
    init_state()
    inputs = sidebar(cfg)
    tokens = prompt_tokens(inputs["model_id"], inputs["device"], inputs["dtype"], inputs["revision"], inputs["prompt"])
    position = trace_target.choose_position(tokens, (inputs["model_id"], inputs["prompt"]))
    remember_widgets(LAST, WIDGETS)
    target, foil = trace_target.target_and_foil()
    last = tokens is not None and position == len(tokens) - 1
    sweep = run_sweep(inputs | dict(position=None if last else position, target=target, foil=foil))
    if sweep is None:
        return
    tr = sweep.trace
    key = f"size-{abs(hash((tr.model_id, tr.prompt, tr.settings, tr.position)))}"
    index = size_slider(tr, key)
    for name in ("target", "foil"):
        if name in st.query_params:
            del st.query_params[name]
    st.query_params.update(
        {"model": inputs["model_id"], "prompt": inputs["prompt"], "size": labels.format_size(tr.strata[index].size)}
        | trace_target.url_params(tr)
    )
    st.session_state.url_size = tr.strata[index].size
    header(sweep, index)
    left, right = st.columns([1, 1], gap="large")
    with left:
        draw_node_graph(sweep, index)
    with right:
        draw_distribution(sweep, index)
        draw_composition(sweep, index)
    draw_curves(sweep, index)
    draw_token_graph(sweep, index)
    st.subheader("Export")
    downloads(sweep)
    debug_panel(sweep)


if __name__ == "__main__":
    main()
