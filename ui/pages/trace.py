"""s-Trace Explorer: the "Trace a prompt" page (the app's default page, ``/``).

Pick a model and a prompt in the sidebar, and the prompt's token after which the prediction is traced
(default: the last); the whole size sweep is computed once and cached, and the slider above the views
moves over the evaluated sizes, re-drawing the linked views (:mod:`ui.trace_views`; a slider move re-runs
only those at the top of the page, and those below, :mod:`ui.trace_lower`, when they are in view). A target
token (and a foil) is followed across sizes beside TV (:mod:`ui.trace_target`). The URL's query parameters
(``model``, ``prompt``, ``size``, ``position``, ``target``, ``foil``, ``component``) reproduce a view.
"""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from explorer import DEFAULT_MODEL
from explorer.config import AppConfig
from explorer.examples import BY_KEY as EXAMPLE_BY_KEY
from explorer.examples import EXAMPLES
from explorer.results import Trace, table_rows
from explorer.sweep_cache import Sweep
from explorer.views import labels, sweep_views
from ui import component_panel, trace_files, trace_lower, trace_target, trace_views, view_sync
from ui.debug import debug_panel
from ui.model_choice import OTHER, choose_model, model_options
from ui.nav import take_open_request
from ui.safe import code, plain
from ui.state import (
    app_config,
    cached_model,
    device_options,
    dtype_options,
    model_label,
    prompt_token_ids,
    prompt_tokens,
    remember_widgets,
    restore_widgets,
    settings_for,
    sweep_with_progress,
    time_metric,
    view,
)

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
    choose_model(app_config(), model, "preset", "model_text")


FLAGS = {"true": True, "false": False}


def url_settings(qp) -> None:
    """The method's settings from the URL (``weights``, ``mode``, ``controls``, ``compare``, ``revision``):
    values this page does not offer are ignored, so a link shows the defaults rather than an error."""
    state = st.session_state
    if qp.get("weights") in WEIGHTS:
        state.weighting = qp["weights"]
    if qp.get("mode") in MODES:
        state.mode = qp["mode"]
    for key in ("controls", "compare"):
        if qp.get(key) in FLAGS:
            state[key] = FLAGS[qp[key]]
    if qp.get("revision") and not app_config().demo:
        state.revision = qp["revision"]


def url_of_settings(tr: Trace) -> dict[str, str]:
    """What :func:`url_settings` reads, for the view on show."""
    state = st.session_state
    out = {
        "weights": tr.settings.weighting,
        "mode": tr.settings.mode,
        "controls": "true" if state.get("controls") else "false",
        "compare": "true" if state.get("compare") else "false",
    }
    return out | ({"revision": tr.revision} if tr.revision else {})


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
            state[trace_views.SIZE_REQUEST] = float(qp["size"]) if "size" in qp else None
        except ValueError:
            state[trace_views.SIZE_REQUEST] = None
        if qp.get("component"):
            trace_views.choose(qp["component"])
        url_settings(qp)
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
        state.pop(trace_views.SIZE_REQUEST, None)
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
    state[trace_views.SIZE_REQUEST] = ex.size
    if ex.component:
        trace_views.choose(ex.component)


