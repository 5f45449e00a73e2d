"""The Hugging Face hub, seen from this machine before a model is loaded from it: whether a hub model's
files are in the local cache, whether the hub can be reached, and a quick refusal of a hub model that is
neither cached nor reachable, with a clear message instead of the hub client's retries (about 25 s
without a network)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urlparse

from explorer.errors import ModelNotFound

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
PROBE_TIMEOUT_S = 2.0
PROBE_TTL_S = 30.0


def in_hub_cache(model_id: str, revision: str | None = None, hub_cache: str | None = None) -> bool:
    """Whether the local Hugging Face cache (``hub_cache``, default the hub client's) holds ``model_id``'s
    ``config.json`` and safetensors weights (one file, or a shard index) at ``revision``."""
    from huggingface_hub import try_to_load_from_cache

    def cached(name: str) -> bool:
        try:
            found = try_to_load_from_cache(model_id, name, cache_dir=hub_cache, revision=revision)
        except Exception:  # not a valid repository id, an unreadable cache: not there
            return False
        return isinstance(found, str)

    return cached("config.json") and any(cached(w) for w in WEIGHT_FILES)


_probed: dict[str, tuple[float, bool]] = {}


def endpoint() -> tuple[str, int]:
    """The hub's host and port (``HF_ENDPOINT``, default huggingface.co)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether the hub's host answers a TCP connection within ``timeout`` seconds (the name lookup
    included); remembered for :data:`PROBE_TTL_S`. Behind a proxy (``HTTPS_PROXY``, ``ALL_PROXY``) the
    direct connection proves nothing, so the hub is taken to be reachable."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return True
    host, port = endpoint()
    key = f"{host}:{port}"
    seen = _probed.get(key)
    if seen is not None and time.monotonic() - seen[0] < PROBE_TTL_S:
        return seen[1]
    answer: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # the name lookup has no timeout of its own
    thread.start()
    thread.join(timeout)
    ok = bool(answer and answer[0])
    _probed[key] = (time.monotonic(), ok)
    return ok


def offline() -> bool:
    """Whether the hub client is told to stay offline (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def require_hub(model_id: str, revision: str | None = None, here: Iterable[str] = ()) -> None:
    """Raise :class:`ModelNotFound` at once for the hub model ``model_id`` when it is not in the local
    cache and the hub cannot be reached (offline, or no answer within :data:`PROBE_TIMEOUT_S`); ``here``:
    the models that load without the network, named in the message."""
    if in_hub_cache(model_id, revision):
        return
    why = "the hub client is set offline (HF_HUB_OFFLINE)" if offline() else None
    if why is None and not hub_reachable():
        why = f"{endpoint()[0]} cannot be reached (no network)"
    if why:
        names = ", ".join(here)
        raise ModelNotFound(
            f"model '{model_id}' is not in this machine's Hugging Face cache and {why}: connect to the "
            "network, or choose a model available here" + (f" (embedded: {names})" if names else "")
        )
