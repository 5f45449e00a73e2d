"""Run a model with its own modules while recording, or masking, every edge of the s-Trace graph.

:func:`instrument` replaces each decoder layer's ``forward`` with one built from the adapter (same modules,
same arithmetic as the library's layer) and registers an eager attention function, ``"strace"``, with
transformers' attention interface. With no masks set, logits are bit-identical to transformers' eager
attention. Two hooks into that computation, both held by :class:`Instrumentation`:

- ``recorder``: a list that receives one :class:`LayerRecord` per layer (batch element 0);
- ``masks``: an :class:`EdgeMasks` giving, per layer, 0/1 keep-multipliers for a batch of subgraphs, and
  the rows that a batch's MLPs and attention projections are computed on where it skips the others
  (the attention's query and output projections are wrapped for that).

Masking follows METHOD.md section 4: post-softmax attention probabilities are multiplied by 0 (no
renormalisation); MLP and residual terms are multiplied by 0. Multiplying by 1 is exact, so the full
graph reproduces the unmasked logits bit for bit on pre-norm and post-norm layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import nn

from explorer.models.adapters import Adapter

ATTENTION_NAME = "strace"


@dataclass
class LayerRecord:
    """What one layer computed for one prompt (batch element 0).

    ``x`` ``[T, d]``: layer input (graph layer 2l). ``attn`` ``[T, d]``: the attention term added to the
    residual stream (after a post-attention norm, if any). ``attn_raw`` ``[T, d]``: the attention output
    before that norm (the same tensor when there is none). ``mlp`` ``[T, d]``: the MLP term.
    ``probs`` ``[H, T, T]``: post-softmax attention. ``values`` ``[H, T, Dh]``: value vectors per query head.
    """

    x: torch.Tensor | None = None
    attn: torch.Tensor | None = None
    attn_raw: torch.Tensor | None = None
    mlp: torch.Tensor | None = None
    probs: torch.Tensor | None = None
    values: torch.Tensor | None = None


class PassReplay(Protocol):
    """Runs masked passes at the last position from recorded ones (:class:`explorer.pass_graphs.PassGraphs`)."""

    def logits(
        self, input_ids: torch.Tensor, ranks, specs: list, batch_size: int, mlp_rows=None
    ) -> torch.Tensor | None:
        """As :func:`explorer.intervene.masked_logits` with no positions, or ``None`` where it does not
        apply (the caller then runs the passes itself)."""

    def forward_graph(self, input_ids: torch.Tensor, weighting: str) -> tuple[torch.Tensor, Any] | None:
        """The recorded pass's last logits ``[V]`` and the prompt's :class:`explorer.graph.TokenGraph`, or
        ``None`` where it does not apply (the caller then runs :meth:`Instrumentation.recorded_forward`
        and ``build_graph`` itself)."""

    def make_room(self, rank_bytes: int) -> None:
        """Before a trace whose edge ranks take ``rank_bytes``: free what is kept for replays if that
        trace's passes will not be replayed (a long prompt needs the memory)."""


