"""Command line: ``python -m explorer trace --prompt "..." [options]``.

Errors print one line (``error: ...``) and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys

from explorer.errors import BadSetting, ExplorerError
from explorer.graph import WEIGHTINGS
from explorer.intervene import MODES
from explorer.models.loading import DEFAULT_MODEL, DTYPES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m explorer", description="s-Trace Explorer")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("trace", help="trace one prompt over all sizes and print a table")
    t.add_argument("--prompt", required=True, help="the prompt text")
    t.add_argument("--model", default=DEFAULT_MODEL, help="embedded key, local folder or hub id (default: %(default)s)")
    t.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    t.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    t.add_argument("--weights", default="l1", choices=WEIGHTINGS, help="edge weights (default: %(default)s)")
    t.add_argument("--mode", default="all", choices=MODES, help="ablation mode (default: %(default)s)")
    t.add_argument("--compare-modes", action="store_true", help="also evaluate the trace in the other mode")
    t.add_argument("--controls", action="store_true", help="also evaluate the inverse and random controls")
    t.add_argument("--sizes", default=None, help="comma-separated sizes in (0, 1] (default: the 27-size grid)")
    t.add_argument("--gold", default=None, help="the true next token, for cross-entropy")
    t.add_argument("--seed", type=int, default=0, help="seed of the random control")
    t.add_argument("--linear-density", action="store_true", help="integrate TV over linear s (withdrawn paper)")
    t.add_argument("--max-tokens", type=int, default=None, help="prompt length cap in tokens")
    t.add_argument("--batch-size", type=int, default=32, help="subgraphs per forward pass")
    t.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (off by default)")
    t.add_argument("--json", dest="json_path", default=None, help="write the whole trace as JSON to this file")
    return parser


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def print_table(trace, out=None) -> None:
    """The per-size table: size, edges, TV, shared nucleus, top-1 token, and the other variants' TV."""
    out = out or sys.stdout
    extra = [v for v in ("other_mode", "inverse", "random") if any(v in s.outputs for s in trace.strata)]
    label = {"other_mode": f"TV[{trace.settings.other_mode}]", "inverse": "TV[inverse]", "random": "TV[random]"}
    head = f"{'size':>9} {'edges':>9} {'TV':>7} {'nucleus':>7}  {'top-1':<16}" + "".join(f" {label[v]:>20}" for v in extra)
    print(head, file=out)
    for s in trace.strata:
        tok = repr(s.trace.top[0].token)[:16]
        row = f"{s.size:>9.2g} {s.n_edges:>9d} {s.trace.tv:>7.4f} {s.trace.shared_nucleus:>7d}  {tok:<16}"
        row += "".join(f" {_fmt(s.outputs[v].tv if v in s.outputs else None):>20}" for v in extra)
        print(row, file=out)
    rec = ", ".join(f"{k}: {'-' if v is None else f'{v:g}'}" for k, v in trace.recovery.items())
    print(f"model {trace.model_id}, {len(trace.tokens)} tokens, E = {trace.n_edges} edges, "
          f"weights {trace.settings.weighting}, mode {trace.settings.mode}", file=out)
    print(f"full model top-1 {trace.full.top[0].token!r} (p = {trace.full.top[0].prob:.3f}), "
          f"entropy {trace.full.entropy:.3f} nats", file=out)
    print(f"density ({trace.settings.density_axis} s) {trace.density:.4f}; smallest size with shared nucleus >= k: {rec}",
          file=out)
    print(f"time {trace.timings['total']:.2f} s", file=out)


def _trace(args) -> int:
    from explorer.models.loading import load_model
    from explorer.trace import DEFAULT_MAX_TOKENS, Settings, check_prompt_text, trace_prompt

    try:
        sizes = tuple(float(x) for x in args.sizes.split(",")) if args.sizes else None
    except ValueError as exc:
        raise BadSetting(f"--sizes must be comma-separated numbers: {exc}") from exc
    kwargs = dict(
        weighting=args.weights, mode=args.mode, controls=args.controls, compare_modes=args.compare_modes,
        seed=args.seed, density_axis="linear" if args.linear_density else "log",
        max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS, batch_size=args.batch_size,
    )
    if sizes:
        kwargs["sizes"] = sizes
    settings = Settings(**kwargs)
    check_prompt_text(args.prompt)
    lm = load_model(args.model, device=args.device, dtype=args.dtype, revision=args.revision,
                    trust_remote_code=args.trust_remote_code)
    trace = trace_prompt(lm, args.prompt, settings, gold=args.gold)
    print_table(trace)
    if args.json_path:
        from explorer.export import write_json

        write_json(trace, args.json_path)
        print(f"wrote {args.json_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "trace":
            return _trace(args)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
