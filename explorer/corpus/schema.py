"""The columns of a results folder's Parquet parts, for the two kinds of run.

A normal run (:data:`SCHEMA`) holds one row per (prompt, ablation mode, size): the per-prompt columns
(:data:`PROMPT_FIELDS`) repeated on each of its sizes' rows (:data:`STRATUM_FIELDS`). An all-positions run
(``corpus --all-positions``, :data:`POSITIONS_SCHEMA`) holds one row per (text, position, ablation mode):
the :class:`~explorer.results.PositionSummary` of :func:`explorer.text.trace_text` at that position, with
the text's id, index and category, the context length (``n_context = position + 1`` tokens) and the next
token's unigram frequency. ``run.json`` says which kind a folder holds (``all_positions``); :func:`layout`
gives its schema and row key. pyarrow only: the pages read results without torch.
"""

from __future__ import annotations

import pyarrow as pa

from explorer.corpus.runinfo import SCHEMA_VERSION

MARK = {b"s-trace": b"results", b"schema": str(SCHEMA_VERSION).encode()}

PROMPT_FIELDS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt_index", pa.int32()),
        ("text", pa.string()),
        ("gold", pa.string()),
        ("category", pa.string()),
        ("mode", pa.string()),
        ("n_tokens", pa.int32()),
        ("n_edges", pa.int64()),
        ("density", pa.float64()),
        ("density_linear", pa.float64()),
        ("density_random", pa.float64()),
        ("entropy", pa.float64()),
        ("full_top1_id", pa.int64()),
        ("full_top1_token", pa.string()),
        ("full_top1_prob", pa.float64()),
        ("full_top1_freq", pa.float64()),
        ("full_gold_ce", pa.float64()),
        ("recovery_1", pa.float64()),
        ("recovery_10", pa.float64()),
        ("recovery_50", pa.float64()),
        ("recovery_90", pa.float64()),
        ("seconds", pa.float64()),
    ]
)
STRATUM_FIELDS = pa.schema(
    [
        ("size", pa.float64()),
        ("stratum_edges", pa.int64()),
        ("tv", pa.float64()),
        ("shared_nucleus", pa.int32()),
        ("stratum_entropy", pa.float64()),
        ("top1_id", pa.int64()),
        ("top1_token", pa.string()),
        ("top1_freq", pa.float64()),
        ("top_ids", pa.list_(pa.int64())),
        ("top_tokens", pa.list_(pa.string())),
        ("top_probs", pa.list_(pa.float64())),
        ("gold_ce", pa.float64()),
        ("tv_inverse", pa.float64()),
        ("tv_random", pa.float64()),
        ("nucleus_inverse", pa.int32()),
        ("nucleus_random", pa.int32()),
        ("attention_edges", pa.int64()),
        ("mlp_edges", pa.int64()),
        ("residual_edges", pa.int64()),
    ]
)
SCHEMA = pa.schema(list(PROMPT_FIELDS) + list(STRATUM_FIELDS), metadata=MARK)
KEY = ["prompt_id", "mode", "size"]

POSITION_FIELDS = pa.schema(
    [
        ("prompt_id", pa.string()),
        ("prompt_index", pa.int32()),
        ("text", pa.string()),
        ("gold", pa.string()),
        ("category", pa.string()),
        ("mode", pa.string()),
        ("n_tokens", pa.int32()),
        ("position", pa.int32()),
        ("n_context", pa.int32()),
        ("n_edges", pa.int64()),
        ("n_sizes", pa.int32()),
        ("token", pa.string()),
        ("next_token", pa.string()),
        ("next_token_id", pa.int64()),
        ("next_token_prob", pa.float64()),
        ("next_token_rank", pa.int64()),
        ("next_token_freq", pa.float64()),
        ("entropy", pa.float64()),
        ("top1", pa.string()),
        ("top1_prob", pa.float64()),
        ("density", pa.float64()),
        ("density_linear", pa.float64()),
        ("recovery_1", pa.float64()),
        ("recovery_10", pa.float64()),
        ("recovery_50", pa.float64()),
        ("recovery_90", pa.float64()),
        ("seconds", pa.float64()),
    ]
)
"""One row per (text, position, mode). ``n_tokens``: the text's tokens; ``n_context``: the tokens the
position's prediction sees (``position + 1``); ``n_edges``: the edges ``E`` of its graph; ``n_sizes``: the
sizes of the run's grid evaluated there (those with at least one edge, ``floor(s * E) >= 1``: a short
context skips the smallest sizes, so its density integrates over fewer decades of ``s`` and is smaller);
``next_token*``: the text's token after the position (null after the last), its probability and rank (1 =
the top) under the full model and its unigram frequency per million in the run's frequency table (null
without one); ``entropy``, ``top1``: the full model's; ``density``, ``density_linear``: TV integrated over
``log10 s`` and ``s``; ``recovery_k``: the first size whose shared nucleus reaches ``k``; ``seconds``: the
time of the text's trace in that mode."""
POSITIONS_SCHEMA = pa.schema(list(POSITION_FIELDS), metadata=MARK)
POSITION_KEY = ["prompt_id", "mode", "position"]


def layout(all_positions: bool) -> tuple[pa.Schema, list[str]]:
    """The parts' schema and the key of one row (the last column orders a prompt's rows)."""
    return (POSITIONS_SCHEMA, POSITION_KEY) if all_positions else (SCHEMA, KEY)
