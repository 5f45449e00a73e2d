"""s-Trace Explorer: the Text strip page (``/Strip``).

Paste a text, or give a prompt and let the model continue it, and every position is traced (the whole size
sweep of the prediction after each token, :func:`explorer.text.trace_text`). The tokens are drawn as a strip
coloured by density, or by the full model's entropy, the next token's probability, TV at a chosen size, or
the size at which the full model's top-1 comes back; the same quantity along the text below. Clicking a
token opens the Trace page on the prediction after it. The computation is kept like the Trace page's sweeps
(:func:`ui.state.compute_strip`). The URL's query parameters (``model``; ``text``, or ``continue`` (the
prompt) with ``tokens``, ``decoding``, ``temperature``, ``top_p``, ``seed``; ``colour``, ``tv_size``)
reproduce a view.
"""

from __future__ import annotations

import time

import streamlit as st

from explorer.options import DEFAULT_SIZES
from explorer.results import TextTrace
from explorer.sweep_cache import Generation, Strip, StripRequest
from explorer.views import labels, strip
from ui.model_choice import OTHER, choose_model, model_options
from ui.nav import open_in_trace_page
from ui.safe import plain
from ui.state import (
    app_config,
    cached_model,
    compute_strip,
    max_prompt_chars,
    model_label,
    remember_widgets,
    restore_widgets,
    settings_for,
    with_progress,
)

SOURCES = {"text": "Paste a text", "generate": "Generate a continuation"}
DECODING = {"sampled": "sampled", "greedy": "greedy"}
WEIGHTS = {"l1": "l1 (default)", "l2": "l2", "ifr": "ifr"}
EXAMPLE_TEXT = "The capital of France is Paris. The capital of Italy is Rome."
EXAMPLE_PROMPT = "Once upon a time"
DEFAULT_SIZE = 1e-2
LAST = "strip_last_widgets"
WIDGETS = (
    "strip_preset",
    "strip_model_text",
    "strip_weighting",
    "strip_mode",
    "strip_source",
    "strip_text",
    "strip_prompt",
    "strip_n",
    "strip_decoding",
    "strip_temperature",
    "strip_top_p",
    "strip_seed",
    "strip_colour",
    "strip_size",
)
GEN = Generation()  # the authors' setting: 20 tokens, top-p 0.6


def max_new_tokens() -> int:
    return max(1, min(200, app_config().max_prompt_tokens - 1))


def _float(query, name: str, default: float) -> float:
    try:
        return float(query.get(name, default))
    except ValueError:
        return default


def init_state() -> None:
    """On a session's first run, the page's inputs from the URL (a text or a prompt there is traced at once);
    after a visit to another page, the inputs of this page's last run."""
    state, cfg = st.session_state, app_config()
    if "strip_initialised" not in state:
        state.strip_initialised = True
        qp = st.query_params
        choose_model(cfg, qp.get("model", cfg.default_model), "strip_preset", "strip_model_text")
        if qp.get("text"):
            state.strip_source, state.strip_text, state.strip_go = "text", qp["text"], True
        elif qp.get("continue"):
            state.strip_source, state.strip_prompt, state.strip_go = "generate", qp["continue"], True
            try:
                state.strip_n = min(max(int(qp.get("tokens", GEN.n_tokens)), 1), max_new_tokens())
            except ValueError:
                state.strip_n = GEN.n_tokens
            state.strip_decoding = "greedy" if qp.get("decoding") == "greedy" else "sampled"
            state.strip_temperature = min(max(_float(qp, "temperature", GEN.temperature), 0.05), 5.0)
            state.strip_top_p = min(max(_float(qp, "top_p", GEN.top_p), 0.01), 1.0)
            state.strip_seed = min(max(int(_float(qp, "seed", GEN.seed)), 0), 2**31 - 1)
        if qp.get("colour") in strip.QUANTITIES:
            state.strip_colour = qp["colour"]
        if "tv_size" in qp:
            size = _float(qp, "tv_size", DEFAULT_SIZE)
            state.strip_size = min(DEFAULT_SIZES, key=lambda s: abs(s - size))
    else:
        restore_widgets(LAST)
    for key, value in (
        ("strip_source", "text"),
        ("strip_text", EXAMPLE_TEXT),
        ("strip_prompt", EXAMPLE_PROMPT),
        ("strip_n", min(GEN.n_tokens, max_new_tokens())),
        ("strip_decoding", "sampled"),
        ("strip_temperature", GEN.temperature),
        ("strip_top_p", GEN.top_p),
        ("strip_seed", GEN.seed),
        ("strip_colour", "density"),
        ("strip_size", DEFAULT_SIZE),
        ("strip_weighting", "l1"),
        ("strip_mode", "all"),
        ("strip_preset", cfg.default_model),
    ):
        state.setdefault(key, value)
    if state.strip_preset not in cfg.models and state.strip_preset != OTHER:
        st.warning(f"This app offers only these models: {', '.join(cfg.models)}; showing {cfg.default_model}.")
        state.strip_preset = cfg.default_model


