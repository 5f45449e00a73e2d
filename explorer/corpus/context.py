"""The token cap of a corpus run: the smaller of ``--max-tokens`` and the model's context length (the
positions it was built for, from its config), so that a prompt too long for the model is recorded as
failed with the limit that applied, instead of crashing in the position embeddings (or, for rotary
models, silently giving numbers the model was never trained for)."""

from __future__ import annotations

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def context_length(config) -> int | None:
    """The context length a transformers ``config`` declares (``max_position_embeddings``, ``n_positions``,
    ...; a multimodal config's ``text_config``), or ``None`` if it declares none."""
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is None:
            continue
        for key in CONTEXT_KEYS:
            value = getattr(cfg, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None


def token_cap(max_tokens: int, context: int | None) -> tuple[int, str]:
    """The effective token cap and which limit it is (``"--max-tokens; the model's context is 8192"``)."""
    if context is not None and context < max_tokens:
        return context, f"the model's context; --max-tokens is {max_tokens}"
    known = f"the model's context is {context}" if context is not None else "the model declares no context length"
    return max_tokens, f"--max-tokens; {known}"


def length_problem(n_tokens: int, max_tokens: int, context: int | None) -> str | None:
    """Why a prompt of ``n_tokens`` tokens cannot be traced under the cap, or ``None``."""
    cap, which = token_cap(max_tokens, context)
    if n_tokens > cap:
        return f"the prompt has {n_tokens} tokens; the limit is {cap} ({which})"
    return None
