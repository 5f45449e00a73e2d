"""Per-architecture adapters: where attention, MLP and norms sit in each decoder layer.

An adapter names the submodules of one family's decoder layer; :mod:`explorer.models.hooks` uses it to
run the layer with the model's own modules while exposing every additive term of the residual stream.

Layer structure, with ``x`` the layer input (graph layer ``2l``):

- pre-norm (Llama, Mistral, Qwen2/3, SmolLM2, DeepSeek-LLM, Phi-3, GPT-2):
  ``mid = x + attn(norm1(x))``; ``out = mid + mlp(norm2(mid))``
- post-sub-layer norms (Gemma 2/3: ``pre_*`` and ``post_*`` norms; OLMo-2: ``post_*`` only):
  ``mid = x + post_attn_norm(attn(...))``; ``out = mid + post_mlp_norm(mlp(...))``
- parallel residual (GPT-NeoX/Pythia with ``use_parallel_residual``): attention and MLP both read ``x``:
  ``out = x + attn(norm1(x)) + mlp(norm2(x))``. The graph still has a node ``mid = x + attn`` between
  them, and the MLP edge starts at ``(2l, t)`` instead of ``(2l+1, t)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

import torch
from torch import nn

from explorer.errors import UnsupportedArchitecture

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Family:
    """Names of one architecture family's modules.

    Attribute paths are dotted paths from the ``*ForCausalLM`` model (``layers``, ``final_norm``) or from
    one decoder layer (the rest). ``None`` means the family has no such module.
    """

    name: str
    model_types: tuple[str, ...]
    layers: str
    final_norm: str
    attention: str
    mlp: str
    out_proj: str
    pre_attn_norm: str | None
    post_attn_norm: str | None
    pre_mlp_norm: str | None
    post_mlp_norm: str | None
    # RMSNorm gain is ``1 + weight`` (Gemma) instead of ``weight``.
    gain_offset: float = 0.0
    # ``out_proj`` is a GPT-2 ``Conv1D`` (weight stored as ``[in, out]``).
    conv1d_out_proj: bool = False
    # Softmax is taken in float32 (most families) or in the activations' dtype (GPT-2).
    softmax_fp32: bool = True


FAMILIES: tuple[Family, ...] = (
    Family(
        name="Llama-style",
        model_types=("llama", "mistral", "qwen2", "qwen3", "phi3"),
        layers="model.layers",
        final_norm="model.norm",
        attention="self_attn",
        mlp="mlp",
        out_proj="o_proj",
        pre_attn_norm="input_layernorm",
        post_attn_norm=None,
        pre_mlp_norm="post_attention_layernorm",
        post_mlp_norm=None,
    ),
    Family(
        name="Gemma 2/3",
        model_types=("gemma2", "gemma3_text", "gemma3"),
        layers="model.layers",
        final_norm="model.norm",
        attention="self_attn",
        mlp="mlp",
        out_proj="o_proj",
        pre_attn_norm="input_layernorm",
        post_attn_norm="post_attention_layernorm",
        pre_mlp_norm="pre_feedforward_layernorm",
        post_mlp_norm="post_feedforward_layernorm",
        gain_offset=1.0,
    ),
    Family(
        name="OLMo-2",
        model_types=("olmo2",),
        layers="model.layers",
        final_norm="model.norm",
        attention="self_attn",
        mlp="mlp",
        out_proj="o_proj",
        pre_attn_norm=None,
        post_attn_norm="post_attention_layernorm",
        pre_mlp_norm=None,
        post_mlp_norm="post_feedforward_layernorm",
    ),
    Family(
        name="GPT-2",
        model_types=("gpt2",),
        layers="transformer.h",
        final_norm="transformer.ln_f",
        attention="attn",
        mlp="mlp",
        out_proj="c_proj",
        pre_attn_norm="ln_1",
        post_attn_norm=None,
        pre_mlp_norm="ln_2",
        post_mlp_norm=None,
        conv1d_out_proj=True,
        softmax_fp32=False,
    ),
    Family(
        name="GPT-NeoX/Pythia",
        model_types=("gpt_neox",),
        layers="gpt_neox.layers",
        final_norm="gpt_neox.final_layer_norm",
        attention="attention",
        mlp="mlp",
        out_proj="dense",
        pre_attn_norm="input_layernorm",
        post_attn_norm=None,
        pre_mlp_norm="post_attention_layernorm",
        post_mlp_norm=None,
    ),
)

SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)
# DeepSeek-LLM and SmolLM2 checkpoints use model_type "llama".
SUPPORTED_DESCRIPTION = (
    "Llama, Mistral, Qwen2/2.5, Qwen3, SmolLM2, DeepSeek-LLM (model_type llama), Phi-3/4, "
    "Gemma 2/3, OLMo-2, GPT-2, GPT-NeoX/Pythia"
)


class ModelConfig(Protocol):
    """The fields of a text model's transformers config that the explorer reads. ``PreTrainedConfig``
    does not declare them: each architecture's config class does."""

    model_type: str
    num_attention_heads: int
    hidden_size: int
    vocab_size: int


