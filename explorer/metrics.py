"""Metrics of a subgraph's next-token distribution (METHOD.md section 4); density is :mod:`explorer.density`.

``p [V]`` is the full model's distribution at the last position, ``q [B, V]`` a batch of subgraphs'.
Functions take and return tensors on the model's device, so one transfer brings all results to the host.
"""

from __future__ import annotations

import torch

from explorer.options import NUCLEUS_LEVELS


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_v |p_v - q_v|``: ``p [V]``, ``q [B, V]`` -> ``[B]``."""
    return 0.5 * (q - p[None, :]).abs().sum(-1)


def entropy(q: torch.Tensor) -> torch.Tensor:
    """Entropy in nats: ``[B, V]`` -> ``[B]`` (``0 log 0 = 0``)."""
    return -(q * torch.where(q > 0, q.log(), torch.zeros_like(q))).sum(-1)


def top_sorted(probs: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``m`` tokens of each row of ``probs [B, V]`` by descending probability, ties in token
    order (a stable sort's first ``m``), and their probabilities: ``[B, m]`` each.

    A float32 row is ranked by one int64 key per token (the probability's bits, which order as the values
    of non-negative floats, then the token id reversed; NaN first, as the sort puts it), so a partial
    ``topk`` finds exactly the stable sort's first ``m`` without sorting the whole vocabulary. Where ``m``
    is a large part of the row, or the dtype is another, the row is sorted."""
    V = probs.shape[-1]
    if probs.dtype != torch.float32 or 4 * m >= V:
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
        return idx[:, :m], sorted_p[:, :m]
    bits = (probs + 0.0).view(torch.int32)  # + 0.0: -0.0 is 0.0, as in the sort
    bits = torch.where(torch.isnan(probs), torch.iinfo(torch.int32).max, bits)
    reversed_id = V - 1 - torch.arange(V, device=probs.device)
    idx = ((bits.long() << 32) | reversed_id).topk(m, dim=-1).indices
    return idx, probs.gather(-1, idx)


def _nucleus(probs: torch.Tensor, m: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens by descending probability (stable) ``[B, m]`` (``m`` default: all ``V``) and, for each
    level ``k`` of :data:`NUCLEUS_LEVELS`, the length of the shortest prefix whose mass reaches ``k``%
    ``[B, K]``: exact up to ``m``; ``m + 1`` where the first ``m`` tokens do not reach it; at most ``V``."""
    V = probs.shape[-1]
    idx, sorted_p = top_sorted(probs, V if m is None else min(m, V))
    cum = sorted_p.double().cumsum(-1)
    levels = torch.tensor([k / 100 for k in NUCLEUS_LEVELS], dtype=torch.float64, device=probs.device)
    lengths = torch.searchsorted(cum, levels[None, :].expand(cum.shape[0], -1).contiguous()) + 1
    return idx, lengths.clamp_max(V)


def tie_rtol(dtype: torch.dtype) -> float:
    """The relative difference below which two full-model probabilities count as tied: the rounding of an
    evaluation in ``dtype`` (METHOD.md section 4), ``1e-5`` in float32/float64 and ``1e-2`` in
    bfloat16/float16."""
    return 1e-2 if dtype in (torch.bfloat16, torch.float16) else 1e-5


def shared_nucleus(p: torch.Tensor, q: torch.Tensor, tie_rtol: float = 1e-5) -> torch.Tensor:
    """Largest ``k`` of :data:`NUCLEUS_LEVELS` whose nucleus token lists of ``p`` and ``q`` are identical
    (same tokens, same order), 0 if none: ``p [V]``, ``q [B, V]`` -> ``[B]`` int.

    Ties: two tokens whose full-model probabilities agree within ``tie_rtol`` (relative; the evaluation's
    rounding, :func:`tie_rtol`, float32's by default) have no order of their own, so ``q`` may list them
    either way. Without this, float rounding alone swaps tied tail tokens (quantised models even have
    exact ties) and the full graph would not share the 99% nucleus with the model it equals; a wider
    tolerance would hide real swaps."""
    idx_p, len_p = _nucleus(p[None, :])
    # q's ranking matters only up to p's longest nucleus: a list of q's that is longer differs from p's
    m = min(int(len_p.max()) + 1, q.shape[-1])
    idx_q, len_q = _nucleus(q, m)
    idx_p = idx_p[:, :m]
    ranked_p = p[idx_p]  # [1, m]: p's probabilities in p's order
    at_q = p[idx_q]  # [B, m]: p's probabilities of the tokens in q's order
    tied = (at_q - ranked_p).abs() <= tie_rtol * ranked_p
    mismatch = (idx_q != idx_p) & ~tied
    # Length of the common prefix of the two rankings (m where they agree throughout).
    prefix = torch.where(mismatch.any(-1), mismatch.int().argmax(-1), torch.full_like(len_q[:, 0], m))
    same = (len_q == len_p) & (len_p <= prefix[:, None])  # [B, K]
    levels = torch.tensor(NUCLEUS_LEVELS, device=q.device)
    return torch.where(same, levels[None, :], torch.zeros_like(levels)[None, :]).amax(-1)
