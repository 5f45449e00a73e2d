"""s-Trace Explorer: the Prompt pairs page (``/Pairs``).

Two prompts traced alike (a clean one and a corrupted one, or two minimal variants; :mod:`explorer.pairs`):
when they have the same number of tokens up to their traced positions, ``A``'s subgraphs, size by size and
edge by edge, are applied to ``B`` and drawn against ``B``'s own trace; for any lengths, the heads and MLPs
in both traces, in one only, and their Jaccard overlap, per size and on the layer x head grid at a chosen
size. Each prompt's sweep comes from the app's shared store (:func:`ui.state.compute_sweep`, the Trace
page's too); the transfer is kept per pair in the session. The URL's query parameters (``model``, ``a``,
``b``, ``position``, ``position_b``, ``weights``, ``mode``, ``size``) reproduce a view.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from explorer.config import AppConfig
from explorer.errors import BadSetting, ExplorerError
from explorer.pairs import PromptPair, pair_traces
from explorer.sweep_cache import SweepRequest
from explorer.views import labels
from explorer.views import pairs as views
from ui.model_choice import OTHER, choose_model, model_options
from ui.panels import draw_panels
from ui.safe import plain
from ui.state import (
    app_config,
    cached_model,
    compute_sweep,
    device_options,
    dtype_options,
    model_label,
    remember_widgets,
    restore_widgets,
    section,
    sweep_request,
    with_progress,
)
from ui.trace_target import quoted

WEIGHTS = {"l1": "l1 (default)", "l2": "l2", "ifr": "ifr"}
PROMPT_A = "When Mary and John went to the store, John gave a drink to"
PROMPT_B = "When Mary and John went to the store, Mary gave a drink to"
LAST = "pairs_last_widgets"
WIDGETS = (
    "pairs_preset",
    "pairs_model_text",
    "pairs_device",
    "pairs_dtype",
    "pairs_revision",
    "pairs_weighting",
    "pairs_mode",
    "pairs_a",
    "pairs_b",
    "pairs_position_a",
    "pairs_position_b",
    "pairs_size",
)
REQUEST = "pairs_request"  # the pair shown: (request of A, request of B)
RESULTS = "pairs_results"  # this session's computed pairs, (request of A, request of B) -> PromptPair
KEEP = 4  # the most pairs a session keeps


def init_state() -> None:
    """On a session's first visit, the inputs from the URL (prompts ``a`` and ``b`` there are run at once);
    after a visit to another page, the inputs of this page's last run."""
    state, cfg = st.session_state, app_config()
    if "pairs_initialised" not in state:
        state.pairs_initialised = True
        qp = st.query_params
        choose_model(cfg, qp.get("model", cfg.default_model), "pairs_preset", "pairs_model_text")
        if qp.get("a") and qp.get("b"):  # the rest of the address is this page's only with both prompts
            state.pairs_a, state.pairs_b, state.pairs_go = qp["a"], qp["b"], True
            state.pairs_position_a, state.pairs_position_b = qp.get("position", ""), qp.get("position_b", "")
            if qp.get("weights") in WEIGHTS:
                state.pairs_weighting = qp["weights"]
            if qp.get("mode") in labels.MODE_LABELS:
                state.pairs_mode = qp["mode"]
            try:
                state.pairs_size_request = float(qp["size"]) if "size" in qp else None
            except ValueError:
                state.pairs_size_request = None
    else:
        restore_widgets(LAST)
    for key, value in (
        ("pairs_a", PROMPT_A),
        ("pairs_b", PROMPT_B),
        ("pairs_position_a", ""),
        ("pairs_position_b", ""),
        ("pairs_weighting", "l1"),
        ("pairs_mode", "all"),
        ("pairs_preset", cfg.default_model),
        ("pairs_device", cfg.device),
        ("pairs_dtype", cfg.dtype),
    ):
        state.setdefault(key, value)


def sidebar(cfg: AppConfig) -> dict:
    """The model (the configuration says which may be chosen), device, dtype, revision, and the method."""
    state, sb = st.session_state, st.sidebar
    sb.header("Model")
    options = model_options(cfg)
    if state.pairs_preset not in options:
        st.warning(
            f"This app offers only these models: {', '.join(cfg.models)}; showing {cfg.default_model} instead "
            f"of {plain(state.pairs_preset)}."
        )
        state.pairs_preset = cfg.default_model
    model = sb.selectbox("Model", options, key="pairs_preset", label_visibility="collapsed", format_func=model_label)
    if model == OTHER:
        hint = "org/name or /path" if cfg.allow_local_paths else "org/name"
        model = sb.text_input("Hub id or local folder", key="pairs_model_text", placeholder=hint).strip()
    c1, c2 = sb.columns(2)
    devices, dtypes = device_options(cfg), dtype_options(cfg)
    for key, offered in (("pairs_device", devices), ("pairs_dtype", dtypes)):
        if state.get(key) not in offered:
            state[key] = offered[0]
    device = c1.selectbox("Device", devices, key="pairs_device", disabled=len(devices) == 1)
    dtype = c2.selectbox("Dtype", dtypes, key="pairs_dtype", disabled=len(dtypes) == 1)
    revision = None
    if not cfg.demo:
        revision = sb.text_input("Revision (optional)", key="pairs_revision", placeholder="main").strip() or None
    sb.header("Method")
    weighting = sb.radio("Edge weight", list(WEIGHTS), format_func=WEIGHTS.get, key="pairs_weighting", horizontal=True)
    mode = sb.radio("Ablation mode", list(labels.MODE_LABELS), format_func=labels.MODE_LABELS.get, key="pairs_mode")
    return dict(model_id=model, device=device, dtype=dtype, revision=revision, weighting=weighting, mode=mode)