def sidebar(cfg: AppConfig) -> tuple[dict, DeltaGenerator]:
    """The inputs that define a sweep, and the place under the prompt for its token count; the
    configuration says which models may be chosen."""
    sb = st.sidebar
    sb.header("Model")
    options = model_options(cfg)
    if st.session_state.get("preset") not in options:
        refused = st.session_state.get("preset")
        st.session_state.preset = cfg.default_model
        if refused:
            st.warning(
                f"This app offers only these models: {', '.join(cfg.models)}; showing {cfg.default_model} "
                f"instead of {plain(refused)}."
            )
    preset = sb.selectbox("Model", options, key="preset", label_visibility="collapsed", format_func=model_label)
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
    counter = sb.empty()  # the prompt's token count, once it is tokenised
    if example and prompt == EXAMPLE_BY_KEY[example].prompt:
        sb.caption(f"**What to look for** ({DEFAULT_MODEL}): {EXAMPLE_BY_KEY[example].look_for}")

    sb.header("Method")
    weighting = sb.radio("Edge weight", list(WEIGHTS), format_func=WEIGHTS.get, key="weighting", horizontal=True)
    mode = sb.radio("Ablation mode", list(MODES), format_func=MODES.get, key="mode")
    compare = sb.toggle("Compare modes (also evaluate the other mode)", key="compare")
    controls = sb.toggle("Random and inverse controls", key="controls")
    inputs = dict(
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
    return inputs, counter


def token_counter(place, inputs: dict) -> None:
    """Under the prompt: its number of tokens, against the cap here."""
    cap = app_config().max_prompt_tokens
    found = prompt_token_ids(
        inputs["model_id"], inputs["device"], inputs["dtype"], inputs["revision"], inputs["prompt"]
    )
    if found is None:
        place.caption(f"At most {cap} tokens here.")
    elif len(found[1]) > cap:
        place.caption(f":red[**{len(found[1])} tokens**]: over the cap of {cap} here; shorten the prompt.")
    else:
        place.caption(
            f"{labels.count_label(len(found[1]), 'token')} of at most {cap} here. {cost_line(found[0], inputs)}"
        )


def cost_line(lm, inputs: dict) -> str:
    """The cost preview of tracing the whole prompt with the sidebar's settings (explorer/cost.py)."""
    from explorer.cost import fits, fitting_settings
    from explorer.models.limits import available_bytes

    n = len(lm.tokenizer(inputs["prompt"])["input_ids"])
    settings = settings_for(inputs["weighting"], inputs["mode"], inputs["controls"], inputs["compare_modes"])
    free = available_bytes(lm.device)
    fitted, est = fitting_settings(lm.model.config, n, settings, free, lm.device, lm.dtype)
    line = f"Estimate: {est.n_edges:,} edges, peak {est.peak_bytes / 2**30:.1f} GiB, about {est.seconds:.1f} s."
    if not fits(est, free):
        return line + f" :red[**Would not fit**] in the {free / 2**30:.1f} GiB free: the trace will be refused."
    if fitted.batch_size != settings.batch_size:
        return line + f" Masked passes in batches of {fitted.batch_size} to fit."
    return line


def run_sweep(inputs: dict) -> Sweep | None:
    """Compute (or fetch) the sweep with a progress bar; show any failure as an error and return None."""
    if not inputs["model_id"]:
        st.info("Type a hub id or a local folder in the sidebar.")
        return None
    start = time.perf_counter()
    sweep = sweep_with_progress(lambda frac, message: f"{message} ({time.perf_counter() - start:.1f} s)", **inputs)
    if sweep is not None:
        with st.spinner("preparing the views (once per trace)"):
            sweep_views.warm(sweep.trace)
    return sweep


def short(text: str, most: int = 28) -> str:
    """``text`` cut to ``most`` characters with an ellipsis (a metric's value; the whole in its help)."""
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def summary(tr: Trace) -> None:
    """What is traced: the model, the graph, the settings, the position, the target and foil."""
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


def header(sweep: Sweep, index: int) -> None:
    """The numbers of this size: size, top-1 token, density, where the top-1 is first kept, time."""
    tr = sweep.trace
    s = tr.strata[index]
    here, full = repr(s.trace.top[0].token), repr(tr.full.top[0].token)
    rec = tr.recovery.get(1)
    with st.container(horizontal=True, gap="medium"):  # metrics at their own width, wrapping on a narrow page
        st.metric(
            "Size",
            labels.format_size(s.size),
            labels.count_label(s.n_edges),
            delta_color="off",
            delta_arrow="off",
            width="content",
        )
        st.metric(
            "Top-1 here",
            plain(short(here)),
            f"full: {plain(short(full))}",
            help=f"the subgraph's top token {plain(here)}; the full model's {plain(full)}",
            delta_color="off",
            delta_arrow="off",
            width="content",
        )
        st.metric(
            "Density",
            f"{tr.density:.2f}",
            help="integral of TV over log10 s: high means the prompt needs much of the graph",
            width="content",
        )
        st.metric(
            "Top-1 first kept at",
            f"s = {labels.format_size(rec)}" if rec else "never",
            help="the smallest size whose subgraph has the full model's top-1 token (larger sizes may lose it "
            "again: see the shared nucleus curve)",
            width="content",
        )
        st.metric(**time_metric(sweep), width="content")


@view(
    "Component",
    "The component chosen in the graph or the inspector at this size: its share of the trace's weight, the size "
    "it entered at, a head's attention pattern with the trace's edges outlined, and the tokens its output pushes.",
)
def draw_component(sweep: Sweep, index: int, chosen: str | None, model) -> None:
    if chosen is None:
        st.caption("Click a head or an MLP in the graph to inspect it.")
        return
    component_panel.component_panel(sweep.trace, index, chosen, model)


@view(
    "What if",
    "Remove (or add) heads, MLPs or whole layers from this size's subgraph or from the full model, and see the "
    "next-token distribution after one masked pass beside the unchanged subgraph's.",
)
def draw_whatif(sweep: Sweep, index: int, chosen: str | None, model) -> None:
    component_panel.whatif_panel(sweep.trace, index, model, chosen)


def downloads(sweep: Sweep) -> None:
    tr = sweep.trace
    with st.expander("Per-size table"):
        st.dataframe(pd.DataFrame(table_rows(tr)), hide_index=True, width="stretch")


@st.fragment
def views(sweep: Sweep, model_id: str, prompt: str, probes: tuple[str | None, str | None], model=None) -> None:
    """The size slider and the views at the top of the page (the node graph and its inspector, the output
    distribution, the composition), with the component panel. A move of the slider, a click in the node
    graph or a choice in the views re-runs only this part of the page (the views below,
    :mod:`ui.trace_lower`, follow when in view); a new target or foil (``probes`` were the sweep's) re-runs
    the whole page, which traces again."""
    if trace_target.target_and_foil() != probes:
        st.rerun()
    tr = sweep.trace
    index = trace_views.size_slider(tr)
    header(sweep, index)
    left, right = st.columns([1, 1], gap="large")
    with left:
        trace_views.draw_node_graph(sweep, index)
    with right:
        trace_views.draw_distribution(sweep, index)
        trace_views.draw_composition(sweep, index)
        view_sync.publish(trace_views.view_key(tr, index))  # no room taken: the column is the shorter
    chosen = trace_views.chosen_component()
    if st.session_state.get(trace_views.PANEL):
        draw_component(sweep, index, chosen, model)
        draw_whatif(sweep, index, chosen, model)
    elif chosen is not None:
        st.button(
            f"Inspect {chosen}: its attention pattern, the tokens it pushes, and what-if",
            key="open_panel",
            on_click=lambda: st.session_state.update({trace_views.PANEL: True}),
            help="or click a component in the graph",
        )
    for name in ("target", "foil", "component", "revision"):
        if name in st.query_params:
            del st.query_params[name]
    chosen = trace_views.chosen_component()
    st.query_params.update(
        {"model": model_id, "prompt": prompt, "size": labels.format_size(tr.strata[index].size)}
        | trace_target.url_params(tr)
        | url_of_settings(tr)
        | ({"component": chosen} if chosen else {})
    )


def show_opened(name: str, tr: Trace) -> None:
    """A trace opened from a file: every view, without the model (the panel and what-if say so)."""
    st.info(f"Showing the saved trace {code(name)}; close it in the sidebar to trace a prompt.")
    sweep = Sweep(tr, 0.0, 0.0, cached=True)
    sweep_views.warm(tr)
    summary(tr)
    views(sweep, tr.model_id, tr.prompt, trace_target.target_and_foil(), None)
    trace_lower.lower_views(sweep, trace_target.target_and_foil())
    downloads(sweep)


def main() -> None:
    cfg = app_config()
    st.title("s-Trace Explorer")
    st.caption(
        "How much of a language model's computation does a prompt need? The s-trace keeps the smallest "
        "subgraphs, of growing size s, that reproduce the next-token distribution."
    )
    init_state()
    with st.sidebar:
        trace_files.open_form(cfg)
    opened = trace_files.opened_trace()
    if opened is not None:
        show_opened(*opened)
        return
    inputs, counter = sidebar(cfg)
    token_counter(counter, inputs)
    tokens = prompt_tokens(inputs["model_id"], inputs["device"], inputs["dtype"], inputs["revision"], inputs["prompt"])
    position = trace_target.choose_position(tokens, (inputs["model_id"], inputs["prompt"]))
    remember_widgets(LAST, WIDGETS)
    target, foil = trace_target.target_and_foil()
    last = tokens is not None and position == len(tokens) - 1
    sweep = run_sweep(inputs | dict(position=None if last else position, target=target, foil=foil))
    if sweep is None:
        return

    def model():
        return cached_model(inputs["model_id"], inputs["device"], inputs["dtype"], inputs["revision"])[0]

    summary(sweep.trace)
    views(sweep, inputs["model_id"], inputs["prompt"], (target, foil), model)
    trace_lower.lower_views(sweep, (target, foil))
    downloads(sweep)
    debug_panel(sweep)


if __name__ == "__main__":
    main()
