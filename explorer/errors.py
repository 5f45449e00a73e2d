"""Errors the explorer reports to users as one clear line (command line) or message (app)."""


class ExplorerError(Exception):
    """Base class: ``str(error)`` is a complete message for the user."""


class BadPrompt(ExplorerError):
    """Empty prompt, one that is not text (bytes, a number, a lone surrogate), or one longer than the
    configured token cap or the model's context."""


class ModelNotFound(ExplorerError):
    """Unknown model id or folder, no network without a cached copy, or a gated model without a token."""


class BadModel(ModelNotFound):
    """A model that is there but cannot be used: a local folder with a broken or unknown ``config.json``, no
    weights, weights only as a pickle (``pytorch_model.bin``: never unpickled), no tokenizer, or one that
    needs its own code without ``trust_remote_code``."""


class UnsupportedArchitecture(ExplorerError):
    """The model's architecture has no adapter."""


class BadSetting(ExplorerError):
    """An option out of range or of the wrong type: weights, ablation mode, sizes, seed, top-k, device, dtype."""


class OutOfMemory(ExplorerError):
    """The device ran out of memory."""


class BadSource(ExplorerError):
    """A corpus source that cannot be read: missing file, no text column, unknown source name."""


class BadResults(ExplorerError):
    """A results folder or file that is corrupt, foreign, or holds a run with other settings."""


class BadConfig(ExplorerError):
    """A configuration file or value that cannot be used, or an action the configuration forbids."""
