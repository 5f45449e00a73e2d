"""The token-level computation graph of one prompt (METHOD.md sections 1-2), held in tensors.

Nodes are residual-stream states ``(g, t)``: ``g = 0`` input embeddings, ``g = 2l+1`` after layer ``l``'s
attention, ``g = 2l+2`` after its MLP. Edges are the additive terms of each node:

- into ``(2l+1, t)``: a residual edge from ``(2l, t)`` and one attention edge per head ``h`` and source
  ``s <= t`` from ``(2l, s)`` (``e = A[l,h,t,s] * W_O[l,h] v[l,h,s]``);
- into ``(2l+2, t)``: a residual edge from ``(2l+1, t)`` and an MLP edge from ``(2l+1, t)``, or from
  ``(2l, t)`` in parallel-residual models (GPT-NeoX/Pythia), whose MLP reads the layer input.

Weights are local: the weights into each node sum to 1 (``l1``, ``l2`` or ``ifr``). Only ``H x T``
per-head norms ``|W_O v|`` are needed per layer for ``l1``/``l2`` (``|A * u| = A * |u|``); ``ifr`` builds
the edge vectors block by block. Memory is ``O(L x H x T^2)`` scalars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch

from explorer.edges import EdgeLayout
from explorer.errors import BadSetting
from explorer.models.adapters import Adapter
from explorer.models.hooks import LayerRecord
from explorer.options import WEIGHTINGS


def layout_for(adapter: Adapter, n_tokens: int) -> EdgeLayout:
    """The edge layout of ``adapter``'s model on a prompt of ``n_tokens`` tokens."""
    return EdgeLayout(adapter.n_layers, adapter.n_heads, n_tokens, adapter.parallel_residual)


