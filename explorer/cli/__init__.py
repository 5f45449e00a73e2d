"""The command line: ``trace`` (one prompt, any position), ``strip`` (every position of a text or of a
generated continuation), ``pair`` (one prompt's subgraphs on another, and their component diff),
``export`` (a saved trace, without the model) and ``corpus`` (a corpus run). Errors print one line
(``error: ...``) and exit with status 2, without a traceback. Each command's options and work are in a
module of its own."""

from __future__ import annotations

import argparse
import os
import sys

from explorer.cli import corpus_command, export_command, pair_command, strip_command, trace_command
from explorer.errors import ExplorerError


class UsageError(Exception):
    """Bad command-line syntax (argparse's own message)."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors raised, so that :func:`main` prints them as one line like every other."""

    def error(self, message: str):  # type: ignore[override]
        if "expected one argument" in message:
            message += " (a value that starts with '-' is written with '=', e.g. --prompt=-text)"
        raise UsageError(message)


def parser() -> argparse.ArgumentParser:
    prog = os.path.basename(sys.argv[0]) if sys.argv[0].endswith("s-trace") else "python -m explorer"
    top = _Parser(prog=prog, description="s-Trace Explorer")
    sub = top.add_subparsers(dest="command", required=True)
    trace_command.add_arguments(sub.add_parser("trace", help="trace one prompt over all sizes and print a table"))
    strip_command.add_arguments(
        sub.add_parser(
            "strip", help="trace every position of a text (or of a generated continuation); one row per token"
        )
    )
    pair_command.add_arguments(
        sub.add_parser(
            "pair", help="two prompts: the first's subgraphs applied to the second, and their component diff"
        )
    )
    export_command.add_arguments(
        sub.add_parser(
            "export", help="a saved trace JSON, without the model: its table, Neuronpedia graph, edge list, HTML"
        )
    )
    corpus_command.add_arguments(
        sub.add_parser("corpus", help="trace every prompt of a corpus; write Parquet results (resumable)")
    )
    return top


COMMANDS = {
    "trace": trace_command.run,
    "strip": strip_command.run,
    "pair": pair_command.run,
    "export": export_command.run,
    "corpus": corpus_command.run,
}


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc} (see --help)", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except (ExplorerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted (results stored so far are kept)", file=sys.stderr)
        return 2
