"""s-Trace Explorer: how much of a language model's computation a prompt really needs.

    from explorer import load_model, trace_prompt, Settings
    lm = load_model()                      # the embedded SmolLM2-135M-Instruct
    trace = trace_prompt(lm, "The capital of France is", Settings(controls=True))
    trace.density, trace.to_frame(), trace.to_json()

    from explorer.views import charts      # the app's charts, for a notebook
    charts.curves(trace)

Guided examples (prompts chosen to contrast, with their settings) are in :mod:`explorer.examples`.
The names below load on first use, so ``import explorer.views.curves`` (or :mod:`explorer.results`) does
not load torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "DEFAULT_MODEL": "explorer.models.loading",
    "EMBEDDED": "explorer.models.loading",
    "LoadedModel": "explorer.models.loading",
    "load_model": "explorer.models.loading",
    "EXAMPLES": "explorer.examples",
    "Example": "explorer.examples",
    "ExplorerError": "explorer.errors",
    "Settings": "explorer.results",
    "Stratum": "explorer.results",
    "Trace": "explorer.results",
    "trace_prompt": "explorer.trace",
    "evaluate_subgraph": "explorer.whatif",
    "inspect_component": "explorer.inspection",
    "read_trace": "explorer.trace_file",
    "trace_pair": "explorer.pairs",
}

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "EXAMPLES",
    "Example",
    "ExplorerError",
    "LoadedModel",
    "Settings",
    "Stratum",
    "Trace",
    "evaluate_subgraph",
    "inspect_component",
    "load_model",
    "read_trace",
    "trace_pair",
    "trace_prompt",
]

if TYPE_CHECKING:
    from explorer.errors import ExplorerError
    from explorer.examples import EXAMPLES, Example
    from explorer.inspection import inspect_component
    from explorer.models.loading import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model
    from explorer.pairs import trace_pair
    from explorer.results import Settings, Stratum, Trace
    from explorer.trace import trace_prompt
    from explorer.trace_file import read_trace
    from explorer.whatif import evaluate_subgraph


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'explorer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
