"""What a trace will cost before it runs: the graph's edges, the peak device memory and the time, from the
model's config and the token count alone (no weights needed), and what would make a trace smaller. Torch
is not needed; :func:`explorer.models.limits.check_memory` refuses a trace that would not fit.

The peak is the largest of the pipeline's stages (``bench/memory_bench.py`` measures each):

- ``graph``: the weights, the recorded forward pass and the edge weights ``[L, H, T, T]`` float32 with
  the scoring's temporaries;
- ``search``: the CSR of the ``E`` edges with their weights (the graph's own tensors freed) and the
  search's device part; for large graphs on a GPU, the level-by-level search, whose buffers hold the
  peak, with the random control's searched before the forward pass (one device search at a time);
- ``evaluate``: the ranks of every id in each order (:class:`explorer.intervene.EdgeRanks`: int32, or
  int64 past 2**31 edges) beside the orders while they are ranked, then beside the batched masked passes
  (eager attention ``[B, H, T, T]`` in float32 for the softmax and in the model's dtype, the attention
  keeps, the MLP's ``[B, T, F]``).

Each term is bytes per element times a count; the constants (:data:`BYTES`) come from the measured
stage peaks in ``bench/RESULTS.md`` (the estimate is checked there against the measured peaks). Time:
the masked passes' FLOPs at the device's rate plus a per-pass launch cost, the search at a rate per
edge (:data:`RATES`); a rough guide, not a promise.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

from explorer.edges import EdgeLayout
from explorer.options import check_sizes
from explorer.results import Settings

CHAIN_SEARCH_EDGES_PER_LEVEL = 50_000
"""A graph on a GPU with at least this many edges per level (2L + 1 levels) is searched there, level by level
(:func:`explorer.orders.searched_on_device`, which reads it from here: this module needs no torch). That
costs about 3.5 ms per level plus 18 ns per edge on an H200, the heap search on its host 70-120 ns per edge
(bench/RESULTS.md)."""

GIB = 2**30

BYTES = {
    "graph_per_id": 14.0,  # per L*H*T*T id: the recorded attention, the edge weights float32, a layer's temporaries
    "device_search_per_edge": 52.0,  # the weights, the level-by-level search (int32, sorts by ranges), a random order
    "random_search_per_edge": 48.0,  # the random control's, before the forward pass (less is held then)
    "host_search_per_edge": 40.0,  # the heap search's device part: sorted CSR and its keys
    "random_search_overlap_per_edge": 45.0,  # with controls: the random control's, partly alongside it
    "orders_per_edge": 16.0,  # two orders of int64 ids on the device, while they are ranked
    "plans_per_edge": 8.0,  # the level plans, held from the random control's device search to the greedy one
    "pass_per_attention": 13.0,  # per B*H*T*T: float32 scores and softmax, probabilities, keeps
    "pass_per_activation": 12.0,  # per B*T*(d + F): hidden states and the MLP's intermediate
    "fixed": 0.5 * GIB,  # the allocator's slack, the CUDA context's workspace, small tensors
}
"""Bytes per element of each term (see the module's docstring), from the stage peaks measured on an H200
(bench/RESULTS.md, "Long prompts: memory by stage"; the device search's and the passes' refitted in
"Long prompts: sorts by sampled ranges", the device search's and the orders' again in "Long prompts: the
8B shape at 2,048 tokens"). For graphs searched by the heap search the random control's device part (on
its own stream) overlaps the greedy one's in part."""

RATES = {
    "cuda": {
        "flops": 5.0e14,
        "attention_s_per_entry": 2.3e-11,
        "launch_s_per_layer": 3.0e-4,
        "search_s_per_edge": 6.0e-8,
        "device_search_s_per_edge": 7.0e-9,
        "device_search_s_per_level": 7.0e-3,
        "fixed_s": 0.04,
    },
    "cpu": {
        "flops": 3.3e11,
        "attention_s_per_entry": 1.7e-8,
        "launch_s_per_layer": 2.0e-4,
        "search_s_per_edge": 1.0e-7,
        "device_search_s_per_edge": 1.0e-7,
        "device_search_s_per_level": 0.0,
        "fixed_s": 0.05,
    },
}
"""Throughputs by device type: FLOP/s of the masked passes (counted as if every row were computed: the
rows a subgraph removes, which the passes skip, are in the rate); seconds per attention entry (subgraph x
head x T x T, per layer) of their elementwise work (the softmax, the keeps: memory-bound, it holds the
passes of a small model on a long prompt); seconds per layer and pass of overhead;
seconds per edge of each search (greedy, random control) by the heap search and by the device search
(with the orders' copy to the host), and per level of the device search (its small operations, two
rounds); and a fixed cost (forward pass, metrics). The GPU's fitted to the 0.6B shape at 2,048 tokens and
the 8B shape at 1,024 and 2,048 (the long prompts), and to the eager traces of 48 tokens (the fixed and
per-layer costs) (bench/RESULTS.md, "Long prompts: the 8B shape at 2,048 tokens"); the CPU's to the
embedded model's traces of 43-215 tokens on two cores, with and without controls (within 20%; "The CPU's
passes on the rows they keep")."""


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a model: layers, heads, key-value heads, widths, vocabulary, parameter
    count and whether its residual is parallel (attention and MLP read the same input)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    hidden: int
    intermediate: int
    vocab: int
    n_params: int
    parallel: bool = False

    @classmethod
    def from_config(cls, config) -> ModelShape:
        """From a ``transformers`` config (GPT-2 style names too); the parameter count from its widths."""

        def get(*names: str, default: Any = 0) -> Any:
            return next((getattr(config, n) for n in names if getattr(config, n, None) is not None), default)

        L = int(get("num_hidden_layers", "n_layer"))
        H = int(get("num_attention_heads", "n_head"))
        d = int(get("hidden_size", "n_embd"))
        kv = int(get("num_key_value_heads", default=H))
        f = int(get("intermediate_size", "n_inner", default=4 * d))
        V = int(get("vocab_size"))
        head_dim = int(get("head_dim", default=d // H))
        gated = get("model_type", default="") not in ("gpt2", "gpt_neox")
        per_layer = d * head_dim * (2 * H + 2 * kv) + (3 if gated else 2) * d * f + 4 * d
        if not gated:  # GPT-2 and GPT-NeoX: biases on every projection
            per_layer += 2 * head_dim * (H + kv) + f + d
        tied = bool(get("tie_word_embeddings", default=True))
        positions = get("n_positions", default=0) * d  # GPT-2's learned position embeddings
        n_params = L * per_layer + V * d * (1 if tied else 2) + d + positions
        return cls(L, H, kv, d, f, V, n_params, bool(get("use_parallel_residual", default=False)))


@dataclass(frozen=True)
class CostEstimate:
    """The estimate of one trace: ``n_edges`` (E), ``n_passes`` (batched masked passes), the peak device
    memory in bytes and its largest stage, ``stages`` (each stage's peak in bytes), and seconds."""

    n_tokens: int
    n_edges: int
    n_passes: int
    weights_bytes: int
    peak_bytes: int
    peak_stage: str
    seconds: float
    stages: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.n_tokens} tokens: E = {self.n_edges:,} edges, {self.n_passes} masked "
            f"{'pass' if self.n_passes == 1 else 'passes'}; estimated peak "
            f"{self.peak_bytes / GIB:.1f} GiB ({self.peak_stage}), about {_duration(self.seconds)}"
        )


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _dtype_bytes(dtype) -> int:
    name = str(dtype).replace("torch.", "")
    return 4 if name in ("float32", "auto") else 8 if name == "float64" else 2


def estimate_cost(
    config, n_tokens: int, settings: Settings, device: object = "cuda", dtype: object = "bfloat16"
) -> CostEstimate:
    """The estimate for a trace of ``n_tokens`` tokens with ``settings`` (its sizes, controls, modes
    compared, batch size) of the model ``config`` (a ``transformers`` config or a :class:`ModelShape`) in
    ``dtype`` on ``device`` (``"cuda"``, ``"cpu"`` or a ``torch.device``)."""
    shape = config if isinstance(config, ModelShape) else ModelShape.from_config(config)
    kind = "cuda" if str(device).startswith("cuda") else "cpu"
    layout = EdgeLayout(shape.n_layers, shape.n_heads, n_tokens, shape.parallel)
    E, ids, T, B = layout.n_edges, layout.n_ids, n_tokens, settings.batch_size
    per_stratum = 1 + settings.compare_modes + 2 * settings.controls
    n_specs = sum(math.floor(s * E) > 0 for s in check_sizes(settings.sizes)) * per_stratum
    weights = shape.n_params * _dtype_bytes(dtype)
    orders = 1 + settings.controls
    rank_bytes = 4 if E < 2**31 - 1 else 8
    on_device = kind == "cuda" and E >= CHAIN_SEARCH_EDGES_PER_LEVEL * (2 * shape.n_layers + 1)
    split = not on_device and 1 < n_specs <= B  # one pass cut in two beside a host search (passes.batch_bounds)
    n_passes = 2 if split else math.ceil(n_specs / B)
    batch = math.ceil(n_specs / 2) if split else min(B, n_specs)  # the largest batch
    passes = BYTES["pass_per_attention"] * batch * shape.n_heads * T * T + BYTES["pass_per_activation"] * batch * T * (
        shape.hidden + shape.intermediate
    )
    if on_device:  # one device search at a time; a random order of ids past int32 held as int64
        wide_ids = settings.controls * 4.0 * (layout.n_ids > 2**31)
        per_edge = max(BYTES["device_search_per_edge"] + wide_ids, settings.controls * BYTES["random_search_per_edge"])
        search = per_edge * E
    else:
        search = (BYTES["host_search_per_edge"] + settings.controls * BYTES["random_search_overlap_per_edge"]) * E
    stages = {
        "graph": weights
        + BYTES["graph_per_id"] * ids
        + on_device * settings.controls * BYTES["plans_per_edge"] * E
        + BYTES["fixed"],
        "search": weights + search + BYTES["fixed"],
        # the orders are released once ranked, before the passes
        "evaluate": weights + rank_bytes * orders * ids + max(BYTES["orders_per_edge"] * E, passes) + BYTES["fixed"],
    }
    peak_stage = max(stages, key=lambda k: stages[k])
    rate = RATES[kind]
    flops_per_subgraph = 2 * shape.n_params * T + 4 * shape.n_layers * shape.hidden * T * T
    passes_s = (
        n_specs
        * (flops_per_subgraph / rate["flops"] + rate["attention_s_per_entry"] * shape.n_heads * shape.n_layers * T * T)
        + n_passes * shape.n_layers * rate["launch_s_per_layer"]
    )
    search_s = E * rate["device_search_s_per_edge" if on_device else "search_s_per_edge"] * orders
    if on_device:
        seconds = (
            rate["fixed_s"]
            + passes_s
            + search_s
            + (2 * shape.n_layers + 1) * rate["device_search_s_per_level"] * orders
        )
    else:  # the passes run beside the host search (explorer/passes.py): only the last waits for its end
        seconds = rate["fixed_s"] + max(passes_s, search_s + passes_s / max(n_passes, 1))
    return CostEstimate(
        n_tokens,
        E,
        n_passes,
        weights,
        int(stages[peak_stage]),
        peak_stage,
        seconds,
        {k: int(v) for k, v in stages.items()},
    )


def sparse_passes(config, n_tokens: int, batch_size: int, device: object) -> bool:
    """Whether the masked passes of a trace of ``n_tokens`` tokens at ``batch_size`` of the model
    ``config`` (as :func:`estimate_cost`) on ``device`` are bound by their MLPs' FLOPs rather than by
    kernel launches (short prompts of small models on a GPU are not). Only then do the passes skip the
    MLP rows a batch removes and the subgraphs that repeat one before them (:mod:`explorer.passes`): where
    launches bind, that saves nothing and only varies the batches' shapes, each of which is recorded as
    a CUDA graph of its own (:mod:`explorer.pass_graphs`)."""
    shape = config if isinstance(config, ModelShape) else ModelShape.from_config(config)
    rate = RATES["cuda" if str(device).startswith("cuda") else "cpu"]
    mlp_s = 6 * shape.hidden * shape.intermediate * shape.n_layers * batch_size * n_tokens / rate["flops"]
    return mlp_s > shape.n_layers * rate["launch_s_per_layer"]


ESTIMATE_ERROR = 0.25
"""How far a peak estimate may be from the measured peak (bench/RESULTS.md): a trace is refused only when
even an estimate this much too high would not fit."""


def fits(est: CostEstimate, free_bytes: int, weights_loaded: bool = True, error: float = ESTIMATE_ERROR) -> bool:
    """Whether a trace of estimate ``est`` could fit in ``free_bytes`` of device memory, the weights
    already loaded (they are then not in ``free_bytes``) or not, were the estimate ``error`` too high."""
    needed = est.peak_bytes - (est.weights_bytes if weights_loaded else 0)
    return needed * (1 - error) <= free_bytes


def fitting_settings(
    config,
    n_tokens: int,
    settings: Settings,
    free_bytes: int,
    device: object = "cuda",
    dtype: object = "bfloat16",
    weights_loaded: bool = True,
) -> tuple[Settings, CostEstimate]:
    """The settings to trace with, and their estimate (:func:`estimate_cost`): ``settings`` if their
    estimate fits in ``free_bytes``; else those with the largest smaller ``batch_size`` whose estimate fits
    (a long prompt's masked passes hold ``[B, H, T, T]`` attention; the numbers can then differ from the
    requested batch's in float rounding, and the trace's settings say which batch it used); else the
    largest batch that could fit were the estimate :data:`ESTIMATE_ERROR` too high (:func:`fits`). When
    none could, the requested settings' estimate (the caller refuses it)."""
    at = functools.cache(
        lambda batch: estimate_cost(config, n_tokens, replace(settings, batch_size=batch), device, dtype)
    )
    for error in (0.0, ESTIMATE_ERROR):
        for batch in range(settings.batch_size, 0, -1):
            est = at(batch)
            if fits(est, free_bytes, weights_loaded, error):
                return replace(settings, batch_size=batch), est
            if est.peak_stage != "evaluate":  # another stage holds the peak: a smaller batch cannot help
                break
    return settings, at(settings.batch_size)


def suggestions(settings: Settings) -> list[str]:
    """What makes a trace smaller, for a refusal's message."""
    out = []
    if settings.controls:
        out.append("no controls (one edge order fewer, a third of the passes)")
    if len(settings.sizes) > 9:
        out.append("fewer sizes (--sizes)")
    if settings.batch_size > 8:
        out.append("a smaller --batch-size (smaller masked passes)")
    return out + ["a shorter prompt (memory grows with its square)", "another dtype (bfloat16 halves the weights)"]