def parse_position(text: str, which: str) -> int | None:
    """A traced position typed in the form: empty is ``None`` (the last token, or for ``B`` as ``A``), else
    a whole number (0-based, negative from the end); :class:`BadSetting` otherwise."""
    text = text.strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise BadSetting(
            f"the position of prompt {which} must be a whole number (0-based, negative from the end), not {text[:40]!r}"
        ) from None


def prompt_form(method: dict) -> tuple[SweepRequest, SweepRequest] | None:
    """The two prompts and their positions; the requests of both traces when run (or asked for by the
    URL), ``None`` otherwise or when an input is refused (with its message)."""
    cap = app_config().max_prompt_tokens
    with st.form("pairs_form", border=True):
        left, right = st.columns(2)
        a = left.text_area("Prompt A (clean)", key="pairs_a", height=90, help="its subgraphs are applied to B")
        b = right.text_area("Prompt B (corrupted)", key="pairs_b", height=90, help="traced alike")
        pa = left.text_input(
            "Traced position in A (optional)",
            key="pairs_position_a",
            placeholder="the last token",
            help="0-based token index, negative from the end; empty: the last token",
        )
        pb = right.text_input(
            "Traced position in B (optional)",
            key="pairs_position_b",
            placeholder="as A's",
            help="0-based token index, negative from the end; empty: as A's",
        )
        st.caption(f"Prompts of at most {cap} tokens here.")
        run = st.form_submit_button("Run", type="primary")
    if not (run or st.session_state.pop("pairs_go", False)):
        return None
    if not method["model_id"]:
        st.info("Type a hub id or a local folder in the sidebar.")
        return None
    try:
        position_a = parse_position(pa, "A")
        position_b = parse_position(pb, "B")
        position_b = position_a if position_b is None else position_b
        common = {k: method[k] for k in ("model_id", "device", "dtype", "revision", "weighting", "mode")}
        common |= dict(controls=False, compare_modes=False)
        return (
            sweep_request(prompt=a, position=position_a, **common),
            sweep_request(prompt=b, position=position_b, **common),
        )
    except ExplorerError as exc:
        st.error(plain(str(exc)))
        return None


def compute_pair(requests: tuple[SweepRequest, SweepRequest], progress) -> PromptPair:
    """Both sweeps (from the app's store, computed there once) and the pair of them
    (:func:`explorer.pairs.pair_traces`), kept in the session for these requests."""
    kept = st.session_state.setdefault(RESULTS, {})
    if requests in kept:
        return kept[requests]
    traces = []
    for i, (which, request) in enumerate(zip("AB", requests)):
        step = lambda f, m, i=i, which=which: progress(0.45 * (i + f), f"prompt {which}: {m}")
        try:
            traces.append(compute_sweep(request, progress=step).trace)
        except ExplorerError as exc:
            raise ExplorerError(f"prompt {which}: {exc}") from exc
    req = requests[0]
    lm, _ = cached_model(req.model, req.device, req.dtype, req.revision, req.trust_remote_code)
    pair = pair_traces(lm, traces[0], traces[1], progress=lambda f, m: progress(0.9 + 0.1 * f, m))
    kept[requests] = pair
    while len(kept) > KEEP:  # the oldest first out
        kept.pop(next(iter(kept)))
    return pair


def summary(pair: PromptPair) -> None:
    """What was traced, and whether the transfer could be computed."""
    a, b = pair.a, pair.b
    st.markdown(
        f"**{plain(a.model_id)}** · {a.settings.weighting} weights · ablation: {a.settings.mode} · "
        f"A: {labels.count_label(len(a.tokens), 'token')}, traced after {quoted(a.tokens[-1])} "
        f"(density {a.density:.2f}) · B: {labels.count_label(len(b.tokens), 'token')}, traced after "
        f"{quoted(b.tokens[-1])} (density {b.density:.2f})"
    )
    if pair.transfer is None:
        st.info(
            f"The token counts differ: A has {len(a.tokens)} tokens up to its traced position and B has "
            f"{len(b.tokens)}. A's subgraphs apply to B only at the same token count, so there is no transfer "
            "here; the component diff below compares traces of any lengths."
        )


