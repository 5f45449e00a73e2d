"""Where a model would load from on this machine, known before loading it: an embedded model (its package
installed, or already converted), a local folder, a hub model whose files are in the local Hugging Face
cache (:mod:`explorer.models.hub`), or a hub model that needs the network. The model lists say it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from explorer.models.hub import in_hub_cache
from explorer.models.loading import EMBEDDED, RANDOM, _package_dir, cache_dir

EMBEDDED_HERE, FOLDER, CACHED, NETWORK, NOT_INSTALLED = "embedded", "folder", "cached", "network", "not installed"
NOTES = {
    EMBEDDED_HERE: "embedded",
    FOLDER: "local folder",
    CACHED: "in the local cache",
    NETWORK: "needs the network",
    NOT_INSTALLED: "not installed",
}
"""How the model lists word each place (:attr:`Availability.note`)."""


@dataclass(frozen=True)
class Availability:
    """``where`` ``model_id`` loads from: :data:`EMBEDDED_HERE`, :data:`FOLDER`, :data:`CACHED` (a hub
    model in the local cache), :data:`NETWORK` (a hub model that is not), or :data:`NOT_INSTALLED` (an
    embedded model whose package is missing)."""

    model_id: str
    where: str

    @property
    def here(self) -> bool:
        """Whether it loads without the network."""
        return self.where in (EMBEDDED_HERE, FOLDER, CACHED)

    @property
    def note(self) -> str:
        return NOTES[self.where]

    @property
    def label(self) -> str:
        """``"gpt2 · needs the network"``: the model and where it loads from, for a model list."""
        return f"{self.model_id} · {self.note}"


def availability(model_id: str, revision: str | None = None, hub_cache: str | None = None) -> Availability:
    """Where ``model_id`` (an embedded key, a folder or a hub id) would load from on this machine."""
    if model_id in EMBEDDED:
        converted = cache_dir() / "models" / model_id
        installed = _package_dir(EMBEDDED[model_id].package) is not None
        return Availability(model_id, EMBEDDED_HERE if installed or converted.is_dir() else NOT_INSTALLED)
    if model_id.startswith(RANDOM) or os.path.isdir(os.path.expanduser(model_id)):
        return Availability(model_id, FOLDER)
    return Availability(model_id, CACHED if in_hub_cache(model_id, revision, hub_cache) else NETWORK)
