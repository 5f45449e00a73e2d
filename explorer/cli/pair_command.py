"""``pair``: two prompts traced alike; the first prompt's strata applied to the second (same token count),
against the second's own trace, and the two traces compared by component at each size."""

from __future__ import annotations

import argparse
import sys

from explorer.cli.common import add_model_arguments, add_trace_arguments, load, n_tokens, settings_from
from explorer.errors import BadPrompt
from explorer.options import MODES


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    add_trace_arguments(p)
    p.add_argument("--prompt", required=True, help="prompt A (e.g. the clean one): its subgraphs are applied to B")
    p.add_argument("--prompt-b", required=True, help="prompt B (e.g. the corrupted one), traced alike")
    p.add_argument("--mode", default="all", choices=MODES, help="ablation mode (default: %(default)s)")
    p.add_argument("--position", type=int, default=None, help="traced position of A (default: its last token)")
    p.add_argument("--position-b", type=int, default=None, help="traced position of B (default: as --position)")
    p.add_argument("--json", dest="json_path", default=None, help="write both summaries, transfer and diff as JSON")


def _check_prompts(args) -> None:
    from explorer.inputs import check_prompt_text

    for option, text in (("--prompt", args.prompt), ("--prompt-b", args.prompt_b)):
        try:
            check_prompt_text(text)
        except BadPrompt as exc:
            raise BadPrompt(f"{option}: {exc}") from None


def print_pair(pair, out=None) -> None:
    """One row per size: B's own TV, A's subgraph's TV on B (when the token counts agree), and the
    components in both traces, in one only, their Jaccard overlap; then both densities."""
    out = out or sys.stdout
    moved = {p.n_edges: p for p in pair.transfer.points} if pair.transfer is not None else {}
    own = {round(s.size, 12): s for s in pair.b.strata}
    print(
        f"{'size':>9} {'edges':>9} {'TV[B]':>7} {'TV[A->B]':>9} {'both':>5} {'only A':>6} {'only B':>6} {'Jaccard':>7}",
        file=out,
    )
    for d in pair.diff.sizes:
        b = own.get(round(d.size, 12))
        point = moved.get(d.edges_a)
        tv_b = "-" if b is None else f"{b.trace.tv:.4f}"
        tv_ab = "-" if point is None else f"{point.transferred.tv:.4f}"
        print(
            f"{d.size:>9.2g} {d.edges_b:>9d} {tv_b:>7} {tv_ab:>9} {len(d.both):>5d} {len(d.only_a):>6d} "
            f"{len(d.only_b):>6d} {d.jaccard:>7.3f}",
            file=out,
        )
    a, b = pair.a, pair.b
    print(
        f"A: {len(a.tokens)} tokens, density {a.density:.4f}; B: {len(b.tokens)} tokens, density {b.density:.4f}",
        file=out,
    )
    if pair.transfer is None:
        print(
            f"the token counts differ ({len(a.tokens)} and {len(b.tokens)}): A's subgraphs apply to B only at the "
            "same count; the component diff above compares any lengths",
            file=out,
        )
    else:
        print(f"A's subgraphs on B: density {pair.transfer.density:.4f} (mode {pair.transfer.mode})", file=out)


def run(args) -> int:
    import json

    from explorer.atomic import atomic_write_text
    from explorer.inputs import resolve_position
    from explorer.models.limits import check_settings
    from explorer.pairs import trace_pair

    settings = settings_from(args, mode=args.mode)
    _check_prompts(args)
    lm = load(args)
    b_position = args.position if args.position_b is None else args.position_b
    for option, text, position in (("--prompt", args.prompt, args.position), ("--prompt-b", args.prompt_b, b_position)):
        t = resolve_position(position, n_tokens(lm, text, settings.max_tokens))
        check_settings(lm, settings, t + 1, f"{option} cut after token {t}")
    pair = trace_pair(lm, args.prompt, args.prompt_b, settings, args.position, args.position_b)
    print_pair(pair)
    if args.json_path:
        atomic_write_text(args.json_path, json.dumps(pair.to_dict(), indent=1, ensure_ascii=False))
        print(f"wrote {args.json_path}")
    return 0
