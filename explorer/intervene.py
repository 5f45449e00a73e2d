"""Batched zero-ablation with recomputation (METHOD.md sections 4-5).

Nested subgraphs need no stored masks: each edge keeps its rank in an edge order, and a batch element
keeps edge ``e`` when ``rank[e] < n_keep``. A batch holds any mix of:

- trace strata (order 0, the greedy order);
- inverse controls (order 0, ``invert``: drop the first ``n_keep`` attention and MLP edges, keep the rest
  and every residual edge);
- random controls (order 1, a random connected order; every residual edge kept);

each in ablation mode ``all`` or ``attention-kept`` (every attention probability kept).

A removed MLP edge's term is multiplied by 0, so it need not be computed: a batch's MLPs run on the rows
(batch element, token) whose MLP edge it keeps only (:attr:`BatchColumns.mlp_rows`), the other rows' terms
are 0. Most subgraphs keep few MLP edges (a small stratum) or drop few (its inverse control): about a
third of a trace's MLP rows are computed (bench/RESULTS.md), and the MLPs are most of a layer's FLOPs.
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
    edges get rank ``E``. ``table [O, n_ids]``: the four are its views (ranks made by :meth:`empty`).
    """

    attention: torch.Tensor
    residual_attn: torch.Tensor
    residual_mlp: torch.Tensor
    mlp: torch.Tensor
    table: torch.Tensor | None = None  # [O, n_ids]: what the four are views of, when made here

    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.attention, self.residual_attn, self.residual_mlp, self.mlp

    @staticmethod
    def dtype_for(layout: EdgeLayout) -> torch.dtype:
        return torch.int32 if layout.n_edges < torch.iinfo(torch.int32).max else torch.int64

    @classmethod
    def nbytes_for(cls, layout: EdgeLayout, n_orders: int) -> int:
        """The bytes of the ranks of ``n_orders`` orders of ``layout``'s graph."""
        return n_orders * layout.n_ids * cls.dtype_for(layout).itemsize

    @classmethod
    def empty(cls, layout: EdgeLayout, n_orders: int, device) -> EdgeRanks:
        """Ranks of ``n_orders`` orders with no edge placed yet (every id at rank ``E``): :meth:`fill` places
        them. A subgraph of an order's first ``n`` edges is read right once they are placed: every other
        edge has a rank of at least ``n``."""
        L, H, T = layout.n_layers, layout.n_heads, layout.n_tokens
        ranks = torch.full((n_orders, layout.n_ids), layout.n_edges, dtype=cls.dtype_for(layout), device=device)
        block = lambda kind: ranks[:, layout.offset(kind) : layout.offset(kind) + L * T].view(-1, L, T)
        return cls(
            attention=ranks[:, : layout.n_attention_ids].view(-1, L, H, T, T),
            residual_attn=block(RESIDUAL_ATTN),
            residual_mlp=block(RESIDUAL_MLP),
            mlp=block(MLP),
            table=ranks,
        )

    def fill(self, index: int, ids: np.ndarray | torch.Tensor, start: int = 0) -> None:
        """Place edges ``ids [K]`` (an array, or a tensor on any device) of order ``index`` at ranks
        ``start .. start + K - 1``."""
        assert self.table is not None, "ranks made by EdgeRanks.empty"
        table = self.table
        ids = ids.to(table.device) if torch.is_tensor(ids) else torch.tensor(ids, device=table.device)
        table[index, ids] = torch.arange(start, start + len(ids), device=table.device, dtype=table.dtype)

    @classmethod
    def from_orders(cls, layout: EdgeLayout, orders: Sequence[np.ndarray | torch.Tensor], device) -> EdgeRanks:
        """``orders``: edge ids (arrays, or tensors already on ``device``), each a permutation of the
        graph's ``E`` edges."""
        ranks = cls.empty(layout, len(orders), device)
        for i, order in enumerate(orders):
            ranks.fill(i, order)
        return ranks


