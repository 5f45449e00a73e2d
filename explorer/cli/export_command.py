"""``export``: a saved trace JSON (``trace --json``) read back without the model: its per-size table, and
the portable files of ``trace`` (``--neuronpedia``, ``--edge-list``, ``--html``) at ``--export-size``."""

from __future__ import annotations

import argparse

from explorer.cli import trace_outputs


def add_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument("--trace", required=True, metavar="FILE", help="a trace JSON written by trace --json")
    e.add_argument(
        "--max-mb", type=float, default=200, help="refuse trace files larger than this (MiB; default: %(default)s)"
    )
    trace_outputs.add_file_arguments(e)


def run(args) -> int:
    from explorer.cli.trace_command import print_table
    from explorer.errors import BadSetting
    from explorer.trace_file import read_trace

    if not args.max_mb > 0:
        raise BadSetting(f"--max-mb must be above 0, got {args.max_mb}")
    trace_outputs.check_sizes(args)
    trace = read_trace(args.trace, max_bytes=int(args.max_mb * 2**20))
    print_table(trace)
    trace_outputs.write_files(trace, args)
    return 0
