"""What the Trace page traces, beside the prompt: the traced position (the prompt's tokens as pills; the
prediction after the chosen token), the target token followed across sizes (default: the text's next
token, else the full model's top-1; typed, or picked from the full model's top tokens) and an optional
foil, with their numbers at the slider's size; the page draws them across sizes beside TV
(:func:`explorer.views.target.beside_curves`).

Session keys: ``position`` (the pills), ``url_position`` (a position asked for by the URL or another page,
resolved once the prompt's tokens are known), ``target`` and ``foil`` (text inputs; empty: the default).
"""

from __future__ import annotations

import streamlit as st

from explorer.results import Trace
from explorer.sweep_cache import Sweep
from explorer.views.strip import chip_text
from ui.safe import ZERO_WIDTH, escape_md


def token_labels(tokens: list[str]) -> list[str]:
    """A pill label per token: its visible text (:func:`explorer.views.strip.chip_text`), escaped, and made
    unique by zero-width spaces (a pill's value is sent back by its label, and a text repeats tokens)."""
    seen: dict[str, int] = {}
    out = []
    for token in tokens:
        label = escape_md(chip_text(token))
        n = seen.get(label, 0)
        seen[label] = n + 1
        out.append(label + ZERO_WIDTH * n)
    return out


def quoted(token: str | None) -> str:
    """A token in a caption: its ``repr``, escaped."""
    return "none" if token is None else escape_md(repr(token))


def choose_position(tokens: list[str] | None, prompt_key) -> int | None:
    """The pills over the prompt's tokens (from the second: the first has nothing before it to trace); the
    chosen position, or ``None`` (the last) when the tokens are unknown. The position goes back to the last
    when the prompt or model changes (``prompt_key``), unless the URL or another page asked for one."""
    state = st.session_state
    if not tokens or len(tokens) < 2:
        return None
    n = len(tokens)
    want = state.pop("url_position", None)
    if want is not None:
        t = want + n if want < 0 else want
        if not 1 <= t < n:
            st.warning(f"Position {want} is outside the prompt's tokens (1 to {n - 1}); tracing the last one.")
            t = n - 1
        state.position = t
    elif state.get("position_of") != prompt_key or state.get("position") not in range(1, n):
        state.position = n - 1
    state.position_of = prompt_key
    labels = token_labels(tokens)
    st.pills(
        "Trace the prediction after the token",
        list(range(1, n)),
        format_func=lambda t: labels[t],
        key="position",
        required=True,
        help=f"Click a token: the trace explains the model's prediction after it (of the token that follows). "
        f"The first token, {quoted(tokens[0])}, has nothing before it to trace. Default: the last token.",
    )
    return int(state.position)


def init_target_state(query) -> None:
    """On a session's first run: the position, target and foil the URL asks for."""
    state = st.session_state
    state.target = query.get("target", "")
    state.foil = query.get("foil", "")
    try:
        state.url_position = int(query["position"]) if "position" in query else None
    except ValueError:
        state.url_position = None


def take_request(request: dict) -> None:
    """Another page's request (:func:`ui.nav.open_in_trace_page`): its position, target and foil (else the
    defaults)."""
    state = st.session_state
    position = request.get("position")
    state.url_position = -1 if position is None else position
    state.target = request.get("target") or ""
    state.foil = request.get("foil") or ""


def target_and_foil() -> tuple[str | None, str | None]:
    """The target and foil the sweep follows (``None``: the default target, no foil), as the section's
    inputs last set them."""
    state = st.session_state
    return state.get("target") or None, state.get("foil") or None


def _pick(which: str) -> None:
    state = st.session_state
    picked = state.get(f"{which}_pick")
    if picked is not None:
        state[which] = picked
    state[f"{which}_pick"] = None


def url_params(trace: Trace) -> dict[str, str]:
    """The query parameters of what is traced: ``position``, and ``target`` and ``foil`` when chosen."""
    target, foil = target_and_foil()
    return {"position": str(trace.position)} | ({"target": target} if target else {}) | ({"foil": foil} if foil else {})


def default_target(trace: Trace) -> str:
    return (
        "the text's next token"
        if trace.next_token is not None and trace.next_token == trace.target
        else "the full model's top-1"
    )


CAPTION = (
    "Below: the probability each subgraph gives the target token (solid) and the foil (dashed), and "
    "their logit difference; dotted: the full model's. The greedy order does not depend on the target or "
    "the foil (the method is target-free): only this measurement does."
)


def draw_target(sweep: Sweep, index: int) -> None:
    """The target and foil inputs (typed, or picked from the full model's top tokens), what they are, and
    their numbers at this size against the full model's."""
    tr = sweep.trace
    top = [tp.token for tp in tr.full.top]
    c = st.columns(4)
    c[0].text_input(
        "Target token",
        key="target",
        placeholder=f"default: {repr(tr.target)}",
        help="The token whose probability is followed; its first token counts (a leading space "
        "matters: ' Paris'). Empty: the text's next token, else the full model's top-1.",
    )
    c[1].text_input(
        "Foil token (optional)",
        key="foil",
        placeholder="none",
        help="A second token, compared with the target by their logit difference.",
    )
    c[2].selectbox(
        "Pick the target from the top tokens",
        top,
        index=None,
        key="target_pick",
        format_func=repr,
        on_change=_pick,
        args=("target",),
        placeholder="the full model's top tokens",
    )
    c[3].selectbox(
        "Pick the foil from the top tokens",
        top,
        index=None,
        key="foil_pick",
        format_func=repr,
        on_change=_pick,
        args=("foil",),
        placeholder="the full model's top tokens",
    )
    chosen = bool(st.session_state.get("target"))
    st.caption(
        f"Target: {quoted(tr.target)}" + ("" if chosen else f" ({default_target(tr)})") + f" · foil: {quoted(tr.foil)}"
    )
    out = tr.strata[index].trace
    metrics = [
        ("P(target) here", out.target_prob, tr.full.target_prob, ".3f", None),
        ("P(foil) here", out.foil_prob, tr.full.foil_prob, ".3f", None),
        (
            "Logit difference here",
            out.target_logit_diff,
            tr.full.target_logit_diff,
            "+.2f",
            "log P(target) - log P(foil) under the subgraph",
        ),
    ]
    for column, (label, here, full, spec, help_text) in zip(st.columns(3), metrics):
        if here is not None and full is not None:
            column.metric(
                label,
                format(here, spec),
                f"full: {format(full, spec)}",
                delta_color="off",
                delta_arrow="off",
                help=help_text,
            )