def size_slider(pair: PromptPair) -> float:
    """The size shown on the grid (and marked in the charts): a size both traces evaluated; first the URL's,
    else the one at which their components differ most (:func:`explorer.views.pairs.most_different`)."""
    state = st.session_state
    sizes = [d.size for d in pair.diff.sizes]
    asked = state.pop("pairs_size_request", None)
    shown = (pair.a.model_id, pair.a.prompt, pair.b.prompt, pair.a.settings, pair.a.position, pair.b.position)
    if asked is not None or state.get("pairs_size_of") != shown or state.get("pairs_size") not in sizes:
        start = asked if asked is not None else views.most_different(pair.diff)
        state.pairs_size = views.closest_diff(pair.diff, start).size
        state.pairs_size_of = shown  # another pair starts at its own size
    return st.select_slider(
        "Size s (the grid below; red dashes in the charts)", sizes, key="pairs_size", format_func=labels.format_size
    )


def draw_transfer(pair: PromptPair, size: float) -> None:
    moved = pair.transfer
    if moved is None:
        st.info("No transfer: the prompts' token counts differ (see above).")
        return
    draw_panels(views.transfer_panels(moved, size), most=2, key="pairs_transfer")
    st.caption(
        f"Density of A's subgraphs on B: {moved.density:.2f}; of B's own trace: {moved.own_density:.2f} "
        f"(mode {moved.mode})."
    )
    with st.expander("Per-size table of the transfer"):
        st.dataframe(moved.to_frame(), hide_index=True, width="stretch", key="pairs_transfer_table")


def draw_diff(pair: PromptPair, size: float) -> None:
    draw_panels(views.diff_panels(pair.diff, size), most=2, key="pairs_diff")
    d = views.closest_diff(pair.diff, size)
    st.markdown(f"**At s = {labels.format_size(d.size)}**: Jaccard overlap {d.jaccard:.2f}.")
    draw_panels(views.grid_panels(pair, size), most=2, key="pairs_grid")
    for name, names in (("only in A", d.only_a), ("only in B", d.only_b)):
        shown = ", ".join(names[:40]) + (f" and {len(names) - 40} more" if len(names) > 40 else "")
        st.caption(f"{labels.count_label(len(names), 'component')} {name}" + (f": {plain(shown)}" if names else ""))
    with st.expander("Per-size table of the diff"):
        st.dataframe(pair.diff.to_frame(), hide_index=True, width="stretch", key="pairs_diff_table")


def downloads(pair: PromptPair) -> None:
    c1, c2, c3, _ = st.columns([1, 1, 1, 2])
    if pair.transfer is not None:
        csv = pair.transfer.to_frame().to_csv(index=False)
        c1.download_button("Transfer CSV", csv, file_name="s-trace-pair-transfer.csv", mime="text/csv")
    c2.download_button(
        "Diff CSV", pair.diff.to_frame().to_csv(index=False), file_name="s-trace-pair-diff.csv", mime="text/csv"
    )
    text = json.dumps(pair.to_dict(), indent=1, ensure_ascii=False)
    c3.download_button("Pair JSON", text, file_name="s-trace-pair.json", mime="application/json")


def url_params(requests: tuple[SweepRequest, SweepRequest], size: float) -> dict[str, str]:
    a, b = requests
    params = {"model": a.model, "a": a.prompt, "b": b.prompt, "weights": a.settings.weighting}
    params |= {"mode": a.settings.mode, "size": labels.format_size(size)}
    if a.position is not None:
        params["position"] = str(a.position)
    if b.position != a.position and b.position is not None:
        params["position_b"] = str(b.position)
    return params


def main() -> None:
    cfg = app_config()
    st.title("Prompt pairs")
    st.caption(
        "Does one prompt's computation serve a minimally different one? A's subgraphs, size by size, applied "
        "to B against B's own trace; and the heads and MLPs the two traces share."
    )
    init_state()
    method = sidebar(cfg)
    requests = prompt_form(method)
    remember_widgets(LAST, WIDGETS)
    if requests is not None:
        st.session_state[REQUEST] = requests
    requests = st.session_state.get(REQUEST)
    if requests is None:
        st.info("Give two prompts and press **Run**: each is traced over every size, then A's subgraphs on B.")
        return
    start = time.perf_counter()
    pair = with_progress(
        lambda report: compute_pair(requests, report),
        lambda frac, message: f"{message} ({time.perf_counter() - start:.1f} s)",
    )
    if pair is None:
        st.session_state.pop(REQUEST, None)  # shown once; the form is there to try again
        return
    summary(pair)
    size = size_slider(pair)
    section(
        "A's subgraphs on B",
        "Orange: B's own trace, size by size; blue: A's subgraph of the same size applied edge by edge to B, "
        "against B's full model. Close curves: A's computation serves B.",
        draw_transfer,
        pair,
        size,
    )
    section(
        "Components in both and in one",
        "Heads and MLPs with edges in each trace, per size: in both (purple), in A's only (blue), in B's "
        "only (orange); below, both traces on the layer x head grid at the chosen size (faint: not there).",
        draw_diff,
        pair,
        size,
    )
    st.query_params.clear()
    st.query_params.update(url_params(requests, size))
    st.subheader("Export")
    downloads(pair)


if __name__ == "__main__":
    main()