@dataclass(frozen=True)
class BatchColumns:
    """A batch of ``B`` :class:`MaskSpec` on the device, and its structure.

    ``values [4, B]`` (the ranks' dtype): each spec's ``n_keep``, ``invert``, ``keep_attention`` and
    ``keep_residual``, sent in one copy; :meth:`load` refills it in place for another batch of the same
    :attr:`structure` (a captured pass reads it from the same address). ``groups``: ``(order, batch
    positions using it)``, positions ``None`` when the whole batch uses one order. ``all_attention`` /
    ``all_residual``: every spec keeps every attention / residual edge (those masks are skipped).
    ``mlp_rows``: how many rows of ``B * T`` each layer's MLP is computed on (at least as many as it
    keeps), ``None`` for all of them; part of the structure. ``exact``: a pass that is not recorded, so
    its shapes need not repeat: each layer's MLP on its own rows, the attention's query and output
    projections on the rows with a kept attention edge (:meth:`RankMasks.attention_rows`).
    """

    values: torch.Tensor
    groups: tuple[tuple[int, torch.Tensor | None], ...]
    all_attention: bool
    all_residual: bool
    structure: tuple
    mlp_rows: tuple[int, ...] | None = None
    exact: bool = False

    @staticmethod
    def structure_of(specs: Sequence[MaskSpec]) -> tuple:
        """What a batch's masks are computed with, apart from its values: batches of one structure run
        the same kernels on the same shapes."""
        orders = sorted({s.order_index for s in specs})
        where = tuple((o, tuple(b for b, s in enumerate(specs) if s.order_index == o)) for o in orders)
        return (
            len(specs),
            all(s.keep_attention for s in specs),
            all(s.keep_residual for s in specs),
            where if len(orders) > 1 else ((orders[0], None),),
        )

    @staticmethod
    def _rows(specs: Sequence[MaskSpec]) -> list[list[int]]:
        names = ("n_keep", "invert", "keep_attention", "keep_residual")
        return [[int(getattr(s, name)) for s in specs] for name in names]

    @classmethod
    def structure_for(
        cls, specs: Sequence[MaskSpec], n_tokens: int, mlp_rows: np.ndarray | None, exact: bool = False
    ) -> tuple:
        """:meth:`structure_of` and the MLP rows (:attr:`mlp_rows`) of ``specs`` on ``n_tokens`` tokens;
        ``mlp_rows [B, L]``: the rows of each layer whose MLP edge each spec keeps (:func:`kept_mlp_rows`),
        for MLPs computed on those rows only; ``None``: on every row. ``exact``: each layer on as many
        rows as it keeps; else every layer on the most that one keeps, rounded up (:func:`row_capacity`),
        so that batches of one shape mostly share a structure (a recorded pass's)."""
        return cls.structure_of(specs) + (mlp_capacities(mlp_rows, len(specs) * n_tokens, exact),)

    @classmethod
    def of(
        cls, specs: Sequence[MaskSpec], ranks: EdgeRanks, mlp_rows: np.ndarray | None = None, exact: bool = False
    ) -> BatchColumns:
        """The columns of ``specs`` on ``ranks``' device (``mlp_rows``, ``exact`` as :meth:`structure_for`)."""
        structure = cls.structure_for(specs, ranks.mlp.shape[2], mlp_rows, exact)
        _, all_attention, all_residual, where, rows = structure
        device = ranks.mlp.device
        groups = tuple((o, None if at is None else torch.tensor(at, device=device)) for o, at in where)
        values = torch.tensor(cls._rows(specs), dtype=ranks.mlp.dtype, device=device)
        return cls(values, groups, all_attention, all_residual, structure, rows, exact)

    def load(self, specs: Sequence[MaskSpec], structure: tuple) -> None:
        """Refill :attr:`values` in place with ``specs``, whose :meth:`structure_for` is ``structure``: this
        batch's."""
        if structure != self.structure:
            raise ValueError("the specs' structure differs from this batch's")
        self.values.copy_(torch.tensor(self._rows(specs), dtype=self.values.dtype))


