"""Subgraph probabilities of the full model's top tokens at every size.

A :class:`explorer.trace.Stratum` keeps only the subgraph's own top tokens; the distribution view also
needs the subgraph's probability of each of the full model's top tokens. This re-runs the trace's
masked passes (same order, same ablation mode) once, after the sweep, and keeps those few numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from explorer.intervene import EdgeRanks, MaskSpec, masked_logits
from explorer.models.loading import LoadedModel
from explorer.trace import Trace


@torch.no_grad()
def full_top_probs(lm: LoadedModel, trace: Trace) -> np.ndarray:
    """``[n_strata, k]``: probability under each stratum's subgraph of the full model's top-``k`` tokens."""
    input_ids = torch.tensor([trace.token_ids], device=lm.device)
    ranks = EdgeRanks.from_orders(trace.layout, [trace.order], lm.device)
    keep_attn = trace.settings.mode == "attention-kept"
    specs = [MaskSpec(s.n_edges, keep_attention=keep_attn) for s in trace.strata]
    logits = masked_logits(lm.instrumentation, input_ids, ranks, specs, trace.settings.batch_size)
    ids = torch.tensor([tp.id for tp in trace.full.top], device=logits.device)
    return torch.softmax(logits.float(), -1)[:, ids].cpu().numpy()
