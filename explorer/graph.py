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

import numpy as np
import torch

from explorer.errors import BadSetting
from explorer.models.adapters import Adapter
from explorer.models.hooks import LayerRecord

WEIGHTINGS = ("l1", "l2", "ifr")

ATTENTION, RESIDUAL_ATTN, RESIDUAL_MLP, MLP = 0, 1, 2, 3


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

    def kind(self, ids):
        """ATTENTION, RESIDUAL_ATTN, RESIDUAL_MLP or MLP per edge id (cheaper than :meth:`decode`).
        ``ids`` an array (returns an array) or a tensor (returns a tensor on its device)."""
        t = _id_tensor(ids)
        rest = t - self.n_attention_ids
        kind = torch.where(rest < 0, ATTENTION, 1 + rest.div(self.n_layers * self.n_tokens, rounding_mode="floor"))
        return kind if torch.is_tensor(ids) else kind.numpy()

    def component(self, ids):
        """Component index per edge: ``l*H + h`` for attention heads, ``L*H + l`` for MLPs, -1 for
        residual edges. Names are :meth:`component_names`. Arrays or tensors, as :meth:`kind`."""
        t = _id_tensor(ids)
        L, H, T = self.n_layers, self.n_heads, self.n_tokens
        kind = self.kind(t)
        comp = torch.where(kind == ATTENTION, t // (T * T), -1)
        comp = torch.where(kind == MLP, L * H + (t - self.offset(MLP)) // T, comp)
        return comp if torch.is_tensor(ids) else comp.numpy()

    def component_names(self) -> list[str]:
        """``a{layer}.h{head}`` for every head, then ``m{layer}`` for every MLP."""
        heads = [f"a{l}.h{h}" for l in range(self.n_layers) for h in range(self.n_heads)]
        return heads + [f"m{l}" for l in range(self.n_layers)]

    def csr(self, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges grouped by target node in push order (residual first, then heads ``h`` and sources
        ``s``), built arithmetically on ``device``: the same for every prompt of this shape.

        Returns ``node_ptr [N+1]``, ``src [M]`` (source node) and ``edge_id [M]``, ``M = E``.
        """
        lay, dev = self, device
        L, H, T = lay.n_layers, lay.n_heads, lay.n_tokens
        t = torch.arange(T, device=dev)
        layer = torch.arange(L, device=dev)[:, None]
        # attention nodes (2l+1, t): entry `pos` of node t is the residual (pos 0) or head h, source s
        deg = 1 + H * (t + 1)
        tt = torch.repeat_interleave(t, deg)
        pos = torch.arange(len(tt), device=dev) - (torch.cumsum(deg, 0) - deg)[tt]
        k = (pos - 1).clamp_min(0)
        head, src_t = k // (tt + 1), torch.where(pos == 0, tt, k % (tt + 1))
        attn_ids = torch.where(pos == 0, lay.offset(RESIDUAL_ATTN) + layer * T + tt,
                               ((layer * H + head) * T + tt) * T + src_t)
        attn_src = 2 * layer * T + src_t
        attn_dst = (2 * layer + 1) * T + tt
        # MLP nodes (2l+2, t): [residual from (2l+1, t), MLP from (2l+1, t) or, parallel, (2l, t)]
        tm, is_mlp = t.repeat_interleave(2), torch.arange(2, device=dev).repeat(T) == 1
        mlp_ids = torch.where(is_mlp, lay.offset(MLP), lay.offset(RESIDUAL_MLP)) + layer * T + tm
        mlp_src_g = 2 * layer + torch.where(is_mlp & lay.parallel, 0, 1)
        mlp_src = mlp_src_g * T + tm
        mlp_dst = (2 * layer + 2) * T + tm
        target = torch.cat([tt, tm]).expand(L, -1)
        keep = (layer < L - 1) | (target == T - 1)  # last layer: only the output token's nodes
        ids = torch.cat([attn_ids, mlp_ids], 1)[keep]
        src = torch.cat([attn_src, mlp_src], 1)[keep]
        dst = torch.cat([attn_dst, mlp_dst.expand(L, -1)], 1)[keep]
        node_ptr = torch.zeros(lay.n_nodes + 1, dtype=torch.long, device=dev)
        node_ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=lay.n_nodes), 0)
        return node_ptr, src, ids


def layout_for(adapter: Adapter, n_tokens: int) -> EdgeLayout:
    """The edge layout of ``adapter``'s model on a prompt of ``n_tokens`` tokens."""
    return EdgeLayout(adapter.n_layers, adapter.n_heads, n_tokens, adapter.parallel_residual)


def _id_tensor(ids) -> torch.Tensor:
    """Edge ids as an int64 tensor: a tensor stays on its device, anything else becomes a CPU tensor."""
    return torch.as_tensor(ids if torch.is_tensor(ids) else np.asarray(ids), dtype=torch.int64)


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

    def flat_weights(self) -> torch.Tensor:
        """All weights indexed by edge id, ``[n_ids]``."""
        return torch.cat(
            [self.attention.reshape(-1), self.residual_attn.reshape(-1),
             self.residual_mlp.reshape(-1), self.mlp.reshape(-1)]
        )

    def csr(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Edges grouped by target node in push order (:meth:`EdgeLayout.csr`) with their weights:
        ``node_ptr [N+1]``, ``src [M]``, ``weight [M]`` (float64) and ``edge_id [M]``, ``M = E``."""
        node_ptr, src, ids = self.layout.csr(self.attention.device)
        return node_ptr, src, self.flat_weights()[ids].double(), ids


def _normalise(parts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Divide each node's non-negative scores by their sum (uniform weights where all are 0).

    Each part is ``[..., T, k]`` (``k`` scores per node, any trailing shape flattened by the caller,
    any leading dimensions, such as layers, kept).
    """
    total = sum(p.sum(-1) for p in parts)  # [..., T]
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


def attention_scale(adapter: Adapter, layer: int, rec: LayerRecord) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Linearised post-attention norm: ``gain [d]`` and ``inv_std [T]``, or ``(None, None)``
    for layers without one (METHOD.md section 1)."""
    norm = adapter.norm(adapter.layers[layer], "post_attn")
    if norm is None:
        return None, None
    return adapter.norm_gain(norm), adapter.norm_inv_std(norm, rec.attn_raw)


@torch.no_grad()
def attention_terms(adapter: Adapter, layer: int, rec: LayerRecord, t: int) -> torch.Tensor:
    """The edge vectors into attention node ``(2l+1, t)``: ``[H, t+1, d]`` float32. With the output bias
    (if any) they sum to ``rec.attn[t]``."""
    u = head_vectors(adapter, layer, rec.values)[:, : t + 1]  # [H, t+1, d]
    gain, inv_std = attention_scale(adapter, layer, rec)
    e = rec.probs[:, t, : t + 1].float()[..., None] * u
    if gain is not None:
        e = e * (gain * inv_std[t])
    return e


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

    Scores are computed per layer only where a layer's own weights enter (the heads' output vectors,
    post-attention norms, and every ``ifr`` score); the rest runs once over ``[L, ...]`` stacks.
    """
    if weighting not in WEIGHTINGS:
        raise BadSetting(f"unknown edge weighting '{weighting}'; choose one of {', '.join(WEIGHTINGS)}")
    L = len(records)
    H, T = records[0].probs.shape[0], records[0].probs.shape[1]
    layout = layout_for(adapter, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=records[0].x.device).tril()
    x = torch.stack([rec.x for rec in records]).float()  # [L, T, d]
    m = torch.stack([rec.mlp for rec in records]).float()
    mid = x + torch.stack([rec.attn for rec in records]).float()
    probs = torch.stack([rec.probs for rec in records]).float() * causal  # [L, H, T, T]
    # MLP node (2l+2, t): residual mid[t], MLP m[t]; the output node's vectors go through the
    # linearised final norm.
    final = adapter.final_norm
    scale = adapter.norm_gain(final)[None, :] * adapter.norm_inv_std(final, mid[-1] + m[-1])[:, None]  # [T, d]
    r_last, m_last = mid[-1] * scale, m[-1] * scale
    if weighting == "ifr":
        res_score, att_score = [], []
        for l, rec in enumerate(records):
            u, inv_std = _scaled_head_vectors(adapter, l, rec)
            y = mid[l]
            res_score.append((y.abs().sum(-1) - (y - x[l]).abs().sum(-1)).clamp_min(0))
            att_score.append(_ifr_attention(y, probs[l] if inv_std is None else probs[l] * inv_std[None, :, None], u))
        res_score, att_score = torch.stack(res_score), torch.stack(att_score)

        def mlp_scores(r_vec, m_vec):
            y_norm = (r_vec + m_vec).abs().sum(-1)
            return (y_norm - m_vec.abs().sum(-1)).clamp_min(0), (y_norm - r_vec.abs().sum(-1)).clamp_min(0)
    else:
        p = 2 if weighting == "l2" else 1
        u_norm, inv_stds = [], []
        for l, rec in enumerate(records):
            u, inv_std = _scaled_head_vectors(adapter, l, rec)
            u_norm.append(_norm(u, p))  # [H, T]
            inv_stds.append(torch.ones(T, device=x.device) if inv_std is None else inv_std)
        res_score = _norm(x, p)  # [L, T]
        att_score = probs * torch.stack(u_norm)[:, :, None, :] * torch.stack(inv_stds)[:, None, :, None]

        def mlp_scores(r_vec, m_vec):
            return _norm(r_vec, p), _norm(m_vec, p)
    att_score = att_score * causal
    res_n, att_n = _normalise([res_score[..., None], att_score.permute(0, 2, 1, 3).reshape(L, T, H * T)])
    r_score, m_score = mlp_scores(mid, m)  # [L, T]
    r_score[-1], m_score[-1] = mlp_scores(r_last, m_last)
    r_n, m_n = _normalise([r_score[..., None], m_score[..., None]])
    return TokenGraph(
        layout=layout,
        weighting=weighting,
        attention=att_n.view(L, T, H, T).permute(0, 2, 1, 3).contiguous(),
        residual_attn=res_n[..., 0],
        residual_mlp=r_n[..., 0],
        mlp=m_n[..., 0],
    )


def _scaled_head_vectors(adapter: Adapter, layer: int, rec: LayerRecord) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The heads' output vectors times any post-attention norm gain ``[H, T, d]``, and that norm's
    ``inv_std [T]`` (``None`` without one): attention edge ``(h, s -> t)`` is ``A[h,t,s] inv_std[t] u[h,s]``."""
    u = head_vectors(adapter, layer, rec.values)
    gain, inv_std = attention_scale(adapter, layer, rec)
    return (u if gain is None else u * gain), inv_std
