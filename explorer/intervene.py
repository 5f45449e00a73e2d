"""Batched zero-ablation with recomputation (METHOD.md sections 4-5).

Nested subgraphs need no stored masks: each edge keeps its rank in an edge order, and a batch element
keeps edge ``e`` when ``rank[e] < n_keep``. A batch holds any mix of:

- trace strata (order 0, the greedy order);
- inverse controls (order 0, ``invert``: drop the first ``n_keep`` attention and MLP edges, keep the rest
  and every residual edge);
- random controls (order 1, a random connected order; every residual edge kept);

each in ablation mode ``all`` or ``attention-kept`` (every attention probability kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from explorer.edges import MLP, RESIDUAL_ATTN, RESIDUAL_MLP, EdgeLayout
from explorer.models.hooks import Instrumentation


@dataclass(frozen=True)
class MaskSpec:
    """One subgraph of a batch: the first ``n_keep`` edges of edge order ``order_index`` (0: the greedy
    order, 1: the random control's; an index into :class:`EdgeRanks`), or all but them (``invert``), with
    every residual edge (``keep_residual``) or every attention probability (``keep_attention``) kept."""

    n_keep: int
    order_index: int = 0
    invert: bool = False
    keep_residual: bool = False
    keep_attention: bool = False


@dataclass
class EdgeRanks:
    """Rank of every edge id in one or more edge orders (``O`` orders), on the model's device.

    ``attention [O, L, H, T, T]``, ``residual_attn``, ``residual_mlp``, ``mlp [O, L, T]``: int32 while
    ``E`` fits (8 bytes per id and order fewer than int64, which larger graphs use). Ids that are not
    edges get rank ``E``.
    """

    attention: torch.Tensor
    residual_attn: torch.Tensor
    residual_mlp: torch.Tensor
    mlp: torch.Tensor

    @classmethod
    def from_orders(cls, layout: EdgeLayout, orders: Sequence[np.ndarray | torch.Tensor], device) -> EdgeRanks:
        """``orders``: edge ids (arrays, or tensors already on ``device``), each a permutation of the
        graph's ``E`` edges."""
        L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
        dtype = torch.int32 if layout.n_edges < torch.iinfo(torch.int32).max else torch.int64
        ranks = torch.full((len(orders), layout.n_ids), layout.n_edges, dtype=dtype, device=device)
        for i, order in enumerate(orders):
            ids = order.to(device) if torch.is_tensor(order) else torch.tensor(order, device=device)
            ranks[i, ids] = torch.arange(len(order), device=device, dtype=dtype)
        block = lambda kind: ranks[:, layout.offset(kind) : layout.offset(kind) + L * T].view(-1, L, T)
        return cls(
            attention=ranks[:, : layout.n_attention_ids].view(-1, L, H, T, T),
            residual_attn=block(RESIDUAL_ATTN),
            residual_mlp=block(RESIDUAL_MLP),
            mlp=block(MLP),
        )


class RankMasks:
    """:class:`explorer.models.hooks.EdgeMasks` for a batch of :class:`MaskSpec`, derived from
    :class:`EdgeRanks` as ``rank < n_keep`` (no mask is stored for the whole graph).

    The residual and MLP keeps of every layer are computed at once (``[L, B, T, 1]``), the attention keeps
    for as many layers at a time as fit in ``block_bytes`` (``[k, B, H, T, T]``), so a layer's masks cost
    a few kernel launches for the whole model rather than a few per layer.
    """

    def __init__(self, ranks: EdgeRanks, specs: list[MaskSpec], dtype: torch.dtype, block_bytes: int = 1 << 29):
        dev = ranks.attention.device
        self.ranks = ranks
        self.dtype = dtype
        column = lambda name: torch.tensor([getattr(s, name) for s in specs], device=dev)
        self.n_keep = column("n_keep").to(ranks.attention.dtype)
        self.invert = column("invert")
        self.keep_attention = column("keep_attention")
        orders = sorted({s.order_index for s in specs})
        # (order, batch positions using it); None when the whole batch uses one order
        self.groups = [
            (
                o,
                None
                if len(orders) == 1
                else torch.tensor([b for b, s in enumerate(specs) if s.order_index == o], device=dev),
            )
            for o in orders
        ]
        self.all_attention = all(s.keep_attention for s in specs)
        every_layer = slice(None)
        if all(s.keep_residual for s in specs):
            self._residual_attn = self._residual_mlp = None
        else:
            keep_residual = column("keep_residual")
            self._residual_attn = self._keep(ranks.residual_attn, every_layer, False, keep_residual)[..., None]
            self._residual_mlp = self._keep(ranks.residual_mlp, every_layer, False, keep_residual)[..., None]
        self._mlp = self._keep(ranks.mlp, every_layer, True, None)[..., None]
        L, H, T = ranks.attention.shape[1:4]
        per_layer = len(specs) * H * T * T * (torch.finfo(dtype).bits // 8 + 1)
        self.block_layers = max(1, min(L, block_bytes // per_layer))
        self._block: tuple[int, torch.Tensor] | None = None  # (first layer, [k, B, H, T, T])

    def _keep(self, table: torch.Tensor, layers: slice, invertible: bool, always: torch.Tensor | None) -> torch.Tensor:
        """``table [O, L, ...]`` -> keep-multipliers ``[k, B, ...]`` for the ``k`` layers of ``layers``."""
        parts = table[:, layers]
        rest = parts.shape[2:]
        batch = (1, -1) + (1,) * len(rest)
        if self.groups[0][1] is None:
            keep = parts[self.groups[0][0]].unsqueeze(1) < self.n_keep.view(batch)
        else:
            keep = torch.empty((parts.shape[1], len(self.n_keep)) + rest, dtype=torch.bool, device=parts.device)
            for order, batch_ids in self.groups:
                keep[:, batch_ids] = parts[order].unsqueeze(1) < self.n_keep[batch_ids].view(batch)
        if invertible:
            keep ^= self.invert.view(batch)
        if always is not None:
            keep |= always.view(batch)
        return keep.to(self.dtype)

    def attention(self, layer: int) -> torch.Tensor | None:
        if self.all_attention:
            return None
        if self._block is None or not 0 <= layer - self._block[0] < len(self._block[1]):
            self._block = None  # free the previous block first
            layers = slice(layer, layer + self.block_layers)
            self._block = (layer, self._keep(self.ranks.attention, layers, True, self.keep_attention))
        return self._block[1][layer - self._block[0]]

    def residual_attn(self, layer: int) -> torch.Tensor | None:
        return None if self._residual_attn is None else self._residual_attn[layer]

    def residual_mlp(self, layer: int) -> torch.Tensor | None:
        return None if self._residual_mlp is None else self._residual_mlp[layer]

    def mlp(self, layer: int) -> torch.Tensor | None:
        return self._mlp[layer]


@torch.no_grad()
def masked_logits(
    inst: Instrumentation,
    input_ids: torch.Tensor,
    ranks: EdgeRanks,
    specs: list[MaskSpec],
    batch_size: int,
    positions: list[int] | None = None,
) -> torch.Tensor:
    """Logits of each subgraph in ``specs`` at its position: ``input_ids [1, T]`` -> ``[len(specs), V]``
    float32, evaluated ``batch_size`` subgraphs per forward pass. ``positions`` (one per spec, default the
    last, ``T - 1``): where each subgraph's output node is; the model is causal, so the tokens after a
    position change nothing there."""
    model = inst.adapter.model
    dtype = next(model.parameters()).dtype
    out = []
    try:
        for start in range(0, len(specs), batch_size):
            chunk = specs[start : start + batch_size]
            inst.masks = RankMasks(ranks, chunk, dtype)
            ids = input_ids.expand(len(chunk), -1)
            if positions is None:
                out.append(model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[:, -1].float())
                continue
            at = positions[start : start + batch_size]
            kept = sorted(set(at))
            logits = model(input_ids=ids, logits_to_keep=torch.tensor(kept, device=ids.device), use_cache=False).logits
            column = torch.tensor([kept.index(t) for t in at], device=logits.device)
            out.append(logits[torch.arange(len(chunk), device=logits.device), column].float())
    finally:
        inst.masks = None
    return torch.cat(out)
