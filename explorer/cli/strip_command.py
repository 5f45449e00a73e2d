"""``strip``: every position of a text (``--text``), or of the model's continuation of a prompt
(``--prompt ... --generate N``), traced; one row per token: the token, the next token, its probability,
the full model's entropy, density, and the size at which the top-1 first comes back. ``--json`` / ``--csv``
write the per-position table (the JSON also every position's whole trace)."""

from __future__ import annotations

import argparse
import re
import sys

from explorer.cli.common import add_model_arguments, add_trace_arguments, fmt, load, n_tokens, settings_from
from explorer.errors import BadSetting
from explorer.options import MODES


def add_arguments(s: argparse.ArgumentParser) -> None:
    add_model_arguments(s)
    add_trace_arguments(s)
    s.add_argument("--text", default=None, help="the text whose every position is traced")
    s.add_argument("--prompt", default=None, help="with --generate: the prompt the model continues")
    s.add_argument("--generate", type=int, default=None, metavar="N", help="generate N tokens, then trace each")
    s.add_argument("--greedy", action="store_true", help="with --generate: the argmax each step (no sampling)")
    s.add_argument("--top-p", type=float, default=1.0, help="with --generate: nucleus sampling mass (the papers: 0.6)")
    s.add_argument("--temperature", type=float, default=1.0, help="with --generate: sampling temperature")
    s.add_argument(
        "--positions",
        default=None,
        help="with --text: positions to trace, e.g. 5: or 3,7,-1 or 2:20:2 (default: all from 1)",
    )
    s.add_argument("--mode", default="all", choices=MODES, help="ablation mode (default: %(default)s)")
    s.add_argument("--controls", action="store_true", help="also evaluate the inverse and random controls")
    s.add_argument("--json", dest="json_path", default=None, help="write the strip (and every trace) as JSON")
    s.add_argument("--csv", dest="csv_path", default=None, help="write the per-position table as CSV")


def _check(args) -> None:
    """Refuse what is wrong before the model loads."""
    if args.positions is not None:
        for part in args.positions.split(","):
            if not re.fullmatch(r"\s*-?\d*\s*(:\s*-?\d*\s*){0,2}", part) or not re.search(r"\d|:", part):
                raise BadSetting(f"positions: '{part}' is not a position, a slice such as 5: or a list of them")
    if args.generate is not None and args.generate < 1:
        raise BadSetting("generate: the number of tokens must be at least 1")
    if args.generate is None:
        if args.text is None or args.prompt is not None:
            raise BadSetting("strip: give --text, or --prompt with --generate N")
        return
    if args.prompt is None or args.text is not None:
        raise BadSetting("strip: --generate needs --prompt (and no --text)")
    if args.positions is not None:
        raise BadSetting("strip: --positions goes with --text; --generate traces every generated token")


def check_for_model(lm, args, settings) -> None:
    """Refuse, once the model is loaded and before any work, a text or prompt it cannot take: too long
    (with the tokens to generate, for the model's context), or sizes that keep no edge of the shortest
    traced position's graph."""
    from explorer.models.limits import check_settings, effective_max_tokens
    from explorer.text import parse_positions

    if args.generate is None:
        first = parse_positions(args.positions, n_tokens(lm, args.text, settings.max_tokens))[0]
        check_settings(lm, settings, first + 1, f"the text's first traced position ({first})")
        return
    n = n_tokens(lm, args.prompt, settings.max_tokens)
    cap, reason = effective_max_tokens(lm, settings.max_tokens)
    if n + args.generate > cap:
        raise BadSetting(f"the prompt's {n} tokens and {args.generate} to generate exceed the limit of {cap}, {reason}")
    check_settings(lm, settings, n, "the prompt's last token, the first traced position")


def print_rows(strip, out=None) -> None:
    """One row per traced position."""
    out = out or sys.stdout
    print(
        f"{'pos':>4} {'token':<14} {'next':<14} {'p(next)':>8} {'entropy':>8} {'density':>8} {'top-1 at':>9}", file=out
    )
    for p in strip.positions:
        mark = "*" if p.generated else " "
        kept = p.recovery.get(1)
        print(
            f"{p.position:>4} {repr(p.token)[:14]:<14} {repr(p.next_token)[:13] + mark:<14} "
            f"{fmt(p.next_token_prob):>8} {p.entropy:>8.3f} {p.density:>8.4f} {fmt(kept, 'g'):>9}",
            file=out,
        )
    gen = " (* generated)" if strip.generated_from is not None else ""
    print(
        f"model {strip.model_id}, {len(strip.tokens)} tokens, {len(strip.positions)} positions traced{gen}, "
        f"mode {strip.settings.mode}; {strip.timings.get('total', 0.0):.2f} s",
        file=out,
    )


def run(args) -> int:
    from explorer.atomic import atomic_write_text
    from explorer.inputs import check_prompt_text
    from explorer.text import trace_continuation, trace_text

    _check(args)
    settings = settings_from(args, mode=args.mode, controls=args.controls)
    check_prompt_text(args.text if args.generate is None else args.prompt)
    lm = load(args)
    check_for_model(lm, args, settings)
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", desc="strip", file=sys.stderr)

    def progress(fraction: float, message: str) -> None:
        bar.n = round(100 * fraction)
        bar.set_postfix_str(message[:40], refresh=True)

    try:
        if args.generate is None:
            strip = trace_text(lm, args.text, settings, args.positions, progress=progress)
        else:
            strip = trace_continuation(
                lm,
                args.prompt,
                args.generate,
                settings,
                temperature=args.temperature,
                top_p=args.top_p,
                greedy=args.greedy,
                seed=args.seed,
                progress=progress,
            )
    finally:
        bar.close()
    print_rows(strip)
    if args.json_path:
        atomic_write_text(args.json_path, strip.to_json())
        print(f"wrote {args.json_path}")
    if args.csv_path:
        atomic_write_text(args.csv_path, strip.to_frame().to_csv(index=False))
        print(f"wrote {args.csv_path}")
    return 0
