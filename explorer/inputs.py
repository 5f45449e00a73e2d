"""The inputs of a trace, checked before any work: the prompt's text, its tokens under the caps (the
configured limit and the model's context), the traced position, the probe tokens (gold, target, foil), and
the model's lock, held for device work only."""

from __future__ import annotations

import numbers
import traceback
from contextlib import contextmanager

import numpy as np
import torch

from explorer.errors import BadPrompt, BadSetting, OutOfMemory
from explorer.models.limits import effective_max_tokens
from explorer.models.loading import LoadedModel
from explorer.token_text import token_text as text_of_token


def _text_problem(text: object, what: str) -> str | None:
    """Why ``text`` is not text a tokenizer can take (not a ``str``, or holding a lone surrogate, which has
    no UTF-8 form: a byte that is not UTF-8 in a command-line argument becomes one), else ``None``."""
    if not isinstance(text, str):
        return f"the {what} must be text (a str), got {type(text).__name__}"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"the {what} is not valid text: character {exc.start} is a lone surrogate "
            f"(U+{ord(text[exc.start]):04X}), which has no UTF-8 form; a byte that is not UTF-8 in a "
            "command-line argument becomes one"
        )
    return None


def check_prompt_text(prompt: object) -> None:
    """Reject, before anything is loaded, a prompt that is not text (:func:`_text_problem`) or is empty."""
    problem = _text_problem(prompt, "prompt")
    if problem:
        raise BadPrompt(problem)
    if not str(prompt).strip():
        raise BadPrompt("the prompt is empty")


def tokenize(lm: LoadedModel, prompt: str, max_tokens: int) -> torch.Tensor:
    """``[1, T]`` input ids, with the tokenizer's BOS where it adds one; at most ``max_tokens`` and the
    model's context (:func:`explorer.models.loading.effective_max_tokens`), else :class:`BadPrompt` saying
    which limit applied."""
    check_prompt_text(prompt)
    ids = lm.tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert isinstance(ids, torch.Tensor)
    cap, reason = effective_max_tokens(lm, max_tokens)
    if ids.shape[1] > cap:
        raise BadPrompt(f"the prompt has {ids.shape[1]} tokens; the limit is {cap}, {reason}")
    if ids.shape[1] < 2:
        raise BadPrompt("the prompt needs at least 2 tokens")
    return ids.to(lm.device)


def resolve_position(position: int | None, n_tokens: int) -> int:
    """A position of a text of ``n_tokens`` tokens: ``None`` is the last, negative counts from the end.
    The first token has nothing before it to trace (its graph is one embedding), so positions start at 1."""
    if position is not None and (isinstance(position, (bool, np.bool_)) or not isinstance(position, numbers.Integral)):
        raise BadSetting(f"position must be a whole number, got {position!r}")
    t = n_tokens - 1 if position is None else int(position) + n_tokens if position < 0 else int(position)
    if not 1 <= t < n_tokens:
        raise BadSetting(
            f"position {position} is outside the text's {n_tokens} tokens (1 to {n_tokens - 1}, "
            f"or -1 to -{n_tokens - 1} from the end)"
        )
    return t


def first_token_id(lm: LoadedModel, text: str | None, what: str) -> int | None:
    """The id of the first token of ``text`` (a gold, target or foil token), without special tokens."""
    if text is None or text == "":
        return None
    problem = _text_problem(text, what)
    if problem:
        raise BadSetting(problem)
    ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise BadSetting(f"the {what} '{text}' has no tokens")
    return int(ids[0])


def token_text(lm: LoadedModel, token_id: int) -> str:
    """The text of one token; bytes of an incomplete UTF-8 character written ``<0xF0>``
    (:func:`explorer.token_text.token_text`)."""
    return text_of_token(lm.tokenizer, token_id)


@contextmanager
def memory_message():
    """Out of memory becomes one message. The failed step's frames are cleared first: their tensors (a
    long prompt's search buffers) would otherwise stay allocated while the exception, or a reference cycle
    through its frames, lives on, and the next trace would run out of memory too."""
    try:
        yield
    except torch.OutOfMemoryError as exc:
        traceback.clear_frames(exc.__traceback__)
        raise OutOfMemory("out of memory: try a shorter prompt, a smaller dtype or a smaller batch") from exc


@contextmanager
def holding(lm: LoadedModel, report):
    """Hold the model's lock (saying so when another trace has it); out of memory becomes one message."""
    if not lm.lock.acquire(blocking=False):
        report(0.0, "waiting: another trace is using the model")
        lm.lock.acquire()
    try:
        with memory_message():
            yield
    finally:
        lm.lock.release()
