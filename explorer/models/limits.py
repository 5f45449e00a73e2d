"""What a loaded model can take: its context length, its vocabulary, and the check of a trace's settings
against them (a ``top_k`` above the vocabulary, sizes that keep no edge of the graph)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from explorer.models.loading import LoadedModel
from explorer.options import check_sizes_give_edges, check_top_k

if TYPE_CHECKING:
    from explorer.results import Settings


def model_context(lm: LoadedModel) -> int | None:
    """The model's context length (``max_position_embeddings``; GPT-2's ``n_positions``), if it has one."""
    config = getattr(lm.model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def effective_max_tokens(lm: LoadedModel, max_tokens: int) -> tuple[int, str]:
    """``(cap, reason)``: the prompt length cap, the smaller of ``max_tokens`` (``reason``: "the configured
    limit") and the model's context (:func:`model_context`; "the model's context")."""
    context = model_context(lm)
    if context is not None and context < max_tokens:
        return context, "the model's context"
    return max_tokens, "the configured limit"


def vocab_size(lm: LoadedModel) -> int:
    """The number of the model's output logits (its output embeddings' rows, else the config's vocabulary)."""
    weight = getattr(lm.model.get_output_embeddings(), "weight", None)
    return int(weight.shape[0] if isinstance(weight, torch.Tensor) else lm.model.config.vocab_size)


def check_settings(
    lm: LoadedModel, settings: Settings, n_tokens: int | None = None, where: str = "this prompt"
) -> None:
    """Refuse settings that the model cannot take: a ``top_k`` above its vocabulary, and (given the number
    of tokens of the graph to trace) sizes of which none keeps an edge of that graph."""
    from explorer.graph import layout_for

    check_top_k(settings.top_k, vocab_size(lm))
    if n_tokens is not None:
        check_sizes_give_edges(settings.sizes, layout_for(lm.adapter, n_tokens).n_edges, where)


def available_bytes(device: torch.device) -> int:
    """Memory a trace can still take on ``device``: the GPU's free memory plus what this process's
    allocator holds unused; on the CPU, the system's available memory (``MemAvailable``)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 1 << 62  # unknown: do not refuse


def check_memory(lm: LoadedModel, settings: Settings, n_tokens: int) -> Settings:
    """The settings to trace ``n_tokens`` tokens with: ``settings``, or with a smaller batch of masked
    passes where only that fits (:func:`explorer.cost.fitting_settings`); refuses
    (:class:`explorer.errors.OutOfMemory`, with the estimate and what would make it smaller) a trace whose
    estimated peak beyond the loaded weights exceeds the device's available memory by more than the
    estimate's error."""
    from explorer.cost import GIB, fits, fitting_settings, suggestions
    from explorer.errors import OutOfMemory

    free = available_bytes(lm.device)
    fitted, est = fitting_settings(lm.model.config, n_tokens, settings, free, lm.device, lm.dtype)
    if not fits(est, free):
        raise OutOfMemory(
            f"this trace would not fit: {est.summary()}, of which {(est.peak_bytes - est.weights_bytes) / GIB:.1f} "
            f"GiB beyond the weights, but {free / GIB:.1f} GiB are free; try {'; '.join(suggestions(settings))}"
        )
    return fitted
