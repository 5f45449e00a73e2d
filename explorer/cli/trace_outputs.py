"""What ``trace`` does with a trace besides its table: a what-if ablation (``--ablate``, ``--add``,
``--whatif-size``) and the portable files (``--neuronpedia``, ``--edge-list``, ``--html``), each at one size
(``--export-size``; default: the first size that keeps the full model's top-1, where the app opens)."""

from __future__ import annotations

import argparse
import sys

from explorer.cli.common import fmt
from explorer.components import FULL, parse_components, split_names, stratum_index
from explorer.errors import BadSetting


def add_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument(
        "--ablate",
        default=None,
        metavar="NAMES",
        help="what-if: remove these components, e.g. a3.h2,m5 (a3 or a3.*: every head of layer 3; L3: the "
        "whole layer; *: everything) and print the new distribution after one masked pass",
    )
    t.add_argument("--add", default=None, metavar="NAMES", help="what-if: add these components (same names)")
    t.add_argument(
        "--whatif-size",
        default=FULL,
        metavar="S",
        help="what-if: start from the trace's subgraph at this size, or 'full' for the full graph (default)",
    )
    add_file_arguments(t)


def add_file_arguments(t: argparse.ArgumentParser) -> None:
    """``--export-size``, ``--neuronpedia``, ``--edge-list`` and ``--html`` (also for a saved trace)."""
    t.add_argument(
        "--export-size",
        default=None,
        metavar="S",
        help="size of the subgraph --neuronpedia, --edge-list and --html show (a size, or 'full'; default: "
        "the first size that keeps the full model's top-1)",
    )
    t.add_argument("--neuronpedia", default=None, metavar="FILE", help="write the subgraph as a Neuronpedia graph JSON")
    t.add_argument(
        "--edge-list",
        default=None,
        metavar="FILE",
        help="write the subgraph's component links (input, a{l}.h{h}, m{l}, logits): .json in the EAP-IG / "
        "MIB circuit layout, any other name as CSV",
    )
    t.add_argument("--html", default=None, metavar="FILE", help="write a standalone HTML report (opens offline)")


def _check_size(text: str | None, option: str) -> None:
    if text is None or text.strip().lower() == FULL:
        return
    try:
        value = float(text)
    except ValueError:
        raise BadSetting(f"{option} must be a size in (0, 1] or '{FULL}', got '{text}'") from None
    if not 0 < value <= 1:
        raise BadSetting(f"{option} must be a size in (0, 1] or '{FULL}', got '{text}'")


def check(args) -> None:
    """Refuse misspelt names and sizes before the model loads."""
    for option, names in (("--ablate", args.ablate), ("--add", args.add)):
        try:
            split_names(names)
        except BadSetting as exc:
            raise BadSetting(f"{option}: {exc}") from None
    _check_size(args.whatif_size, "--whatif-size")
    check_sizes(args)


def check_sizes(args) -> None:
    """Refuse a misspelt ``--export-size``."""
    _check_size(args.export_size, "--export-size")


def check_for_model(lm, args, n_tokens: int) -> None:
    """Refuse names of layers or heads the loaded model does not have, before the trace runs."""
    from explorer.graph import layout_for

    layout = layout_for(lm.adapter, n_tokens)
    for option, names in (("--ablate", args.ablate), ("--add", args.add)):
        try:
            parse_components(names, layout)
        except BadSetting as exc:
            raise BadSetting(f"{option}: {exc}") from None


def _export_size(trace, text: str | None):
    if text is not None:
        return text
    from explorer.views.labels import default_stratum

    return trace.strata[default_stratum(trace)].size


def print_whatif(result, out=None) -> None:
    out = out or sys.stdout
    start = "the full graph" if result.from_full else f"the subgraph at s = {result.size:g}"
    change = "; ".join(
        part
        for part in (
            f"removed {', '.join(result.removed)}" if result.removed else "",
            f"added {', '.join(result.added)}" if result.added else "",
        )
        if part
    )
    print(f"what-if from {start} ({result.base_edges} edges): {change or 'no change'}", file=out)
    for label, o, edges in (("before", result.base, result.base_edges), ("after", result.output, result.n_edges)):
        top = o.top[0]
        print(
            f"  {label:<6} {edges:>9d} edges  TV {o.tv:.4f}  nucleus {o.shared_nucleus:>2d}  "
            f"top-1 {top.token!r} (p = {top.prob:.3f})"
            + (f"  target p = {fmt(o.target_prob)}" if o.target_prob is not None else ""),
            file=out,
        )


def run(lm, trace, args) -> None:
    """The what-if and the files asked for, after the trace."""
    if args.ablate is not None or args.add is not None:
        from explorer.whatif import evaluate_subgraph

        print_whatif(evaluate_subgraph(lm, trace, size=args.whatif_size, add=args.add, remove=args.ablate))
    write_files(trace, args)


def write_files(trace, args) -> None:
    """The portable files asked for (``--neuronpedia``, ``--edge-list``, ``--html``), at ``--export-size``."""
    from explorer.atomic import atomic_write_text

    wanted = args.neuronpedia or args.edge_list or args.html
    if not wanted:
        return
    size = _export_size(trace, args.export_size)
    index = stratum_index(trace, size)
    shown = "the full graph" if index is None else f"s = {trace.strata[index].size:g}"
    if args.neuronpedia:
        from explorer.neuronpedia import to_graph

        atomic_write_text(args.neuronpedia, to_graph(trace, size).to_json())
        print(f"wrote {args.neuronpedia} (Neuronpedia graph, {shown})")
    if args.edge_list:
        from explorer import edge_list

        links = edge_list.component_links(trace, size)
        is_json = str(args.edge_list).lower().endswith(".json")
        text = edge_list.to_eap_json(trace, links, size) if is_json else edge_list.to_csv(links)
        atomic_write_text(args.edge_list, text)
        print(f"wrote {args.edge_list} ({len(links)} component links, {shown})")
    if args.html:
        from explorer.views.report import report_html

        atomic_write_text(args.html, report_html(trace, size))
        print(f"wrote {args.html} (HTML report, {shown})")
