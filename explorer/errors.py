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


class OtherRun(BadResults):
    """A results folder that holds another run (other settings, model, or another version of its source):
    ``str()`` is the command line's message; ``folder`` and ``reason`` (``"holds a run with other
    settings (weighting: l1 → l2)"``) let an interface say what to do in its own words."""

    def __init__(self, message: str, folder: object, reason: str):
        super().__init__(message)
        self.folder = folder
        self.reason = reason


class BadTraceFile(BadResults):
    """A saved trace (or graph) file that cannot be read back: not JSON, truncated, not a trace, of another
    schema version, damaged, or over the size cap."""


class BadConfig(ExplorerError):
    """A configuration file or value that cannot be used, or an action the configuration forbids."""