def kept_mlp_rows(ranks: EdgeRanks, specs: Sequence[MaskSpec]) -> np.ndarray:
    """``[len(specs), L]``: the rows of each layer whose MLP edge each spec keeps, counted on the device
    (this waits for it; :mod:`explorer.tally` counts them on the host as an order is placed)."""
    columns = BatchColumns.of(specs, ranks)
    return keep_below(ranks.mlp, columns, True).sum(2).T.cpu().numpy()


ROW_STEPS = 16
"""A recorded batch's MLP rows are computed in multiples of ``1 / ROW_STEPS`` of its ``B * T`` rows, so
that batches of one shape mostly share a :attr:`BatchColumns.structure` (and a recorded pass)."""


def row_capacity(most: int, n_rows: int) -> int | None:
    """How many of ``n_rows`` rows to compute a layer's MLP on when a layer keeps at most ``most``: that,
    rounded up to a step of :data:`ROW_STEPS`, or ``None`` (every row) where that is all of them."""
    step = -(-n_rows // ROW_STEPS)
    rows = max(1, -(-most // step)) * step
    return None if rows >= n_rows else rows


def mlp_capacities(mlp_rows: np.ndarray | None, n_rows: int, exact: bool) -> tuple[int, ...] | None:
    """How many of a batch's ``n_rows`` rows each layer's MLP is computed on (:attr:`BatchColumns.mlp_rows`),
    from ``mlp_rows [B, L]``, the rows each spec keeps per layer: each layer's total where ``exact``, else
    the largest, rounded up (:func:`row_capacity`) for every layer; ``None`` (every row, the keeps as
    multipliers) where ``mlp_rows`` is ``None`` or that is every row."""
    if mlp_rows is None:
        return None
    per_layer = mlp_rows.sum(0)
    if exact:
        return None if per_layer.min() >= n_rows else tuple(int(n) for n in per_layer)
    rows = row_capacity(int(per_layer.max()), n_rows)
    return None if rows is None else (rows,) * len(per_layer)


def keep_below(
    table: torch.Tensor, columns: BatchColumns, invertible: bool, layers: slice = slice(None)
) -> torch.Tensor:
    """``table [O, L, ...]`` (ranks) -> whether each of ``columns``' ``B`` subgraphs keeps each edge,
    ``[k, B, ...]`` bool for the ``k`` layers of ``layers``: ``rank < n_keep``, xor ``invert`` where the
    kind is ``invertible``."""
    n_keep = columns.values[0]
    parts = table[:, layers]
    rest = parts.shape[2:]
    batch = (1, -1) + (1,) * len(rest)
    if columns.groups[0][1] is None:
        keep = parts[columns.groups[0][0]].unsqueeze(1) < n_keep.view(batch)
    else:
        keep = torch.empty((parts.shape[1], len(n_keep)) + rest, dtype=torch.bool, device=parts.device)
        for order, batch_ids in columns.groups:
            keep[:, batch_ids] = parts[order].unsqueeze(1) < n_keep[batch_ids].view(batch)
    if invertible:
        keep ^= columns.values[1].bool().view(batch)
    return keep


def kept_rows(keep: torch.Tensor, capacities: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``keep [L, N]`` (layer ``l`` keeping at most ``capacities[l]`` rows) -> per layer ``(read, write)``,
    each ``[capacities[l]]`` int64: its kept rows in ascending order, then padding (``read``: row 0;
    ``write``: ``N``, a row past the end). Fixed shapes, no host sync: a captured pass can build them. Every
    layer's at once (a few kernels for the model, not a few per layer): the rows of ``[L, max + 1]`` tables,
    whose last column takes the rows a layer does not keep."""
    L, N = keep.shape
    width = max(capacities)
    slot = torch.where(keep, keep.cumsum(1) - 1, width)
    row = torch.arange(N, device=keep.device).expand(L, N)
    read = torch.zeros((L, width + 1), dtype=torch.long, device=keep.device).scatter_(1, slot, row)
    write = torch.full((L, width + 1), N, dtype=torch.long, device=keep.device).scatter_(1, slot, row)
    return [(read[layer, :capacity], write[layer, :capacity]) for layer, capacity in enumerate(capacities)]


class RankMasks:
    """:class:`explorer.models.hooks.EdgeMasks` for a batch of :class:`MaskSpec`, derived from
    :class:`EdgeRanks` as ``rank < n_keep`` (no mask is stored for the whole graph).

    The residual and MLP keeps of every layer are computed at once (``[L, B, T, 1]``), the attention keeps
    for as many layers at a time as fit in ``block_bytes`` (``[k, B, H, T, T]`` bool; at least one layer), so
    a layer's masks cost a few kernel launches for the whole model rather than a few per layer. Every
    mask is exactly 0 or 1, so the block size changes no result. Where the batch's
    :attr:`BatchColumns.mlp_rows` is set, the MLP keeps come as the kept rows (:meth:`mlp_rows`) instead
    of multipliers. ``batch``: the specs, or their
    :class:`BatchColumns` already on the device. Nothing here waits for the device or copies from the
    host once the columns are there: a pass that builds its masks can be captured as a CUDA graph.
    """

    def __init__(
        self,
        ranks: EdgeRanks,
        batch: Sequence[MaskSpec] | BatchColumns,
        dtype: torch.dtype,
        block_bytes: int = 1 << 29,
    ):
        columns = batch if isinstance(batch, BatchColumns) else BatchColumns.of(batch, ranks)
        self.ranks = ranks
        self.dtype = dtype
        self.columns = columns
        self.n_keep = columns.values[0]
        self.keep_attention = columns.values[2].bool()
        self.all_attention = columns.all_attention
        if columns.all_residual:
            self._residual_attn = self._residual_mlp = None
        else:
            keep_residual = columns.values[3].bool()
            self._residual_attn = self._keep(ranks.residual_attn, slice(None), False, keep_residual)[..., None]
            self._residual_mlp = self._keep(ranks.residual_mlp, slice(None), False, keep_residual)[..., None]
        keep_mlp = keep_below(ranks.mlp, columns, True)  # [L, B, T]
        self._mlp = self._rows = None
        if columns.mlp_rows is None:
            self._mlp = keep_mlp.to(dtype)[..., None]
        else:
            self._rows = kept_rows(keep_mlp.flatten(1), columns.mlp_rows)
        L, H, T = ranks.attention.shape[1:4]
        per_layer = len(self.n_keep) * H * T * T  # bool
        self.block_layers = max(1, min(L, block_bytes // per_layer))
        self._block: tuple[int, torch.Tensor] | None = None  # (first layer, [k, B, H, T, T])
        self._attention_rows: tuple[int, tuple[torch.Tensor, torch.Tensor] | None] | None = None

    def _keep(
        self, table: torch.Tensor, layers: slice, invertible: bool, always: torch.Tensor | None, as_bool: bool = False
    ) -> torch.Tensor:
        """``table [O, L, ...]`` -> keep-multipliers ``[k, B, ...]`` for the ``k`` layers of ``layers``, in
        the activations' dtype or, ``as_bool``, as bool (a product promotes it to exactly 0 or 1)."""
        keep = keep_below(table, self.columns, invertible, layers)
        if always is not None:
            keep |= always.view((1, -1) + (1,) * (keep.dim() - 2))
        return keep if as_bool else keep.to(self.dtype)

    def attention(self, layer: int) -> torch.Tensor | None:
        if self.all_attention:
            return None
        if self._block is None or not 0 <= layer - self._block[0] < len(self._block[1]):
            self._block = None  # free the previous block first
            layers = slice(layer, layer + self.block_layers)
            self._block = (layer, self._keep(self.ranks.attention, layers, True, self.keep_attention, as_bool=True))
        return self._block[1][layer - self._block[0]]

    def residual_attn(self, layer: int) -> torch.Tensor | None:
        return None if self._residual_attn is None else self._residual_attn[layer]

    def residual_mlp(self, layer: int) -> torch.Tensor | None:
        return None if self._residual_mlp is None else self._residual_mlp[layer]

    def mlp(self, layer: int) -> torch.Tensor | None:
        return None if self._mlp is None else self._mlp[layer]

    def mlp_rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        return None if self._rows is None else self._rows[layer]

    def attention_rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """In an :attr:`BatchColumns.exact` batch, the rows of ``B * T`` with an attention edge kept in
        ``layer`` (by any head, from any token), ``(rows, rows)``; ``None`` where that is every row, or the
        batch is not exact (finding them waits for the device)."""
        if not self.columns.exact or self.all_attention:
            return None
        if self._attention_rows is None or self._attention_rows[0] != layer:
            keep = self.attention(layer)  # [B, H, T, T]
            assert keep is not None
            rows = keep.amax((1, 3)).flatten().nonzero().squeeze(1)
            self._attention_rows = (layer, None if len(rows) == keep.shape[0] * keep.shape[2] else (rows, rows))
        return self._attention_rows[1]


def shapes_repeat(device: torch.device) -> bool:
    """Whether the masked passes on ``device`` keep shapes that repeat: on CUDA, where passes are recorded
    (:mod:`explorer.pass_graphs`), an eager pass keeps a recorded one's shapes, so that recording changes
    no result; elsewhere each layer runs on its own rows (:attr:`BatchColumns.exact`)."""
    return device.type == "cuda"


@torch.no_grad()
def masked_logits(
    inst: Instrumentation,
    input_ids: torch.Tensor,
    ranks: EdgeRanks,
    specs: list[MaskSpec],
    batch_size: int,
    positions: list[int] | None = None,
    mlp_rows: np.ndarray | None = None,
) -> torch.Tensor:
    """Logits of each subgraph in ``specs`` at its position: ``input_ids [1, T]`` -> ``[len(specs), V]``
    float32, evaluated ``batch_size`` subgraphs per forward pass. ``positions`` (one per spec, default the
    last, ``T - 1``): where each subgraph's output node is; the model is causal, so the tokens after a
    position change nothing there. ``mlp_rows [len(specs), L]``: the rows of each layer whose MLP edge
    each spec keeps, where the caller knows them (:meth:`BatchColumns.of`).

    Passes at the last position go through ``inst.replay`` when it is set (CUDA graphs of repeated
    shapes, :mod:`explorer.pass_graphs`), which gives these same logits bit for bit."""
    if positions is None and inst.replay is not None:
        replayed = inst.replay.logits(input_ids, ranks, specs, batch_size, mlp_rows)
        if replayed is not None:
            return replayed
    dtype = next(inst.adapter.model.parameters()).dtype
    out = []
    for start in range(0, len(specs), batch_size):
        part = slice(start, start + batch_size)
        at = None if positions is None else positions[part]
        counted = None if mlp_rows is None else mlp_rows[part]
        columns = BatchColumns.of(specs[part], ranks, counted, exact=not shapes_repeat(ranks.mlp.device))
        out.append(masked_pass(inst, input_ids, RankMasks(ranks, columns, dtype), at))
    return torch.cat(out)


def masked_pass(
    inst: Instrumentation, input_ids: torch.Tensor, masks: RankMasks, positions: list[int] | None = None
) -> torch.Tensor:
    """One forward pass of ``input_ids [1, T]`` for each of ``masks``' ``B`` subgraphs: ``[B, V]`` float32
    logits at ``positions`` (one per subgraph; default the last)."""
    model = inst.adapter.model
    batch = len(masks.n_keep)
    ids = input_ids.expand(batch, -1)
    inst.masks = masks
    try:
        if positions is None:
            return model(input_ids=ids, logits_to_keep=1, use_cache=False).logits[:, -1].float()
        kept = sorted(set(positions))
        logits = model(input_ids=ids, logits_to_keep=torch.tensor(kept, device=ids.device), use_cache=False).logits
        column = torch.tensor([kept.index(t) for t in positions], device=logits.device)
        return logits[torch.arange(batch, device=logits.device), column].float()
    finally:
        inst.masks = None
