"""Helpers the tests share: tiny models of every supported family, built from configs with random weights,
a byte-level tokenizer for them, and a recorded forward pass on fixed ids. Fixtures are in ``conftest.py``."""

from __future__ import annotations

import copy

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GPT2Config,
    GPTNeoXConfig,
    LlamaConfig,
    MistralConfig,
    Olmo2Config,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from explorer.models.loading import prepare_model

VOCAB = 256
_COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)

TINY_CONFIGS = {
    "llama": lambda: LlamaConfig(**_COMMON, num_key_value_heads=2),
    "mistral": lambda: MistralConfig(**_COMMON, num_key_value_heads=2, sliding_window=None),
    "qwen2": lambda: Qwen2Config(**_COMMON, num_key_value_heads=2),
    "qwen3": lambda: Qwen3Config(**_COMMON, num_key_value_heads=2, head_dim=8),
    "phi3": lambda: Phi3Config(**_COMMON, num_key_value_heads=2),
    "gemma2": lambda: Gemma2Config(**_COMMON, num_key_value_heads=2, head_dim=8),
    "gemma3": lambda: Gemma3TextConfig(**_COMMON, num_key_value_heads=2, head_dim=8),
    "olmo2": lambda: Olmo2Config(**_COMMON, num_key_value_heads=2),
    "gpt2": lambda: GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4, n_positions=128, bos_token_id=1, eos_token_id=2
    ),
    "pythia": lambda: GPTNeoXConfig(**_COMMON, use_parallel_residual=True),
    "neox-sequential": lambda: GPTNeoXConfig(**_COMMON, use_parallel_residual=False),
}


class ByteTokenizer:
    """A byte-level tokenizer (ids 3..258 mapped into the tiny vocabulary) for tiny test models."""

    def __call__(self, text, return_tensors=None, add_special_tokens=True):
        if isinstance(text, list):
            return {"input_ids": [self(t)["input_ids"] for t in text]}
        ids = [3 + (b % (VOCAB - 3)) for b in text.encode("utf-8")]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}

    def __len__(self):
        return VOCAB

    def decode(self, ids):
        return "".join(chr(i) if 32 <= i < 127 else f"<{i}>" for i in ids)


def make_tiny(name: str, seed: int = 0, std: float = 0.3, dtype=torch.float32):
    """A plain transformers model (eager attention) of family ``name`` with random weights; std is large
    enough that attention is far from uniform."""
    torch.manual_seed(seed)
    config = TINY_CONFIGS[name]()
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, std)
    return model


def tiny_loaded(name: str, seed: int = 0):
    """An instrumented copy of :func:`make_tiny` as a LoadedModel, and the untouched plain model."""
    plain = make_tiny(name, seed)
    lm = prepare_model(copy.deepcopy(plain), ByteTokenizer(), model_id=f"tiny-{name}")
    return lm, plain


IDS = torch.tensor([[5, 17, 99, 3, 42, 7, 250, 11, 64]])


def record(lm, ids=IDS):
    """The recorded forward pass of ``lm`` on ``ids`` ``[1, T]``: logits and per-layer records."""
    return lm.instrumentation.recorded_forward(ids)


RANDOM_LLAMA = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "tie_word_embeddings": True,
}
"""A three-layer Llama config with the embedded model's vocabulary, for ``--model random:CONFIG``."""


def random_model(folder) -> str:
    """``random:<folder>/config.json`` with :data:`RANDOM_LLAMA` written there: a random-weight model the
    command line loads with the embedded model's tokenizer."""
    import json
    from pathlib import Path

    path = Path(folder) / "config.json"
    path.write_text(json.dumps(RANDOM_LLAMA))
    return f"random:{path}"
