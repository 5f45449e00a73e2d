"""``trace``: one prompt (or one position of it) over all sizes, printed as a table; ``--json`` writes it."""

from __future__ import annotations

import argparse
import sys

from explorer.cli import trace_outputs
from explorer.cli.common import add_model_arguments, add_trace_arguments, fmt, load, n_tokens, settings_from
from explorer.options import MODES


def add_arguments(t: argparse.ArgumentParser) -> None:
    add_model_arguments(t)
    add_trace_arguments(t)
    t.add_argument("--prompt", required=True, help="the prompt text")
    t.add_argument("--mode", default="all", choices=MODES, help="ablation mode (default: %(default)s)")
    t.add_argument("--compare-modes", action="store_true", help="also evaluate the trace in the other mode")
    t.add_argument("--controls", action="store_true", help="also evaluate the inverse and random controls")
    t.add_argument("--gold", default=None, help="the true next token, for cross-entropy")
    t.add_argument(
        "--position",
        type=int,
        default=None,
        help="trace the prediction after this token (0-based; negative from the end; default: the last)",
    )
    t.add_argument(
        "--target", default=None, help="a token followed across sizes (default: the next token, else the top-1)"
    )
    t.add_argument("--foil", default=None, help="a second token: the target-minus-foil logit difference per size")
    t.add_argument("--linear-density", action="store_true", help="integrate TV over linear s (withdrawn paper)")
    t.add_argument("--json", dest="json_path", default=None, help="write the whole trace as JSON to this file")
    t.add_argument(
        "--dry-run",
        action="store_true",
        help="print the graph's size and the estimated peak memory and time, and trace nothing (loads no weights)",
    )
    trace_outputs.add_arguments(t)


def print_table(trace, out=None) -> None:
    """The per-size table: size, edges, TV, shared nucleus, top-1 token, and the other variants' TV."""
    out = out or sys.stdout
    extra = [v for v in ("other_mode", "inverse", "random") if any(v in s.outputs for s in trace.strata)]
    label = {"other_mode": f"TV[{trace.settings.other_mode}]", "inverse": "TV[inverse]", "random": "TV[random]"}
    head = f"{'size':>9} {'edges':>9} {'TV':>7} {'nucleus':>7}  {'top-1':<16}"
    head += "".join(f" {label[v]:>20}" for v in extra)
    print(head, file=out)
    for s in trace.strata:
        tok = repr(s.trace.top[0].token)[:16]
        row = f"{s.size:>9.2g} {s.n_edges:>9d} {s.trace.tv:>7.4f} {s.trace.shared_nucleus:>7d}  {tok:<16}"
        row += "".join(f" {fmt(s.outputs[v].tv if v in s.outputs else None):>20}" for v in extra)
        print(row, file=out)
    rec = ", ".join(f"{k}: {'-' if v is None else f'{v:g}'}" for k, v in trace.recovery.items())
    print(
        f"model {trace.model_id}, {len(trace.tokens)} tokens (position {trace.position}), "
        f"E = {trace.n_edges} edges, weights {trace.settings.weighting}, mode {trace.settings.mode}",
        file=out,
    )
    print(
        f"full model top-1 {trace.full.top[0].token!r} (p = {trace.full.top[0].prob:.3f}), "
        f"entropy {trace.full.entropy:.3f} nats",
        file=out,
    )
    print(
        f"density ({trace.settings.density_axis} s) {trace.density:.4f}; smallest size with shared nucleus >= k: {rec}",
        file=out,
    )
    if trace.target is not None:
        last = trace.strata[-1].trace
        foil = (
            f", foil {trace.foil!r}: target - foil logit {fmt(last.target_logit_diff)} at s = 1" if trace.foil else ""
        )
        print(f"target {trace.target!r}: p = {fmt(trace.full.target_prob)} in the full model{foil}", file=out)
    print(f"time {trace.timings['total']:.2f} s", file=out)


def run(args) -> int:
    from explorer.inputs import check_prompt_text, resolve_position
    from explorer.models.limits import check_settings
    from explorer.trace import trace_prompt

    settings = settings_from(
        args,
        mode=args.mode,
        controls=args.controls,
        compare_modes=args.compare_modes,
        density_axis="linear" if args.linear_density else "log",
    )
    check_prompt_text(args.prompt)
    if args.dry_run:
        return dry_run(args, settings)
    trace_outputs.check(args)
    lm = load(args)
    position = resolve_position(args.position, n_tokens(lm, args.prompt, settings.max_tokens))
    trace_outputs.check_for_model(lm, args, position + 1)
    check_settings(
        lm,
        settings,
        position + 1,
        "this prompt" if args.position is None else f"this prompt cut after token {position}",
    )
    trace = trace_prompt(
        lm, args.prompt, settings, gold=args.gold, position=args.position, target=args.target, foil=args.foil
    )
    print_table(trace)
    if args.json_path:
        from explorer.export import write_json

        write_json(trace, args.json_path)
        print(f"wrote {args.json_path}")
    trace_outputs.run(lm, trace, args)
    return 0


def dry_run(args, settings) -> int:
    """``--dry-run``: the cost estimate (:func:`explorer.cost.estimate_cost`) from the model's config and
    tokenizer, without its weights; says whether the trace would be refused here."""
    from transformers import AutoConfig, AutoTokenizer

    from explorer.cost import GIB, fits, fitting_settings
    from explorer.inputs import resolve_position
    from explorer.models.limits import available_bytes
    from explorer.models.loading import _hub_error, model_source, resolve_device, resolve_dtype

    source = model_source(args.model)
    try:
        config = AutoConfig.from_pretrained(source, revision=args.revision)
        tokenizer = AutoTokenizer.from_pretrained(source, revision=args.revision)
    except (OSError, ValueError) as exc:
        raise _hub_error(args.model, exc) from exc
    count = len(tokenizer(args.prompt)["input_ids"])
    n = resolve_position(args.position, count) + 1
    device = resolve_device(args.device)
    free = available_bytes(device)  # the weights are not loaded here
    fitted, est = fitting_settings(config, n, settings, free, device, resolve_dtype(args.dtype, device), False)
    print(est.summary())
    print("stages: " + ", ".join(f"{k} {v / GIB:.1f} GiB" for k, v in est.stages.items()))
    verdict = "fits" if fits(est, free, False) else "would be refused"
    if fitted.batch_size != settings.batch_size:
        verdict += f" with the masked passes in batches of {fitted.batch_size} (of --batch-size {settings.batch_size})"
    needed = est.peak_bytes / GIB
    print(f"{device}: {free / GIB:.1f} GiB available, {needed:.1f} GiB needed with the weights: {verdict}")
    if count > settings.max_tokens:
        print(f"note: the prompt has {count} tokens, above the cap of {settings.max_tokens} (--max-tokens)")
    return 0
