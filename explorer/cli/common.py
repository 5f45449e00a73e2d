"""Options and helpers the commands share: model options, the size grid, settings, and the checks of
settings against the loaded model."""

from __future__ import annotations

import argparse

from explorer.errors import BadSetting
from explorer.models.loading import DEFAULT_MODEL
from explorer.options import DTYPES, WEIGHTINGS


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help="embedded key, local folder or hub id (default: %(default)s)")
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    p.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (off by default)")


def add_trace_arguments(p: argparse.ArgumentParser) -> None:
    """Options of how each prompt is traced (every command)."""
    p.add_argument("--weights", default="l1", choices=WEIGHTINGS, help="edge weights (default: %(default)s)")
    p.add_argument("--sizes", default=None, help="comma-separated sizes in (0, 1] (default: the 27-size grid)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random control (0 or more)")
    p.add_argument("--max-tokens", type=int, default=None, help="prompt length cap in tokens (default: 256)")
    p.add_argument("--batch-size", type=int, default=32, help="subgraphs per forward pass")


def sizes(text: str | None) -> dict:
    """``{"sizes": ...}`` from ``--sizes``, or nothing for the default grid (the option not given)."""
    if text is None:
        return {}
    if not text.strip():
        raise BadSetting("--sizes: give at least one size in (0, 1], comma-separated")
    try:
        return {"sizes": tuple(float(x) for x in text.split(","))}
    except ValueError as exc:
        raise BadSetting(f"--sizes must be comma-separated numbers: {exc}") from exc


def settings_from(args, **fields):
    """The :class:`~explorer.results.Settings` of the trace options (and ``fields``), each option checked
    under its own name first."""
    from explorer.results import DEFAULT_MAX_TOKENS, Settings

    for option, value, least in (
        ("--seed", args.seed, 0),
        ("--max-tokens", args.max_tokens, 1),
        ("--batch-size", args.batch_size, 1),
    ):
        if value is not None and value < least:
            raise BadSetting(f"{option} must be at least {least}, got {value}")
    max_tokens = DEFAULT_MAX_TOKENS if args.max_tokens is None else args.max_tokens
    return Settings(
        weighting=args.weights,
        seed=args.seed,
        max_tokens=max_tokens,
        batch_size=args.batch_size,
        **sizes(args.sizes),
        **fields,
    )


def load(args):
    """The model named by the model options."""
    from explorer.models.loading import load_model

    return load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        revision=args.revision,
        trust_remote_code=args.trust_remote_code,
    )


def n_tokens(lm, text: str, max_tokens: int) -> int:
    """The number of tokens of ``text`` (refused as :func:`explorer.trace.tokenize` refuses it)."""
    from explorer.inputs import tokenize

    return int(tokenize(lm, text, max_tokens).shape[1])


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)
