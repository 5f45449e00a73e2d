"""Inspect one component of a trace: what a head or MLP computes at the traced position.

For a head ``a{l}.h{h}``: its attention pattern over the prompt, its edges in the trace at a size, and the
tokens its output term at the traced position ``t`` promotes and suppresses; for an MLP ``m{l}`` the same
without the pattern. The terms come from one recorded forward pass (:func:`residual_terms`), which splits
the residual stream at ``t`` into its additive terms (METHOD.md section 1):

    x_L[t] = x_0[t] + sum_l ( sum_h head[l, h] + bias[l] + mlp[l] )

with ``head[l, h] = sum_s A[l,h,t,s] W_O[l,h] v[l,h,s]`` (times the linearised post-attention norm,
``gamma * inv_std``, in models with one, Gemma 2/3 and OLMo-2), ``bias[l]`` the attention output's bias
(not an edge), ``mlp[l]`` the MLP term. A term's effect on the next token is its direct logit attribution
(:func:`direct_logits`): the term through the final norm's linearisation at ``x_L[t]`` (``gamma *
inv_std``, after centring for a LayerNorm) and the unembedding. The direct logits of every term, plus the
final norm's bias and the unembedding's bias projected (:func:`logit_offset`), sum to the model's logits
before any final soft-capping (Gemma 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from explorer.components import ComponentInTrace, check_model, component_in_trace
from explorer.errors import BadSetting
from explorer.graph import attention_scale, head_vectors
from explorer.inputs import holding, token_text
from explorer.models.loading import LoadedModel
from explorer.results import Trace


@dataclass
class Terms:
    """The additive terms of the residual stream at position ``t`` (the last of the pass), float32 on the
    model's device: ``embedding [d]`` (``x_0[t]``), ``heads [L, H, d]``, ``attn_bias [L, d]`` (zeros where
    the attention output has no bias), ``mlps [L, d]``, ``layer_inputs [L + 1, d]`` (``x_l[t]``, the last
    being the output state ``x_L[t]``), and ``patterns [L, H, T, T]`` (post-softmax attention, query x key)."""

    embedding: torch.Tensor
    heads: torch.Tensor
    attn_bias: torch.Tensor
    mlps: torch.Tensor
    layer_inputs: torch.Tensor
    patterns: torch.Tensor

    @property
    def out(self) -> torch.Tensor:
        """``x_L[t]`` ``[d]``: the output state, the sum of every term."""
        return self.layer_inputs[-1]


@torch.no_grad()
def residual_terms(lm: LoadedModel, token_ids: list[int]) -> Terms:
    """One recorded forward pass over ``token_ids`` (``T`` ids), split into the terms of the residual stream
    at the last position ``T - 1`` (:class:`Terms`). The caller holds the model's lock."""
    adapter = lm.adapter
    ids = torch.tensor([token_ids], device=lm.device)
    _, records = lm.instrumentation.recorded_forward(ids, logits_to_keep=1)
    t = len(token_ids) - 1
    heads, biases, mlps, inputs, patterns = [], [], [], [], []
    for l, rec in enumerate(records):
        assert rec.probs is not None and rec.values is not None and rec.x is not None and rec.mlp is not None
        assert rec.attn is not None
        probs = rec.probs.float()  # [H, T, T]
        u = head_vectors(adapter, l, rec.values)  # [H, T, d]
        head = torch.einsum("hs,hsd->hd", probs[:, t, :], u)
        bias = adapter.out_proj_bias(adapter.layers[l])
        bias = torch.zeros_like(head[0]) if bias is None else bias.float()
        gain, inv_std = attention_scale(adapter, l, rec)
        if gain is not None and inv_std is not None:
            head, bias = head * gain * inv_std[t], bias * gain * inv_std[t]
        heads.append(head)
        biases.append(bias)
        mlps.append(rec.mlp[t].float())
        inputs.append(rec.x[t].float())
        patterns.append(probs)
    last = records[-1]
    assert last.x is not None and last.attn is not None and last.mlp is not None
    inputs.append((last.x[t].float() + last.attn[t].float()) + last.mlp[t].float())
    return Terms(
        embedding=inputs[0],
        heads=torch.stack(heads),
        attn_bias=torch.stack(biases),
        mlps=torch.stack(mlps),
        layer_inputs=torch.stack(inputs),
        patterns=torch.stack(patterns),
    )