@dataclass
class TokenGraph:
    """Local edge weights of one prompt's graph (float32, on the model's device).

    ``attention`` ``[L, H, T, T]`` (0 where ``s > t``), ``residual_attn``, ``residual_mlp``, ``mlp``
    ``[L, T]``. Weights into each reachable node sum to 1.
    """

    layout: EdgeLayout
    weighting: str
    attention: torch.Tensor
    residual_attn: torch.Tensor
    residual_mlp: torch.Tensor
    mlp: torch.Tensor

    def weights_of(self, ids: torch.Tensor) -> torch.Tensor:
        """The weights of edges ``ids [K]`` (int64, on the graph's device): ``[K]`` float32, gathered from
        the four blocks in steps of ``STEP`` ids (no ``[n_ids]`` copy of them all)."""
        blocks = [self.attention, self.residual_attn, self.residual_mlp, self.mlp]
        out = torch.empty(len(ids), dtype=torch.float32, device=ids.device)
        for i in range(0, len(ids), STEP):
            at = ids[i : i + STEP]
            w, start = torch.zeros(len(at), dtype=torch.float32, device=ids.device), 0
            for block in blocks:
                flat = block.reshape(-1)
                inside = (at >= start) & (at < start + len(flat))
                w = torch.where(inside, flat[(at - start).clamp(0, len(flat) - 1)].float(), w)
                start += len(flat)
            out[i : i + STEP] = w
        return out

    def search_csr(self) -> SearchCsr:
        """The graph as the greedy search reads it (:class:`SearchCsr`; the edge ids are not kept)."""
        dev = self.attention.device
        return SearchCsr(self.layout, self.layout.node_ptr(dev), self.weights_of(self.layout.csr_ids(dev)))

    def csr(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges grouped by target node in push order (:meth:`EdgeLayout.csr`) with their weights:
        ``node_ptr [N+1]``, ``src [M]``, ``weight [M]`` (float32) and ``edge_id [M]``, ``M = E``."""
        dev = self.attention.device
        node_ptr, src = self.layout.csr(dev)
        ids = self.layout.csr_ids(dev)
        return node_ptr, src, self.weights_of(ids), ids


STEP = 1 << 26
"""Edges per step of :meth:`TokenGraph.weights_of`."""


@dataclass(frozen=True)
class SearchCsr:
    """One prompt's graph as the greedy search reads it, without the graph's own weight tensors: edges
    grouped by target node in push order (:meth:`EdgeLayout.csr`; their sources, the same for every
    prompt of this shape, are built when a search needs them; their ids are :meth:`EdgeLayout.csr_ids`),
    on the graph's device. ``node_ptr [N+1]`` int64, ``weight [M]`` float32."""

    layout: EdgeLayout
    node_ptr: torch.Tensor
    weight: torch.Tensor


def _normalise(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Divide each node's non-negative scores by their sum (uniform weights where all are 0).

    Each part is ``[..., T, k]`` (``k`` scores per node, any trailing shape flattened by the caller,
    any leading dimensions, such as layers, kept).
    """
    total = cast(torch.Tensor, sum(p.sum(-1) for p in parts))  # [..., T] (parts is not empty)
    count = sum(p.shape[-1] for p in parts)
    zero = total <= 0
    safe = torch.where(zero, torch.ones_like(total), total)
    return [torch.where(zero[..., None], torch.full_like(p, 1.0 / count), p / safe[..., None]) for p in parts]


@torch.no_grad()
def head_vectors(adapter: Adapter, layer: int, values: torch.Tensor) -> torch.Tensor:
    """Per-head output vectors ``u[h, s] = W_O[l, h] v[l, h, s]``: ``values [H, T, Dh]`` -> ``[H, T, d]``
    (float32)."""
    H, T, Dh = values.shape
    w = adapter.out_proj_weight(adapter.layers[layer]).float()  # [d, H*Dh]
    return torch.einsum("hsk,dhk->hsd", values.float(), w.view(w.shape[0], H, Dh))


def _recorded(t: torch.Tensor | None) -> torch.Tensor:
    """A :class:`LayerRecord` field, which a recorded forward pass sets for every layer."""
    assert t is not None, "the layer record is incomplete"
    return t


def attention_scale(adapter: Adapter, layer: int, rec: LayerRecord) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Linearised post-attention norm: ``gain [d]`` and ``inv_std [T]``, or ``(None, None)``
    for layers without one (METHOD.md section 1)."""
    norm = adapter.norm(adapter.layers[layer], "post_attn")
    if norm is None:
        return None, None
    return adapter.norm_gain(norm), adapter.norm_inv_std(norm, _recorded(rec.attn_raw))


@torch.no_grad()
def _norm(x: torch.Tensor, p: int) -> torch.Tensor:
    return torch.linalg.vector_norm(x, ord=p, dim=-1)


def _ifr_attention(y: torch.Tensor, probs: torch.Tensor, u: torch.Tensor, block_elems: int = 1 << 26) -> torch.Tensor:
    """IFR proximities of attention edges: ``y [T, d]``, ``probs [H, T, T]``, ``u [H, T, d]`` (already
    scaled by any norm gain) -> ``[H, T, T]``, ``max(|y_t| - |y_t - A[h,t,s] u[h,s]|, 0)``."""
    H, T, d = u.shape
    out = torch.empty(H, T, T, device=y.device)
    y_norm = y.abs().sum(-1)  # [T]
    step = max(1, block_elems // max(1, H * T * d))
    for t0 in range(0, T, step):
        t1 = min(T, t0 + step)
        e = probs[:, t0:t1, :, None] * u[:, None, :, :]  # [H, tb, T, d]
        dist = (y[None, t0:t1, None, :] - e).abs().sum(-1)  # [H, tb, T]
        out[:, t0:t1] = (y_norm[None, t0:t1, None] - dist).clamp_min(0)
    return out


@torch.no_grad()
def build_graph(adapter: Adapter, records: list[LayerRecord], weighting: str = "l1") -> TokenGraph:
    """Edge weights from one recorded forward pass (batch element 0).

    The attention weights are scored and normalised a layer at a time, into the one ``[L, H, T, T]``
    result (a layer's ``[H, T, T]`` temporaries, not the whole graph's); the residual and MLP scores run
    once over ``[L, T, ...]`` stacks.
    """
    if weighting not in WEIGHTINGS:
        raise BadSetting(f"unknown edge weighting '{weighting}'; choose one of {', '.join(WEIGHTINGS)}")
    L = len(records)
    first_probs = _recorded(records[0].probs)
    H, T = first_probs.shape[0], first_probs.shape[1]
    layout = layout_for(adapter, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=first_probs.device).tril()
    x = torch.stack([_recorded(rec.x) for rec in records]).float()  # [L, T, d]
    m = torch.stack([_recorded(rec.mlp) for rec in records]).float()
    mid = x + torch.stack([_recorded(rec.attn) for rec in records]).float()
    # MLP node (2l+2, t): residual mid[t], MLP m[t]; the output node's vectors go through the
    # linearised final norm.
    final = adapter.final_norm
    scale = adapter.norm_gain(final)[None, :] * adapter.norm_inv_std(final, mid[-1] + m[-1])[:, None]  # [T, d]
    r_last, m_last = mid[-1] * scale, m[-1] * scale
    p = 2 if weighting == "l2" else 1
    if weighting == "ifr":
        res_score = torch.stack([(y.abs().sum(-1) - (y - x_l).abs().sum(-1)).clamp_min(0) for y, x_l in zip(mid, x)])

        def ifr_mlp_scores(r_vec, m_vec):
            y_norm = (r_vec + m_vec).abs().sum(-1)
            return (y_norm - m_vec.abs().sum(-1)).clamp_min(0), (y_norm - r_vec.abs().sum(-1)).clamp_min(0)

        mlp_scores = ifr_mlp_scores
    else:
        res_score = _norm(x, p)  # [L, T]

        def norm_mlp_scores(r_vec, m_vec):
            return _norm(r_vec, p), _norm(m_vec, p)

        mlp_scores = norm_mlp_scores

    attention = torch.empty(L, H, T, T, device=x.device)
    res_n = torch.empty(L, T, device=x.device)
    for l, rec in enumerate(records):
        probs = _recorded(rec.probs).float() * causal  # [H, T, T]
        u, inv_std = _scaled_head_vectors(adapter, l, rec)
        if weighting == "ifr":
            att_score = _ifr_attention(mid[l], probs if inv_std is None else probs * inv_std[None, :, None], u)
        else:
            inv_std = torch.ones(T, device=x.device) if inv_std is None else inv_std
            att_score = probs * _norm(u, p)[:, None, :] * inv_std[None, :, None]
        del probs, u
        att_score = att_score * causal
        r_n, att_n = _normalise([res_score[l, :, None], att_score.permute(1, 0, 2).reshape(T, H * T)])
        del att_score
        res_n[l] = r_n[:, 0]
        attention[l] = att_n.view(T, H, T).permute(1, 0, 2)
        del att_n
    r_score, m_score = mlp_scores(mid, m)  # [L, T]
    r_score[-1], m_score[-1] = mlp_scores(r_last, m_last)
    r_n, m_n = _normalise([r_score[..., None], m_score[..., None]])
    return TokenGraph(
        layout=layout,
        weighting=weighting,
        attention=attention,
        residual_attn=res_n,
        residual_mlp=r_n[..., 0],
        mlp=m_n[..., 0],
    )


def _scaled_head_vectors(adapter: Adapter, layer: int, rec: LayerRecord) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The heads' output vectors times any post-attention norm gain ``[H, T, d]``, and that norm's
    ``inv_std [T]`` (``None`` without one): attention edge ``(h, s -> t)`` is ``A[h,t,s] inv_std[t] u[h,s]``."""
    u = head_vectors(adapter, layer, _recorded(rec.values))
    gain, inv_std = attention_scale(adapter, layer, rec)
    return (u if gain is None else u * gain), inv_std