class EdgeMasks(Protocol):
    """Keep-multipliers (0 or 1, activations' dtype; the attention's may be bool, which a product promotes
    to exactly 0 or 1) for a batch of ``B`` subgraphs, layer by layer.

    Each method returns ``None`` when every edge of that kind is kept in every batch element.
    """

    def attention(self, layer: int) -> torch.Tensor | None:
        """``[B, H, T, T]``: keep attention edge ``(h, s -> t)``."""

    def residual_attn(self, layer: int) -> torch.Tensor | None:
        """``[B, T, 1]``: keep the residual edge into the attention node ``(2l+1, t)``."""

    def residual_mlp(self, layer: int) -> torch.Tensor | None:
        """``[B, T, 1]``: keep the residual edge into the MLP node ``(2l+2, t)``."""

    def mlp(self, layer: int) -> torch.Tensor | None:
        """``[B, T, 1]``: keep the MLP edge into ``(2l+2, t)``; ``None`` also where :meth:`mlp_rows` says."""

    def mlp_rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(read, write)``, ``[C]`` each: the MLP is computed on rows ``read`` of the ``[B * T, d]`` input
        only and written to rows ``write`` (padding: ``B * T``, dropped); every other row's MLP term is 0.
        ``None``: on every row (then :meth:`mlp` masks it)."""

    def attention_rows(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """As :meth:`mlp_rows`, for the attention's query and output projections: the rows with no kept
        attention edge, whose attention output is exactly 0 before the output projection's bias, are
        not projected (their queries are 0, their outputs the bias). ``None``: every row."""


@dataclass
class Instrumentation:
    """Handles for one instrumented model."""

    adapter: Adapter
    recorder: list[LayerRecord] | None = None
    masks: EdgeMasks | None = None
    replay: PassReplay | None = None

    def recorded_forward(self, input_ids: torch.Tensor, **kwargs) -> tuple[torch.Tensor, list[LayerRecord]]:
        """One unmasked forward pass that records every layer: returns the model's logits and the
        :class:`LayerRecord` list (batch element 0). ``kwargs`` go to the model (e.g. ``logits_to_keep``)."""
        self.recorder = []
        try:
            with torch.no_grad():
                logits = self.adapter.model(input_ids=input_ids, use_cache=False, **kwargs).logits
            return logits, self.recorder
        finally:
            self.recorder = None

    def record(self, layer: int) -> LayerRecord | None:
        if self.recorder is None:
            return None
        while len(self.recorder) <= layer:
            self.recorder.append(LayerRecord())
        return self.recorder[layer]


def _repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``[B, KVH, T, Dh]`` -> ``[B, KVH * n_rep, T, Dh]``, each K/V head repeated for its query heads."""
    if n_rep == 1:
        return x
    b, kvh, t, dh = x.shape
    return x[:, :, None].expand(b, kvh, n_rep, t, dh).reshape(b, kvh * n_rep, t, dh)


def strace_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    **kwargs,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eager attention that records and masks post-softmax probabilities.

    ``query`` ``[B, H, T, Dh]``, ``key``/``value`` ``[B, KVH, T, Dh]``; returns ``[B, T, H, Dh]`` and the
    (masked) probabilities ``[B, H, T, T]``.
    """
    inst: Instrumentation | None = getattr(module, "_strace", None)
    key = _repeat_kv(key, query.shape[1] // key.shape[1])
    value = _repeat_kv(value, query.shape[1] // value.shape[1])
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query, key.transpose(2, 3)) * scale
    if softcap is not None:
        scores = scores / softcap
        scores = torch.tanh(scores)
        scores = scores * softcap
    if attention_mask is not None:
        scores = scores + attention_mask[:, :, :, : key.shape[-2]]
    if inst is None or inst.adapter.family.softmax_fp32:
        probs = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    else:
        probs = nn.functional.softmax(scores, dim=-1).type(value.dtype)
    if inst is not None:
        layer = cast(int, module._strace_layer)  # set by instrument()
        rec = inst.record(layer)
        if rec is not None:
            rec.probs = probs[0].detach()
            rec.values = value[0].detach()
        if inst.masks is not None:
            keep = inst.masks.attention(layer)
            if keep is not None:
                probs = probs * keep
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, probs


def strace_mask(*args, dtype: torch.dtype = torch.float32, **kwargs) -> torch.Tensor | None:
    """transformers' eager attention mask (``[B, 1, Tq, Tk]``: 0 where a key is attended, the dtype's
    minimum elsewhere), made with device operations only. The library's own builds a host scalar and
    copies it to the device, which a CUDA graph's capture refuses. Arguments as ``sdpa_mask``'s."""
    from transformers.masking_utils import sdpa_mask

    kwargs.pop("allow_is_causal_skip", None)
    mask = sdpa_mask(*args, allow_is_causal_skip=False, **kwargs)
    if mask is None:
        return None
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, torch.finfo(dtype).min)


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION_NAME, strace_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, strace_mask)


def _scale(t: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    return t if keep is None else t * keep


def _add_scaled(base: torch.Tensor, t: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``base + t * keep`` in one kernel: ``t * keep`` is exact (``keep`` is 0 or 1), so the one rounding
    of the sum is the two operations' (and addition commutes in IEEE arithmetic)."""
    return base + t if keep is None else torch.addcmul(base, t, keep)