def sidebar() -> dict:
    """The model and method of the strip (the device and dtype are the configuration's)."""
    cfg, sb = app_config(), st.sidebar
    sb.header("Model")
    options = model_options(cfg)
    model = sb.selectbox("Model", options, key="strip_preset", label_visibility="collapsed", format_func=model_label)
    if model == OTHER:
        model = sb.text_input("Hub id or local folder", key="strip_model_text").strip()
    sb.header("Method")
    weighting = sb.radio("Edge weight", list(WEIGHTS), format_func=WEIGHTS.get, key="strip_weighting", horizontal=True)
    mode = sb.radio("Ablation mode", list(labels.MODE_LABELS), format_func=labels.MODE_LABELS.get, key="strip_mode")
    return dict(model=model, weighting=weighting, mode=mode)


def text_form(method: dict) -> StripRequest | None:
    """The text (or prompt and continuation) to trace; the request when submitted, or asked for by the URL."""
    cfg, state = app_config(), st.session_state
    source = st.radio(
        "Text",
        list(SOURCES),
        format_func=SOURCES.get,
        key="strip_source",
        horizontal=True,
        label_visibility="collapsed",
    )
    with st.form("strip_form", border=True):
        generation = None
        if source == "text":
            text = st.text_area(
                "Text",
                key="strip_text",
                height=110,
                help=f"Every token is traced (at most {cfg.max_prompt_tokens} tokens, "
                f"{max_prompt_chars(cfg):,} characters).",
            )
        else:
            text = st.text_area("Prompt", key="strip_prompt", height=80)
            c = st.columns([1, 1, 1, 1, 1])
            n = c[0].number_input("Tokens to generate", 1, max_new_tokens(), key="strip_n")
            decoding = c[1].radio("Decoding", list(DECODING), key="strip_decoding", horizontal=True)
            temperature = c[2].number_input(
                "Temperature", 0.05, 5.0, step=0.1, key="strip_temperature", help="ignored when greedy"
            )
            top_p = c[3].number_input("Top-p", 0.01, 1.0, step=0.05, key="strip_top_p", help="ignored when greedy")
            seed = c[4].number_input("Seed", 0, 2**31 - 1, key="strip_seed", help="ignored when greedy")
            generation = Generation(int(n), decoding == "greedy", float(temperature), float(top_p), int(seed))
        submitted = st.form_submit_button("Trace every token", type="primary")
    if not (submitted or state.pop("strip_go", False)):
        return None
    if not method["model"]:
        st.info("Type a hub id or a local folder in the sidebar.")
        return None
    return StripRequest(
        model=method["model"],
        device=cfg.device,
        dtype=cfg.dtype,
        revision=None,
        text=text,
        settings=settings_for(method["weighting"], method["mode"]),
        generation=generation,
        trust_remote_code=cfg.trust_remote_code,
    )


def url_params(request: StripRequest, colour: str, size: float) -> dict[str, str]:
    params = {"model": request.model}
    gen = request.generation
    if gen is None:
        params["text"] = request.text
    else:
        params |= {
            "continue": request.text,
            "tokens": str(gen.n_tokens),
            "decoding": "greedy" if gen.greedy else "sampled",
            "temperature": f"{gen.temperature:g}",
            "top_p": f"{gen.top_p:g}",
            "seed": str(gen.seed),
        }
    return params | {"colour": colour} | ({"tv_size": labels.format_size(size)} if colour == "tv" else {})


