"""Plain reference implementations that the fast code is checked against."""

from __future__ import annotations

import heapq

import numpy as np
import torch

from explorer.edges import MLP, RESIDUAL_ATTN, RESIDUAL_MLP, EdgeLayout
from explorer.graph import attention_scale, head_vectors
from explorer.models.adapters import Adapter
from explorer.models.hooks import LayerRecord
from explorer.search import SearchGraph


def heap_greedy_order(graph: SearchGraph) -> np.ndarray:
    """METHOD.md section 3 as written: a max-heap of edges keyed by weight, ties to the first pushed."""
    ptr, src, w = graph.node_ptr, graph.src, graph.weight
    heap: list[tuple[float, int, int]] = []
    counter = 0

    def push_in_edges(v: int) -> None:
        nonlocal counter
        for i in range(ptr[v], ptr[v + 1]):
            heapq.heappush(heap, (-w[i], counter, i))
            counter += 1

    reached = {graph.root}
    push_in_edges(graph.root)
    order = []
    while heap:
        _, _, i = heapq.heappop(heap)
        order.append(i)
        u = int(src[i])
        if u not in reached:
            reached.add(u)
            push_in_edges(u)
    return np.array(order, dtype=np.int64)


def llama_masked_forward(model, input_ids, keep_attn, keep_res_attn, keep_res_mlp, keep_mlp):
    """An independent zero-ablation forward pass of a Llama-style model, written from its weights with
    plain tensor operations (METHOD.md section 4). Masks are 0/1 tensors: ``keep_attn [L, H, T, T]``,
    the others ``[L, T]``. Returns last-position logits ``[V]``.

    Only the rotary cos/sin tables come from the model (``model.model.rotary_emb``).
    """
    import torch

    cfg = model.config
    H, KVH = cfg.num_attention_heads, cfg.num_key_value_heads
    d = cfg.hidden_size
    Dh = getattr(cfg, "head_dim", None) or d // H
    T = input_ids.shape[1]

    def rms(x, weight, eps):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    def rotate(x, cos, sin):
        x1, x2 = x[..., : Dh // 2], x[..., Dh // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    x = model.model.embed_tokens(input_ids)[0]  # [T, d]
    pos = torch.arange(T)[None]
    cos, sin = model.model.rotary_emb(x[None], pos)
    cos, sin = cos[0], sin[0]  # [T, Dh]
    causal = torch.full((T, T), float("-inf")).triu(1)
    for l, layer in enumerate(model.model.layers):
        att = layer.self_attn
        h = rms(x, layer.input_layernorm.weight, layer.input_layernorm.variance_epsilon)
        q = (h @ att.q_proj.weight.T).view(T, H, Dh).transpose(0, 1)
        k = (h @ att.k_proj.weight.T).view(T, KVH, Dh).transpose(0, 1)
        v = (h @ att.v_proj.weight.T).view(T, KVH, Dh).transpose(0, 1)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        k = k.repeat_interleave(H // KVH, 0)
        v = v.repeat_interleave(H // KVH, 0)
        probs = torch.softmax(q @ k.transpose(1, 2) / Dh**0.5 + causal, -1) * keep_attn[l]  # [H, T, T]
        heads = (probs @ v).transpose(0, 1).reshape(T, H * Dh)
        a = heads @ att.o_proj.weight.T
        mid = keep_res_attn[l][:, None] * x + a
        mlp = layer.mlp
        h2 = rms(mid, layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon)
        m = (
            torch.nn.functional.silu(h2 @ mlp.gate_proj.weight.T) * (h2 @ mlp.up_proj.weight.T)
        ) @ mlp.down_proj.weight.T
        x = keep_res_mlp[l][:, None] * mid + keep_mlp[l][:, None] * m
    x = rms(x, model.model.norm.weight, model.model.norm.variance_epsilon)
    return x[-1] @ model.lm_head.weight.T


def attention_terms(adapter: Adapter, layer: int, rec: LayerRecord, t: int) -> torch.Tensor:
    """The edge vectors into attention node ``(2l+1, t)``, one node at a time as METHOD.md section 1 writes
    them: ``[H, t+1, d]`` float32. With the output bias (if any) they sum to ``rec.attn[t]``; the graph's
    blockwise weights (:func:`explorer.graph.build_graph`) are checked against their norms."""
    u = head_vectors(adapter, layer, rec.values)[:, : t + 1]  # [H, t+1, d]
    gain, inv_std = attention_scale(adapter, layer, rec)
    e = rec.probs[:, t, : t + 1].float()[..., None] * u
    if gain is not None:
        e = e * (gain * inv_std[t])
    return e


def plain_csr(lay: EdgeLayout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The CSR of :meth:`EdgeLayout.csr` built from every layer at once and cut to the edges that reach
    the output: ``node_ptr [N+1]``, ``src [M]``, ``ids [M]``."""
    L, H, T = lay.n_layers, lay.n_heads, lay.n_tokens
    t = torch.arange(T)
    layer = torch.arange(L)[:, None]
    deg = 1 + H * (t + 1)
    tt = torch.repeat_interleave(t, deg)
    pos = torch.arange(len(tt)) - (torch.cumsum(deg, 0) - deg)[tt]
    k = (pos - 1).clamp_min(0)
    head, src_t = k // (tt + 1), torch.where(pos == 0, tt, k % (tt + 1))
    attn_ids = torch.where(
        pos == 0, lay.offset(RESIDUAL_ATTN) + layer * T + tt, ((layer * H + head) * T + tt) * T + src_t
    )
    attn_src = 2 * layer * T + src_t
    attn_dst = (2 * layer + 1) * T + tt
    tm, is_mlp = t.repeat_interleave(2), torch.arange(2).repeat(T) == 1
    mlp_ids = torch.where(is_mlp, lay.offset(MLP), lay.offset(RESIDUAL_MLP)) + layer * T + tm
    mlp_src = (2 * layer + torch.where(is_mlp & lay.parallel, 0, 1)) * T + tm
    mlp_dst = (2 * layer + 2) * T + tm
    target = torch.cat([tt, tm]).expand(L, -1)
    keep = (layer < L - 1) | (target == T - 1)
    ids = torch.cat([attn_ids, mlp_ids], 1)[keep]
    src = torch.cat([attn_src, mlp_src], 1)[keep]
    dst = torch.cat([attn_dst, mlp_dst.expand(L, -1)], 1)[keep]
    node_ptr = torch.zeros(lay.n_nodes + 1, dtype=torch.long)
    node_ptr[1:] = torch.cumsum(torch.bincount(dst, minlength=lay.n_nodes), 0)
    return node_ptr.numpy(), src.numpy(), ids.numpy()


def plain_shared_nucleus(p: torch.Tensor, q: torch.Tensor, tie_rtol: float = 1e-5) -> torch.Tensor:
    """METHOD.md section 4's shared nucleus with every ranking sorted whole: ``p [V]``, ``q [B, V]`` ->
    ``[B]`` (the largest level whose nucleus lists agree, tokens tied in ``p`` within ``tie_rtol`` in
    either order)."""
    from explorer.options import NUCLEUS_LEVELS

    def nucleus(probs):
        sorted_p, idx = torch.sort(probs, dim=-1, descending=True, stable=True)
        cum = sorted_p.double().cumsum(-1)
        levels = torch.tensor([k / 100 for k in NUCLEUS_LEVELS], dtype=torch.float64)
        lengths = torch.searchsorted(cum, levels[None, :].expand(cum.shape[0], -1).contiguous()) + 1
        return idx, lengths.clamp_max(probs.shape[-1])

    idx_p, len_p = nucleus(p[None, :])
    idx_q, len_q = nucleus(q)
    ranked_p, at_q = p[idx_p], p[idx_q]
    mismatch = (idx_q != idx_p) & ~((at_q - ranked_p).abs() <= tie_rtol * ranked_p)
    prefix = torch.where(mismatch.any(-1), mismatch.int().argmax(-1), torch.full_like(len_q[:, 0], q.shape[-1]))
    same = (len_q == len_p) & (len_p <= prefix[:, None])
    levels = torch.tensor(NUCLEUS_LEVELS)
    return torch.where(same, levels[None, :], torch.zeros_like(levels)[None, :]).amax(-1)