def _on_rows(fn, h: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor], fill: torch.Tensor | None = None):
    """``fn`` of ``h [..., d]`` on rows ``rows[0]`` of its ``[N, d]`` flattening only, written to rows
    ``rows[1]`` of an ``[N + 1, D]`` output (row ``N``: padding, dropped) whose other rows are ``fill``
    ``[D]`` (default 0); returns ``[..., D]``."""
    flat = h.reshape(-1, h.shape[-1])
    part = fn(flat.index_select(0, rows[0])[None])[0]
    shape = (flat.shape[0] + 1, part.shape[-1])
    out = part.new_zeros(shape) if fill is None else fill.to(part.dtype).expand(shape).clone()
    return out.index_copy_(0, rows[1], part)[:-1].view(h.shape[:-1] + part.shape[-1:])


def _projection_forward(inst: Instrumentation, index: int, projection: nn.Module, output: bool):
    """``projection.forward`` (the attention's query projection, or its output projection where
    ``output``) on the rows of :meth:`EdgeMasks.attention_rows` only; the other rows' queries are 0 and
    their outputs the projection's bias (what a row of zeros gives)."""
    plain = projection.forward
    bias = getattr(projection, "bias", None) if output else None

    def forward(x: torch.Tensor) -> torch.Tensor:
        rows = inst.masks.attention_rows(index) if inst.masks is not None else None
        return plain(x) if rows is None else _on_rows(plain, x, rows, bias)

    return forward


def _layer_forward(inst: Instrumentation, layer: nn.Module, index: int):
    adapter = inst.adapter
    attn = adapter.attention(layer)
    mlp = adapter.mlp(layer)
    pre_attn = adapter.norm(layer, "pre_attn")
    post_attn = adapter.norm(layer, "post_attn")
    pre_mlp = adapter.norm(layer, "pre_mlp")
    post_mlp = adapter.norm(layer, "post_mlp")
    parallel = adapter.parallel_residual

    def run_mlp(h: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The MLP term of ``h [B, T, d]``, on every row or on ``rows`` only (:meth:`EdgeMasks.mlp_rows`)."""
        if rows is not None:
            return _on_rows(run_mlp, h, rows)
        h = mlp(pre_mlp(h) if pre_mlp is not None else h)
        return post_mlp(h) if post_mlp is not None else h

    def forward(hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        """``hidden_states`` ``[B, T, d]`` -> ``[B, T, d]``; extra arguments go to the attention module."""
        x = hidden_states
        a_raw = attn(pre_attn(x) if pre_attn is not None else x, *args, **kwargs)[0]
        a = post_attn(a_raw) if post_attn is not None else a_raw
        masks = inst.masks
        r1 = masks.residual_attn(index) if masks is not None else None
        r2 = masks.residual_mlp(index) if masks is not None else None
        km = masks.mlp(index) if masks is not None else None
        rows = masks.mlp_rows(index) if masks is not None else None
        if parallel:
            # GPT-NeoX order of summation: mlp + attn + x.
            m = run_mlp(x, rows)
            r12 = r1 if r2 is None else (r2 if r1 is None else r1 * r2)
            out = _add_scaled(_add_scaled(_scale(m, km), a, r2), x, r12)
        else:
            mid = _add_scaled(a, x, r1)
            m = run_mlp(mid, rows)
            out = _add_scaled(_scale(m, km), mid, r2)
        rec = inst.record(index)
        if rec is not None:
            rec.x, rec.attn, rec.attn_raw, rec.mlp = x[0], a[0], a_raw[0], m[0]
        return out

    return forward


def instrument(adapter: Adapter) -> Instrumentation:
    """Instrument ``adapter.model`` in place (idempotent) and return its :class:`Instrumentation`."""
    model = adapter.model
    existing = getattr(model, "_strace_instrumentation", None)
    if existing is not None:
        return existing
    _register_attention()
    model.set_attn_implementation(ATTENTION_NAME)
    inst = Instrumentation(adapter=adapter)
    for index, layer in enumerate(adapter.layers):
        module = adapter.attention(layer)
        # torch annotates Module.__setattr__'s value as Tensor | Module; other values become plain attributes.
        module._strace = inst  # pyright: ignore[reportArgumentType]
        module._strace_layer = index  # pyright: ignore[reportArgumentType]
        query = getattr(module, "q_proj", None)  # None where the projections are fused (GPT-2, NeoX, Phi-3)
        if query is not None:
            query.forward = _projection_forward(inst, index, query, output=False)
        out_proj = adapter.out_proj(layer)
        out_proj.forward = _projection_forward(inst, index, out_proj, output=True)
        layer.forward = _layer_forward(inst, layer, index)
    model._strace_instrumentation = inst  # pyright: ignore[reportArgumentType]
    return inst
