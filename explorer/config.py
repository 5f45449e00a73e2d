"""The app's configuration: which models may be loaded, prompt and corpus limits, what a user may read
from disk, device defaults, and demo mode for a hosted demo.

Read from a TOML file named by ``$STRACE_CONFIG`` or by ``--config PATH`` after ``--`` on the
``streamlit run app.py`` command line; without one, :data:`LOCAL` applies. Every field is checked, and a bad
value gets a :class:`BadConfig` naming the field. Presets live in ``config/local.toml`` and
``config/demo.toml``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from explorer.errors import BadConfig
from explorer.models.loading import DEFAULT_MODEL, EMBEDDED
from explorer.options import DEVICES, DTYPES, is_device_name

ENV = "STRACE_CONFIG"


@dataclass(frozen=True)
class AppConfig:
    """``models``: the models offered (empty: any hub id or folder may be typed as well); ``demo``: a
    hosted demo (only ``models``, no local paths or uploads, small corpus runs, a banner)."""

    models: tuple[str, ...] = ("smollm2-135m", "gemma3-270m", "gpt2", "EleutherAI/pythia-160m", "Qwen/Qwen3-0.6B-Base")
    default_model: str = DEFAULT_MODEL
    demo: bool = False
    allow_other_models: bool = True
    max_prompt_tokens: int = 256
    allow_local_paths: bool = True
    allow_uploads: bool = True
    corpus_max_prompts: int = 1000
    cache_dir: str = ""
    cache_max_entries: int = 8
    cache_max_mb: int = 1024
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False
    debug_panel: bool = False
    source: str = field(default="built-in defaults", compare=False)

    def __post_init__(self):
        if not self.models:
            raise BadConfig("models: give at least one model")
        if self.default_model not in self.models:
            raise BadConfig(f"default_model: '{self.default_model}' is not among models ({', '.join(self.models)})")
        for name in ("max_prompt_tokens", "corpus_max_prompts", "cache_max_entries", "cache_max_mb"):
            if getattr(self, name) < 1:
                raise BadConfig(f"{name}: must be at least 1, got {getattr(self, name)}")
        if self.max_prompt_tokens > 8192:
            raise BadConfig(f"max_prompt_tokens: at most 8192, got {self.max_prompt_tokens}")
        if not is_device_name(self.device):
            raise BadConfig(f"device: one of {', '.join(DEVICES)} or cuda:N, got '{self.device}'")
        if self.dtype not in ("auto", *DTYPES):
            raise BadConfig(f"dtype: one of auto, {', '.join(DTYPES)}, got '{self.dtype}'")
        if self.demo and (
            self.allow_local_paths or self.allow_uploads or self.allow_other_models or self.trust_remote_code
        ):
            raise BadConfig(
                "demo: a demo allows no local paths, uploads, other models or remote code; "
                "set allow_local_paths, allow_uploads, allow_other_models and trust_remote_code "
                "to false"
            )

    def check_model(self, model_id: str) -> None:
        """Raise :class:`BadConfig` if this configuration does not let ``model_id`` be loaded."""
        if model_id in self.models:
            return
        if not self.allow_other_models:
            raise BadConfig(f"this app offers only these models: {', '.join(self.models)}")
        if not self.allow_local_paths and model_id not in EMBEDDED and _looks_local(model_id):
            raise BadConfig("loading models from local folders is turned off here")


def _looks_local(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or os.path.exists(model_id)


LOCAL = AppConfig()
DEMO = AppConfig(
    models=("smollm2-135m", "gemma3-270m"),
    demo=True,
    allow_other_models=False,
    max_prompt_tokens=64,
    allow_local_paths=False,
    allow_uploads=False,
    corpus_max_prompts=10,
    source="demo preset",
)

# Field annotations are strings here (``from __future__ import annotations``).
_TYPES: dict[str, str] = {f.name: str(f.type) for f in fields(AppConfig) if f.name != "source"}


def _check_type(name: str, value):
    kind = _TYPES[name]
    if kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "str":
        ok = isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)
        value = tuple(v.strip() for v in value) if ok else value
    if not ok:
        want = {"bool": "true or false", "int": "a whole number", "str": "a string"}.get(kind, "a list of strings")
        raise BadConfig(f"{name}: expected {want}, got {value!r}")
    return value


def parse_config(data: dict, source: str = "<dict>") -> AppConfig:
    """An :class:`AppConfig` from a mapping (a TOML table): unknown keys and bad values are errors. With
    ``demo = true``, the fields it does not set are :data:`DEMO`'s (demo mode's limits), else :data:`LOCAL`'s."""
    if "explorer" in data and isinstance(data["explorer"], dict) and len(data) == 1:
        data = data["explorer"]
    unknown = sorted(set(data) - set(_TYPES))
    if unknown:
        raise BadConfig(f"{source}: unknown setting {', '.join(unknown)} (known: {', '.join(_TYPES)})")
    values = {k: _check_type(k, v) for k, v in data.items()}
    try:
        return replace(DEMO if values.get("demo") is True else LOCAL, **values, source=source)
    except BadConfig as exc:
        raise BadConfig(f"{source}: {exc}") from None


def load_config(path: str | os.PathLike) -> AppConfig:
    path = Path(path).expanduser()
    if path.is_dir():
        raise BadConfig(f"{path} is a folder, not a configuration file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadConfig(f"no configuration file at {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BadConfig(f"{path} is not valid TOML ({exc})") from None
    except OSError as exc:
        raise BadConfig(f"the configuration file {path} cannot be read ({exc.strerror or exc})") from None
    return parse_config(data, str(path))


def config_path(argv: list[str] | None = None) -> str | None:
    """The configuration file named by ``--config PATH`` in ``argv`` (the script's arguments after
    ``--``), else by ``$STRACE_CONFIG``; ``None`` for the built-in defaults."""
    argv = argv or []
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
    return os.environ.get(ENV) or None


def current_config(argv: list[str] | None = None) -> AppConfig:
    path = config_path(argv)
    return load_config(path) if path else LOCAL
