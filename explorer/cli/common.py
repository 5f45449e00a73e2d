"""Options and helpers the commands share: model options, the size grid, settings."""

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
    p.add_argument("--seed", type=int, default=0, help="seed of the random control")
    p.add_argument("--max-tokens", type=int, default=None, help="prompt length cap in tokens")
    p.add_argument("--batch-size", type=int, default=32, help="subgraphs per forward pass")


def sizes(text: str | None) -> dict:
    """``{"sizes": ...}`` from ``--sizes``, or nothing for the default grid."""
    if not text:
        return {}
    try:
        return {"sizes": tuple(float(x) for x in text.split(","))}
    except ValueError as exc:
        raise BadSetting(f"--sizes must be comma-separated numbers: {exc}") from exc


def load(args):
    """The model named by the model options."""
    from explorer.models.loading import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype, revision=args.revision,
                      trust_remote_code=args.trust_remote_code)


def fmt(x: float | None, spec: str = ".4f") -> str:
    return "-" if x is None else format(x, spec)

