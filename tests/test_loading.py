"""Model loading: the embedded model, local folders, device and dtype selection."""

from __future__ import annotations

import pytest
import torch

from explorer.errors import BadSetting
from explorer.models.loading import embedded_folder, load_model, resolve_device, resolve_dtype
from explorer.trace import trace_prompt


def test_embedded_model_is_converted_once_to_safetensors(smollm):
    folder = embedded_folder("smollm2-135m")
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    assert smollm.adapter.family.name == "Llama-style"
    assert smollm.adapter.n_layers == 30 and smollm.adapter.n_heads == 9


def test_local_folder_loads_like_the_embedded_model(smollm):
    lm = load_model(str(embedded_folder("smollm2-135m")), device="cpu", dtype="float32")
    a = trace_prompt(lm, "Hello world", )
    b = trace_prompt(smollm, "Hello world")
    assert [s.trace.tv for s in a.strata] == [s.trace.tv for s in b.strata]


def test_device_and_dtype_resolution():
    cpu = resolve_device("cpu")
    assert cpu.type == "cpu"
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    with pytest.raises(BadSetting):
        resolve_dtype("int3", cpu)
    with pytest.raises(BadSetting):
        resolve_device("nonsense-device")
    if not torch.cuda.is_available():
        with pytest.raises(BadSetting, match="no CUDA"):
            resolve_device("cuda")


def test_random_model_from_a_config_file(tmp_path):
    import json

    from explorer.models.loading import load_model, load_tokenizer

    cfg = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 49152}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    spec = f"random:{tmp_path}"
    a, b = load_model(spec, device="cpu"), load_model(spec, device="cpu")
    assert a.model_id == spec and a.model.config.num_hidden_layers == 2
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):  # seeded: every process builds the same
        assert torch.equal(pa, pb)
    assert load_tokenizer(spec)("The capital")["input_ids"] == a.tokenizer("The capital")["input_ids"]