def _unembedding(lm: LoadedModel) -> nn.Module:
    head = lm.model.get_output_embeddings()
    assert isinstance(head, nn.Module), "the model has no output embedding"
    return head


def direct_logits(lm: LoadedModel, out_state: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Direct logit attribution of residual terms ``vectors [..., d]`` at the output state ``out_state
    [d]``: each through the final norm's linearisation there and the unembedding, ``[..., V]`` float32."""
    final = lm.adapter.final_norm
    scale = lm.adapter.norm_gain(final) * lm.adapter.norm_inv_std(final, out_state)  # [d]
    v = vectors.float()
    if isinstance(final, nn.LayerNorm):
        v = v - v.mean(-1, keepdim=True)
    weight = _unembedding(lm).weight
    assert isinstance(weight, torch.Tensor)
    return (v * scale) @ weight.float().t()


def logit_offset(lm: LoadedModel) -> torch.Tensor:
    """``[V]``: what the logits hold besides the terms' direct logits: the final norm's bias through the
    unembedding, plus the unembedding's own bias (zeros for most models)."""
    head = _unembedding(lm)
    weight = head.weight
    assert isinstance(weight, torch.Tensor)
    offset = torch.zeros(weight.shape[0], device=weight.device)
    beta = getattr(lm.adapter.final_norm, "bias", None)
    if isinstance(beta, torch.Tensor):
        offset = offset + weight.float() @ beta.float()
    bias = getattr(head, "bias", None)
    if isinstance(bias, torch.Tensor):
        offset = offset + bias.float()
    return offset


@dataclass
class TokenEffect:
    """One token a term pushes: its text, id, and the term's direct contribution to its logit."""

    token: str
    id: int
    logit: float


@dataclass
class Inspection:
    """One component of a trace at one size. ``component``: its edges, share of the trace's weight and
    entry size (:class:`explorer.components.ComponentInTrace`); ``tokens`` the traced tokens and
    ``position`` the traced one; ``pattern [T, T]`` a head's attention probabilities (query x key; ``None``
    for an MLP); ``promoted`` / ``suppressed`` the ``k`` tokens whose logits its term at the traced position
    raises / lowers most (direct logit attribution, :func:`direct_logits`), ``term_norm`` that term's L2 norm."""

    component: ComponentInTrace
    position: int
    tokens: list[str]
    pattern: np.ndarray | None
    promoted: list[TokenEffect]
    suppressed: list[TokenEffect]
    term_norm: float

    @property
    def name(self) -> str:
        return self.component.name


def _effects(lm: LoadedModel, logits: torch.Tensor, k: int, largest: bool) -> list[TokenEffect]:
    values, ids = logits.topk(k, largest=largest)
    return [TokenEffect(token_text(lm, i), i, float(v)) for v, i in zip(values.tolist(), ids.tolist())]


def inspect_component(
    lm: LoadedModel, trace: Trace, name: str, size: float | str | None = None, k: int = 10
) -> Inspection:
    """Inspect head ``a{l}.h{h}`` or MLP ``m{l}`` of ``trace`` at ``size`` (the closest evaluated size;
    ``None`` or ``"full"``: the full graph): one recorded forward pass of ``lm`` (the trace's model) over the
    traced tokens. ``k``: how many promoted and suppressed tokens."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadSetting(f"k must be a whole number of at least 1, got {k!r}")
    part = component_in_trace(trace, name, size)
    check_model(lm, trace)
    with holding(lm, lambda frac, msg: None):
        terms = residual_terms(lm, trace.token_ids)
        layer = part.layer
        term = terms.heads[layer, part.head] if part.head is not None else terms.mlps[layer]
        logits = direct_logits(lm, terms.out, term)
        k = min(k, logits.shape[-1])
        promoted, suppressed = _effects(lm, logits, k, True), _effects(lm, logits, k, False)
        pattern = terms.patterns[layer, part.head].cpu().numpy() if part.head is not None else None
        norm = float(term.norm())
    return Inspection(
        component=part,
        position=trace.position,
        tokens=list(trace.tokens),
        pattern=pattern,
        promoted=promoted,
        suppressed=suppressed,
        term_norm=norm,
    )