def trace_page_view(request: StripRequest, text: TextTrace, t: int) -> tuple[str, int | None, str | None]:
    """The prompt, position and target that show position ``t`` on the Trace page. A pasted text is traced
    as itself; a generated one by its decoded text when that tokenises back to the same tokens, else by
    the text cut after token ``t`` with the generated next token as the target."""
    if request.generation is None:
        return text.text, t, None
    lm, _ = cached_model(request.model, request.device, request.dtype, request.revision, request.trust_remote_code)
    special = set(getattr(lm.tokenizer, "all_special_ids", None) or [])
    decode = lambda ids: str(lm.tokenizer.decode([i for i in ids if i not in special]))
    whole = decode(text.token_ids)
    if list(lm.tokenizer(whole)["input_ids"]) == text.token_ids:
        return whole, t, None
    return decode(text.token_ids[: t + 1]), None, text.tokens[t + 1] if t + 1 < len(text.tokens) else None


def draw_strip(result: Strip, request: StripRequest) -> None:
    state = st.session_state
    text = result.text
    st.markdown(
        f"**{plain(text.model_id)}** · {len(text.tokens)} tokens · {len(text.positions)} positions traced · "
        f"{text.settings.weighting} weights · ablation: {text.settings.mode} · {result.trace_s:.1f} s"
    )
    c1, c2 = st.columns([3, 2])
    colour = c1.radio(
        "Colour by", list(strip.QUANTITIES), format_func=strip.QUANTITIES.get, key="strip_colour", horizontal=True
    )
    size = None
    if colour == "tv":
        sizes = list(text.settings.sizes)
        if state.get("strip_size") not in sizes:
            state.strip_size = min(sizes, key=lambda s: abs(s - DEFAULT_SIZE))
        size = c2.select_slider("Size s of the subgraph", sizes, key="strip_size", format_func=labels.format_size)
    axis = text.settings.density_axis
    df = strip.frame(text, colour, size, tv=result.tv)
    event = st.altair_chart(
        strip.chart(df, colour, size, axis),
        on_select="rerun",
        selection_mode=strip.SELECTION,
        key="strip_chart",
        width="content",
    )
    st.caption(
        "Each token is coloured by the prediction made after it (of the next token); grey: not traced (the "
        "first token has nothing before it). Underlined: generated. Hover for the numbers; click a token to "
        "open the trace of the prediction after it on the Trace page."
    )
    picked = (event.selection or {}).get(strip.SELECTION) if event else None
    traced = {p.position for p in text.positions}
    if picked and picked[0].get("position") is not None and int(picked[0]["position"]) in traced:
        t = int(picked[0]["position"])
        prompt, position, target = trace_page_view(request, text, t)
        open_in_trace_page(request.model, prompt, text.settings.mode, text.settings.weighting, position, target)
    st.query_params.clear()
    st.query_params.update(url_params(request, colour, size or DEFAULT_SIZE))
    st.subheader("Along the text")
    st.altair_chart(strip.line(df, colour, size, axis, text.generated_from), width="content")
    with st.expander("Per-position table"):
        st.dataframe(text.to_frame(), hide_index=True, width="stretch")
    d1, d2, _ = st.columns([1, 1, 3])
    d1.download_button(
        "Per-position CSV", text.to_frame().to_csv(index=False), file_name="s-trace-strip.csv", mime="text/csv"
    )
    d2.download_button("Strip JSON", text.to_json(), file_name="s-trace-strip.json", mime="application/json")


def main() -> None:
    st.title("Text strip")
    st.caption(
        "Every token of a text, traced: how much of the model's computation the prediction after each token "
        "needs (density), and how it relates to the model's uncertainty. Click a token to see its trace."
    )
    init_state()
    method = sidebar()
    request = text_form(method)
    remember_widgets(LAST, WIDGETS)
    if request is not None:
        st.session_state.strip_request = request
    request = st.session_state.get("strip_request")
    if request is None:
        st.info(
            "Paste a text (or give a prompt to continue) and press **Trace every token**: each position is a "
            "whole size sweep, so a long text takes a while on a CPU."
        )
        return
    start = time.perf_counter()
    result = with_progress(
        lambda report: compute_strip(request, report),
        lambda frac, message: f"{message} ({time.perf_counter() - start:.1f} s)",
    )
    if result is None:
        st.session_state.pop("strip_request", None)  # shown once; the form is there to try again
        return
    draw_strip(result, request)


if __name__ == "__main__":
    main()
