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
    a = trace_prompt(
        lm,
        "Hello world",
    )
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

    cfg = {
        "model_type": "llama",
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 49152,
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    spec = f"random:{tmp_path}"
    a, b = load_model(spec, device="cpu"), load_model(spec, device="cpu")
    assert a.model_id == spec and a.model.config.num_hidden_layers == 2
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):  # seeded: every process builds the same
        assert torch.equal(pa, pb)
    assert load_tokenizer(spec)("The capital")["input_ids"] == a.tokenizer("The capital")["input_ids"]


def tiny_tokenizer():
    """A word-level tokenizer of a few words (ids within the tiny models' vocabulary), as transformers saves it."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "hello", "world", "the", "cat", "sat", "on", "mat"]
    tok = Tokenizer(models.WordLevel({w: i + 3 for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]")


def model_folder(path, weights: str | None = "safetensors", tokenizer: bool = True):
    """A local model folder of a tiny Llama: weights as safetensors, as a pickle only (``pytorch_model.bin``,
    written with ``torch.save``: transformers 5 writes safetensors even with ``safe_serialization=False``),
    or none; with or without a tokenizer."""
    from tests.helpers import make_tiny

    model = make_tiny("llama")
    model.save_pretrained(path)
    if weights != "safetensors":
        (path / "model.safetensors").unlink()
    if weights == "pickle":
        torch.save(model.state_dict(), path / "pytorch_model.bin")
    if tokenizer:
        tiny_tokenizer().save_pretrained(path)
    return path


def _edit_config(folder, **changes):
    import json

    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not None}
    (folder / "config.json").write_text(json.dumps(data))


def test_a_tiny_local_folder_loads_and_traces(tmp_path):
    lm = load_model(str(model_folder(tmp_path / "m")), device="cpu")
    assert lm.adapter.n_layers == 3
    assert trace_prompt(lm, "hello world the cat").strata[-1].trace.tv < 1e-4


def _break(folder, how: str) -> str:
    """Break a good folder one way; the words the refusal must say."""
    if how == "broken config":
        (folder / "config.json").write_text("{not json")
        return "config.json is not valid JSON"
    if how == "no config":
        (folder / "config.json").unlink()
        return "has no config.json"
    if how == "unknown model_type":
        _edit_config(folder, model_type="banana")
        return "model_type 'banana', which this version of transformers does not know"
    if how == "no model_type":
        _edit_config(folder, model_type=None)
        return "names no model_type"
    if how == "remote code":  # its code must never run: importing it would raise
        _edit_config(
            folder,
            model_type="mything",
            auto_map={
                "AutoConfig": "configuration_mything.MyConfig",
                "AutoModelForCausalLM": "modeling_mything.MyModel",
            },
        )
        (folder / "configuration_mything.py").write_text("raise SystemExit('remote code ran')\n")
        return "needs its own code to load"
    if how == "no weights":
        (folder / "model.safetensors").unlink()
        return "has no weights"
    if how == "no tokenizer":
        for name in ("tokenizer.json", "tokenizer_config.json"):
            (folder / name).unlink()
        return "has no tokenizer"
    if how == "broken tokenizer":
        (folder / "tokenizer.json").write_text("{oops")
        return "its tokenizer cannot be loaded"
    if how == "broken weights":
        (folder / "model.safetensors").write_bytes(b"not a safetensors file")
        return "its weights cannot be loaded"
    if how == "bad config value":
        _edit_config(folder, hidden_size="wide")
        return "its config.json cannot be loaded"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "broken config",
        "no config",
        "unknown model_type",
        "no model_type",
        "remote code",
        "no weights",
        "no tokenizer",
        "broken tokenizer",
        "broken weights",
        "bad config value",
    ],
)
def test_a_broken_local_folder_is_reported_as_what_is_wrong_with_it(tmp_path, how):
    from explorer.errors import BadModel
    from explorer.models.loading import load_tokenizer

    folder = model_folder(tmp_path / "m")
    words = _break(folder, how)
    with pytest.raises(BadModel) as error:
        load_model(str(folder), device="cpu")
    message = str(error.value)
    assert words in message and str(folder) in message and "\n" not in message, message
    assert "cannot be reached" not in message and "network" not in message
    if how in ("no weights", "broken weights"):  # the tokenizer alone needs no weights
        assert load_tokenizer(str(folder))("hello world")["input_ids"]
    else:
        with pytest.raises(BadModel, match="model folder"):
            load_tokenizer(str(folder))


def _no_unpickling(*args, **kwargs):
    raise AssertionError("a pickle was opened")


def test_pickled_weights_are_refused_and_never_unpickled(tmp_path, monkeypatch):
    from explorer.errors import BadModel

    folder = model_folder(tmp_path / "m", weights="pickle")
    assert (folder / "pytorch_model.bin").exists() and not list(folder.glob("*.safetensors"))
    monkeypatch.setattr(torch, "load", _no_unpickling)
    monkeypatch.setattr("pickle.load", _no_unpickling)
    monkeypatch.setattr("pickle.Unpickler", _no_unpickling)
    with pytest.raises(BadModel, match=r"pytorch_model\.bin, a pickle.*safetensors only"):
        load_model(str(folder), device="cpu")


def test_safetensors_are_preferred_beside_a_pickle(tmp_path, monkeypatch):
    folder = model_folder(tmp_path / "m")
    torch.save({"not": torch.zeros(1)}, folder / "pytorch_model.bin")
    monkeypatch.setattr(torch, "load", _no_unpickling)
    assert load_model(str(folder), device="cpu").adapter.n_layers == 3


@pytest.mark.parametrize(
    "device, message",
    [
        ("meta", "unknown device 'meta'"),
        ("cuda:banana", "unknown device 'cuda:banana'"),
        ("cuda:²", "unknown device"),
        ("cpu:0", "unknown device"),
        ("mps", "Apple MPS is not available"),
        ("cuda:99", "cuda:99"),
    ],
)
def test_devices_that_do_not_exist_here_are_refused(device, message):
    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(BadSetting, match=message):
        resolve_device(device)


def test_the_prompt_cap_is_the_smaller_of_the_setting_and_the_models_context():
    from explorer.errors import BadPrompt
    from explorer.models.limits import effective_max_tokens, model_context
    from explorer.results import Settings
    from tests.helpers import tiny_loaded

    gpt2, _ = tiny_loaded("gpt2")  # n_positions = 128, no max_position_embeddings of its own
    assert model_context(gpt2) == 128
    assert effective_max_tokens(gpt2, 1000) == (128, "the model's context")
    assert effective_max_tokens(gpt2, 64) == (64, "the configured limit")
    with pytest.raises(BadPrompt, match="the prompt has 300 tokens; the limit is 128, the model's context"):
        trace_prompt(gpt2, "x" * 300, Settings(max_tokens=1000, sizes=(1.0,)))
    with pytest.raises(BadPrompt, match="the prompt has 300 tokens; the limit is 64, the configured limit"):
        trace_prompt(gpt2, "x" * 300, Settings(max_tokens=64, sizes=(1.0,)))
    assert len(trace_prompt(gpt2, "x" * 128, Settings(max_tokens=1000, sizes=(1.0,))).tokens) == 128
    llama, _ = tiny_loaded("llama")
    assert effective_max_tokens(llama, 300) == (300, "the configured limit")
