"""Metrics of a subgraph's next-token distribution and the density of one input (METHOD.md 4 and 6).

``p [V]`` is the full model's distribution at the last position, ``q [B, V]`` a batch of subgraphs'.
Functions take and return tensors on the model's device, so one transfer brings all results to the host.
"""

from __future__ import annotations

import numpy as np
import torch

NUCLEUS_LEVELS: tuple[int, ...] = (99, 90, 80, 70, 60, 50, 40, 30, 20, 10, 5, 1)
RECOVERY_LEVELS: tuple[int, ...] = (1, 10, 50, 90)
DENSITY_AXES = ("log", "linear")


def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_v |p_v - q_v|``: ``p [V]``, ``q [B, V]`` -> ``[B]``."""
    return 0.5 * (q - p[None, :]).abs().sum(-1)


def entropy(q: torch.Tensor) -> torch.Tensor:
    """Entropy in nats: ``[B, V]`` -> ``[B]`` (``0 log 0 = 0``)."""
    return -(q * torch.where(q > 0, q.log(), torch.zeros_like(q))).sum(-1)


def _nucleus(probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens by descending probability (stable) ``[B, V]`` and, for each level ``k`` of
    :data:`NUCLEUS_LEVELS`, the length of the shortest prefix whose mass reaches ``k``% ``[B, K]``."""
    sorted_p, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = sorted_p.double().cumsum(-1)
    levels = torch.tensor([k / 100 for k in NUCLEUS_LEVELS], dtype=torch.float64, device=probs.device)
    lengths = torch.searchsorted(cum, levels[None, :].expand(cum.shape[0], -1).contiguous()) + 1
    return idx, lengths.clamp_max(probs.shape[-1])


TIE_RTOL = 1e-3


def shared_nucleus(p: torch.Tensor, q: torch.Tensor, tie_rtol: float = TIE_RTOL) -> torch.Tensor:
    """Largest ``k`` of :data:`NUCLEUS_LEVELS` whose nucleus token lists of ``p`` and ``q`` are identical
    (same tokens, same order), 0 if none: ``p [V]``, ``q [B, V]`` -> ``[B]`` int.

    Ties: two tokens whose full-model probabilities agree within ``tie_rtol`` (relative) have no order
    of their own, so ``q`` may list them either way. Without this, float rounding alone swaps near-tied
    tail tokens (quantised models even have exact ties) and the full graph would not share the 99%
    nucleus with the model it equals."""
    idx_p, len_p = _nucleus(p[None, :])
    idx_q, len_q = _nucleus(q)
    ranked_p = p[idx_p]  # [1, V]: p's probabilities in p's order
    at_q = p[idx_q]  # [B, V]: p's probabilities of the tokens in q's order
    tied = (at_q - ranked_p).abs() <= tie_rtol * ranked_p
    mismatch = (idx_q != idx_p) & ~tied
    # Length of the common prefix of the two rankings.
    prefix = torch.where(mismatch.any(-1), mismatch.int().argmax(-1), torch.full_like(len_q[:, 0], q.shape[-1]))
    same = (len_q == len_p) & (len_p <= prefix[:, None])  # [B, K]
    levels = torch.tensor(NUCLEUS_LEVELS, device=q.device)
    return torch.where(same, levels[None, :], torch.zeros_like(levels)[None, :]).amax(-1)


def density(sizes, tv, axis: str = "log") -> float:
    """``integral TV(s) d log10(s)`` (``axis="log"``, default) or ``d s`` (``"linear"``, the withdrawn
    paper's variant), trapezoid rule over the evaluated sizes, ``s`` clipped to ``[1e-8, 1]``."""
    s = np.clip(np.asarray(sizes, dtype=np.float64), 1e-8, 1.0)
    y = np.asarray(tv, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    x = np.log10(s[order]) if axis == "log" else s[order]
    if axis not in DENSITY_AXES:
        raise ValueError(f"density axis must be one of {DENSITY_AXES}")
    return float(np.trapezoid(y[order], x)) if len(x) > 1 else 0.0


def recovery_sizes(sizes, nucleus, levels=RECOVERY_LEVELS) -> dict[int, float | None]:
    """The smallest size whose shared nucleus reaches each level (``None`` if none does)."""
    pairs = sorted(zip(sizes, nucleus))
    return {k: next((s for s, n in pairs if n >= k), None) for k in levels}
