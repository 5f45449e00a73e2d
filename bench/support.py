"""What the benchmark scripts share (not a script): models built from ``bench/configs`` with random weights,
a tokenizer of plain token ids for them, and random prompts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from explorer.models.loading import prepare_model

CONFIGS = {p.stem: json.loads(p.read_text()) for p in sorted((Path(__file__).parent / "configs").glob("*.json"))}


class IdTokenizer:
    """Prompts are space-separated token ids (random-weight models have no real vocabulary)."""

    def __call__(self, text, return_tensors=None, add_special_tokens=True):
        ids = [int(x) for x in text.split()]
        return {"input_ids": torch.tensor([ids]) if return_tensors == "pt" else ids}

    def decode(self, ids):
        return " ".join(str(i) for i in ids)


def build(name: str, device: str, dtype: torch.dtype, seed: int = 0):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(CONFIGS[name])
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    return prepare_model(model.eval(), IdTokenizer(), model_id=f"{name} (random weights)", device=device)


def random_prompts(n: int, length: int, vocab: int, seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(map(str, rng.integers(100, vocab - 100, length))) for _ in range(n)]