def _get(root: nn.Module, path: str) -> nn.Module:
    """The submodule of ``root`` at the dotted ``path``."""
    module = root
    for part in path.split("."):
        module = getattr(module, part)
    return module


def _get_optional(root: nn.Module, path: str | None) -> nn.Module | None:
    """:func:`_get`, or ``None`` where the family has no such module (``path`` is ``None``)."""
    return None if path is None else _get(root, path)


def _weight(module: nn.Module) -> torch.Tensor:
    """``module.weight``, a parameter (``nn.Module`` types its attributes as ``Tensor | Module``)."""
    return cast(torch.Tensor, module.weight)


@dataclass
class Adapter:
    """A model bound to its family: modules by layer, shapes, and the norm linearisation.

    ``n_layers`` = L, ``n_heads`` = H query heads, ``d_model`` = d.
    """

    family: Family
    model: PreTrainedModel
    parallel_residual: bool

    @property
    def config(self) -> ModelConfig:
        return cast(ModelConfig, self.model.config)

    @property
    def layers(self) -> list[nn.Module]:
        return list(cast(nn.ModuleList, _get(self.model, self.family.layers)))

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    def attention(self, layer: nn.Module) -> nn.Module:
        return _get(layer, self.family.attention)

    def mlp(self, layer: nn.Module) -> nn.Module:
        return _get(layer, self.family.mlp)

    def norm(self, layer: nn.Module, which: str) -> nn.Module | None:
        """``which`` is one of ``pre_attn``, ``post_attn``, ``pre_mlp``, ``post_mlp``."""
        return _get_optional(layer, getattr(self.family, f"{which}_norm"))

    @property
    def final_norm(self) -> nn.Module:
        return _get(self.model, self.family.final_norm)

    def out_proj(self, layer: nn.Module) -> nn.Module:
        """The attention's output projection module (a ``Linear``, or GPT-2's ``Conv1D``)."""
        return _get(self.attention(layer), self.family.out_proj)

    def out_proj_weight(self, layer: nn.Module) -> torch.Tensor:
        """The attention output projection as ``[d, H * Dh]`` (``y = W @ concat_h(v_h)``)."""
        weight = _weight(self.out_proj(layer))
        return weight.t() if self.family.conv1d_out_proj else weight

    def out_proj_bias(self, layer: nn.Module) -> torch.Tensor | None:
        """The attention output projection's bias ``[d]`` (not an edge of the graph), or ``None``."""
        return getattr(self.out_proj(layer), "bias", None)

    def norm_gain(self, norm: nn.Module) -> torch.Tensor:
        """The norm's elementwise gain ``gamma`` as float32 ``[d]``."""
        return _weight(norm).float() + self.family.gain_offset

    def norm_inv_std(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``inv_std`` of the norm applied to ``x [..., d]``, as float32 ``[...]``.

        RMSNorm: ``1 / sqrt(mean(x^2) + eps)``; LayerNorm: ``1 / sqrt(var(x) + eps)``.
        """
        xf = x.float()
        if isinstance(norm, nn.LayerNorm):
            return torch.rsqrt(xf.var(-1, unbiased=False) + norm.eps)
        eps = getattr(norm, "variance_epsilon", None)
        if eps is None:
            eps = cast(float, norm.eps)
        return torch.rsqrt(xf.pow(2).mean(-1) + eps)


def family_for(model_type: str) -> Family:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise UnsupportedArchitecture(f"unsupported architecture '{model_type}'; supported: {SUPPORTED_DESCRIPTION}")


def adapter_for(model: PreTrainedModel) -> Adapter:
    """Bind ``model`` (a ``*ForCausalLM``) to its family, or raise :class:`UnsupportedArchitecture`."""
    config = model.config
    family = family_for(config.model_type)
    if config.model_type == "gpt2" and getattr(config, "reorder_and_upcast_attn", False):
        raise UnsupportedArchitecture("GPT-2 with reorder_and_upcast_attn is not supported")
    try:
        _get(model, family.layers)
    except AttributeError as exc:  # e.g. a multimodal Gemma 3 wrapper
        raise UnsupportedArchitecture(
            f"model class {type(model).__name__} is not a text-only causal LM of family {family.name}"
        ) from exc
    parallel = bool(getattr(config, "use_parallel_residual", False))
    return Adapter(family=family, model=model, parallel_residual=parallel)
