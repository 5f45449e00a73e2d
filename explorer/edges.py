"""The edge ids of a token-level graph (METHOD.md section 1), from its shape alone: :class:`EdgeLayout`
(ids, kinds, components, the CSR in push order), the edge kinds and their names, and the count of a
trace's edges per component and per kind at each size (:func:`stratum_counts`).

Pure arithmetic on ``(L, H, T)``: numpy for arrays; torch, imported only when a method is given a tensor
or a device, for ids on the model's device. The result types (:mod:`explorer.results`) hold a layout and
load without torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch

ATTENTION, RESIDUAL_ATTN, RESIDUAL_MLP, MLP = 0, 1, 2, 3
"""Edge kinds: an attention edge, the residual edge into an attention node and into an MLP node, an MLP
edge. Ids of each kind form one block of :class:`EdgeLayout`."""

KIND_NAMES = {ATTENTION: "attention", RESIDUAL_ATTN: "residual", RESIDUAL_MLP: "residual", MLP: "mlp"}
"""The three kinds users see: attention, MLP and residual edges."""


def _is_tensor(x) -> bool:
    return type(x).__module__.startswith("torch")


@dataclass(frozen=True)
class EdgeLayout:
    """Global edge ids for ``L`` layers, ``H`` heads and ``T`` tokens.

    Attention edge ``(l, h, s -> t)`` has id ``((l*H + h)*T + t)*T + s``; then come three ``[L, T]``
    blocks: residual edges into attention nodes, residual edges into MLP nodes, MLP edges (``l*T + t``
    within each). Ids with ``s > t``, and edges into last-layer nodes other than the output token's
    (they cannot reach the output node), are not edges. Node ``(g, t)`` has id ``g*T + t``.
    """

    n_layers: int
    n_heads: int
    n_tokens: int
    parallel: bool = False

    @property
    def n_attention_ids(self) -> int:
        return self.n_layers * self.n_heads * self.n_tokens * self.n_tokens

    def offset(self, kind: int) -> int:
        """First id of block ``kind`` (ATTENTION, RESIDUAL_ATTN, RESIDUAL_MLP or MLP)."""
        return 0 if kind == ATTENTION else self.n_attention_ids + (kind - 1) * self.n_layers * self.n_tokens

    @property
    def n_ids(self) -> int:
        return self.n_attention_ids + 3 * self.n_layers * self.n_tokens

    @property
    def n_nodes(self) -> int:
        return (2 * self.n_layers + 1) * self.n_tokens

    def node_levels(self, device) -> torch.Tensor:
        """``[N]``: each node's distance in graph layers from the last layer, ``2L - g`` for node ``(g, t)``;
        every edge goes to a smaller level (:func:`explorer.chain_search.chain_order`)."""
        import torch

        return 2 * self.n_layers - torch.arange(self.n_nodes, device=device) // self.n_tokens

    @property
    def output_node(self) -> int:
        return 2 * self.n_layers * self.n_tokens + self.n_tokens - 1

    @property
    def n_edges(self) -> int:
        """``E``: edges from which the output node can be reached."""
        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        per_layer = H * T * (T + 1) // 2 + 3 * T
        return (L - 1) * per_layer + H * T + 3

    def decode(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Split edge ids into ``kind``, ``layer``, ``head`` (-1 if none), ``target`` t, ``source`` s,
        and the ``src_node`` / ``dst_node`` ids."""
        ids = np.asarray(ids, dtype=np.int64)
        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        is_attn = ids < self.n_attention_ids
        rest = np.where(is_attn, 0, ids - self.n_attention_ids)
        kind = np.where(is_attn, ATTENTION, 1 + rest // (L * T))
        lt = rest % (L * T)
        layer = np.where(is_attn, ids // (H * T * T), lt // T)
        head = np.where(is_attn, (ids // (T * T)) % H, -1)
        target = np.where(is_attn, (ids // T) % T, lt % T)
        source = np.where(is_attn, ids % T, target)
        dst_g = np.where((kind == ATTENTION) | (kind == RESIDUAL_ATTN), 2 * layer + 1, 2 * layer + 2)
        src_g = np.where(kind == RESIDUAL_MLP, 2 * layer + 1, 2 * layer)
        if not self.parallel:
            src_g = np.where(kind == MLP, 2 * layer + 1, src_g)
        return {
            "kind": kind,
            "layer": layer,
            "head": head,
            "target": target,
            "source": source,
            "src_node": src_g * T + source,
            "dst_node": dst_g * T + target,
        }

    @overload
    def kind(self, ids: torch.Tensor) -> torch.Tensor: ...
    @overload
    def kind(self, ids: npt.ArrayLike) -> np.ndarray: ...
    def kind(self, ids):
        """ATTENTION, RESIDUAL_ATTN, RESIDUAL_MLP or MLP per edge id (cheaper than :meth:`decode`).
        ``ids`` a tensor (returns a tensor on its device) or anything else (returns a numpy array)."""
        if _is_tensor(ids):
            rest = ids.long() - self.n_attention_ids
            return (1 + rest.div(self.n_layers * self.n_tokens, rounding_mode="floor")).clamp_min(ATTENTION)
        rest = np.asarray(ids, dtype=np.int64) - self.n_attention_ids
        return np.where(rest < 0, ATTENTION, 1 + rest // (self.n_layers * self.n_tokens))

    @overload
    def component(self, ids: torch.Tensor) -> torch.Tensor: ...
    @overload
    def component(self, ids: npt.ArrayLike) -> np.ndarray: ...
    def component(self, ids):
        """Component index per edge: ``l*H + h`` for attention heads, ``L*H + l`` for MLPs, -1 for
        residual edges. Names are :meth:`component_names`. Tensors or arrays, as :meth:`kind`."""
        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        kind = self.kind(ids)
        if _is_tensor(ids):
            import torch

            t = ids.long()
            comp = torch.where(kind == ATTENTION, t // (T * T), -1)
            return torch.where(kind == MLP, L * H + (t - self.offset(MLP)) // T, comp)
        t = np.asarray(ids, dtype=np.int64)
        comp = np.where(kind == ATTENTION, t // (T * T), -1)
        return np.where(kind == MLP, L * H + (t - self.offset(MLP)) // T, comp)

    def attention_id(self, layer, head, target, source):
        """Id of attention edge ``(layer, head, source -> target)`` (ints or arrays)."""
        return ((layer * self.n_heads + head) * self.n_tokens + target) * self.n_tokens + source

    def block_id(self, kind: int, layer, target):
        """Id of the RESIDUAL_ATTN, RESIDUAL_MLP or MLP edge into token ``target``'s node of ``layer``."""
        return self.offset(kind) + layer * self.n_tokens + target

    def translate(self, ids: torch.Tensor, to: EdgeLayout) -> torch.Tensor:
        """The same edges' ids in layout ``to``, of the same model on at least as many tokens (a prefix's
        edges in the whole text's layout): ``[M]`` int64 tensor -> ``[M]`` on the same device."""
        import torch

        assert (to.n_layers, to.n_heads, to.parallel) == (self.n_layers, self.n_heads, self.parallel)
        assert to.n_tokens >= self.n_tokens
        L, T, U = self.n_layers, self.n_tokens, to.n_tokens
        ids = ids.long()
        is_attn = ids < self.n_attention_ids
        lh, t, s = ids // (T * T), (ids // T) % T, ids % T
        attention = (lh * U + t) * U + s
        rest = (ids - self.n_attention_ids).clamp_min(0)
        block, layer, target = rest // (L * T), (rest % (L * T)) // T, rest % T
        blocks = to.n_attention_ids + block * (L * U) + layer * U + target
        return torch.where(is_attn, attention, blocks)

    def counts_by_kind(self) -> dict[str, int]:
        """The graph's ``E`` edges by kind, from its shape alone: ``H`` per source token into every
        attention node, one residual edge into every node, one MLP edge into every MLP node; in the last
        layer, only the output token's nodes."""
        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        return {
            "attention": (L - 1) * H * T * (T + 1) // 2 + H * T,
            "mlp": (L - 1) * T + 1,
            "residual": 2 * (L - 1) * T + 2,
        }

    @property
    def n_reachable_nodes(self) -> int:
        """Nodes that reach the output: every token's states below the last layer, and the output token's
        two states in the last layer (with the output node itself)."""
        return (2 * self.n_layers - 1) * self.n_tokens + 2

    @property
    def n_components(self) -> int:
        """Heads and MLPs: ``L*H + L`` (the length of :meth:`component_names`)."""
        return self.n_layers * (self.n_heads + 1)

    def component_names(self) -> list[str]:
        """``a{layer}.h{head}`` for every head, then ``m{layer}`` for every MLP."""
        heads = [f"a{l}.h{h}" for l in range(self.n_layers) for h in range(self.n_heads)]
        return heads + [f"m{l}" for l in range(self.n_layers)]

    def csr(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges grouped by target node in push order (residual first, then heads ``h`` and sources
        ``s``), built arithmetically on ``device``: the same for every prompt of this shape.

        Returns ``node_ptr [N+1]`` (:meth:`node_ptr`) and ``src [M]`` (each edge's source node, int32),
        ``M = E``; the edge ids are :meth:`csr_ids`. Built a layer at a time, so the only ``[M]`` array is
        the result.
        """
        import torch

        src = torch.empty(self.n_edges, dtype=torch.int32, device=device)
        for at, layer, part in self._layer_blocks(device):
            src[at : at + len(part.src)] = part.src + 2 * layer * self.n_tokens
        return self.node_ptr(device), src

    def node_ptr(self, device) -> torch.Tensor:
        """``[N+1]`` int64: where each node's in-edges begin in :meth:`csr`."""
        import torch

        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        t = torch.arange(T, device=device)
        deg = torch.zeros(2 * L + 1, T, dtype=torch.long, device=device)  # in-edges of node (g, t)
        deg[1 : 2 * L - 1 : 2] = 1 + H * (t + 1)  # attention nodes: the residual, H heads x t + 1 sources
        deg[2 : 2 * L - 1 : 2] = 2  # MLP nodes: the residual and the MLP
        deg[2 * L - 1, T - 1], deg[2 * L, T - 1] = 1 + H * T, 2  # last layer: the output token's nodes only
        node_ptr = torch.zeros(self.n_nodes + 1, dtype=torch.long, device=device)
        node_ptr[1:] = torch.cumsum(deg.reshape(-1), 0)
        return node_ptr

    def csr_ids(self, device) -> torch.Tensor:
        """``[M]`` int64: the edge id at each position of :meth:`csr`."""
        import torch

        ids = torch.empty(self.n_edges, dtype=torch.long, device=device)
        for at, layer, part in self._layer_blocks(device):
            ids[at : at + len(part.src)] = part.ids + layer * part.id_step
        return ids

    def _layer_blocks(self, device):
        """``(start, layer, part)`` for each run of :meth:`csr`: layer ``l``'s in-edges are layer 0's
        (:class:`_LayerEdges`) with node ids ``2 l T`` and edge ids ``l * id_step`` further on; in the last
        layer, only those into the output token's two nodes."""
        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        attn, mlp = _layer_edges(self, device)
        start = 0
        for layer in range(L - 1):
            for part in (attn, mlp):
                yield start, layer, part
                start += len(part.src)
        yield start, L - 1, attn.tail(1 + H * T)
        yield start + 1 + H * T, L - 1, mlp.tail(2)


@dataclass(frozen=True)
class _LayerEdges:
    """The in-edges of layer 0's attention nodes, or of its MLP nodes, in push order: source node
    ``src``, edge id ``ids`` and ``id_step``, what a layer adds to each id (``[K]`` int64 each)."""

    src: torch.Tensor
    ids: torch.Tensor
    id_step: torch.Tensor

    def tail(self, k: int) -> _LayerEdges:
        """The last ``k`` edges (those into the last token's node)."""
        return _LayerEdges(self.src[-k:], self.ids[-k:], self.id_step[-k:])


def _layer_edges(lay: EdgeLayout, device) -> tuple[_LayerEdges, _LayerEdges]:
    """Layer 0's in-edges: attention nodes ``(1, t)`` (entry ``pos`` of node ``t`` is the residual at 0,
    then head ``h`` and source ``s``), then MLP nodes ``(2, t)`` (the residual, then the MLP, from
    ``(1, t)`` or, parallel, ``(0, t)``)."""
    import torch

    H, T = lay.n_heads, lay.n_tokens
    t = torch.arange(T, device=device)
    deg = 1 + H * (t + 1)
    tt = torch.repeat_interleave(t, deg)
    pos = torch.arange(len(tt), device=device) - (torch.cumsum(deg, 0) - deg)[tt]
    k = (pos - 1).clamp_min(0)
    head, src_t = k // (tt + 1), torch.where(pos == 0, tt, k % (tt + 1))
    residual = pos == 0
    attn = _LayerEdges(
        src=src_t,
        ids=torch.where(residual, lay.offset(RESIDUAL_ATTN) + tt, (head * T + tt) * T + src_t),
        id_step=torch.where(residual, T, H * T * T),
    )
    tm, is_mlp = t.repeat_interleave(2), torch.arange(2, device=device).repeat(T) == 1
    mlp = _LayerEdges(
        src=torch.where(is_mlp & lay.parallel, 0, 1) * T + tm,
        ids=torch.where(is_mlp, lay.offset(MLP), lay.offset(RESIDUAL_MLP)) + tm,
        id_step=torch.full_like(tm, T),
    )
    return attn, mlp


COUNT_STEP = 1 << 26
"""Edges of an order counted at a time by :func:`stratum_counts` (its temporaries are some 50 bytes per
edge: all of a long prompt's at once ran an 8B model out of memory at 2,048 tokens)."""


def stratum_counts(layout: EdgeLayout, order: torch.Tensor, n_keeps: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Among the first ``n`` edges of ``order`` (edge ids, a tensor on any device), for each ascending
    ``n``: edges per component (``a{l}.h{h}`` then ``m{l}``, see :meth:`EdgeLayout.component_names`)
    ``[len(n_keeps), L*H + L]``, and attention, MLP and residual edges ``[len(n_keeps), 3]``. On the
    order's device, ``COUNT_STEP`` edges at a time: each edge goes to the first stratum that holds it,
    then counts accumulate over the strata."""
    import torch

    dev, S, C = order.device, len(n_keeps), layout.n_components
    keeps = torch.tensor(n_keeps, device=dev)
    comps = torch.zeros(S * C, dtype=torch.long, device=dev)
    kinds = torch.zeros(S * 3, dtype=torch.long, device=dev)
    for at in range(0, min(len(order), max(n_keeps, default=0)), COUNT_STEP):
        part = order[at : at + COUNT_STEP]
        first = torch.searchsorted(keeps, torch.arange(at, at + len(part), device=dev), right=True)
        inside = first < S
        kind = layout.kind(part)
        group = torch.where(kind == ATTENTION, 0, torch.where(kind == MLP, 1, 2))
        comp = layout.component(part)
        counted = inside & (comp >= 0)
        comps += torch.bincount((first * C + comp)[counted], minlength=S * C)
        kinds += torch.bincount((first * 3 + group)[inside], minlength=S * 3)
    return comps.view(S, C).cumsum(0).cpu().numpy(), kinds.view(S, 3).cumsum(0).cpu().numpy()
