"""s-Trace Explorer: how much of a language model's computation a prompt really needs.

    from explorer import load_model, trace_prompt, Settings
    lm = load_model()                      # the embedded SmolLM2-135M-Instruct
    trace = trace_prompt(lm, "The capital of France is", Settings(controls=True))
    trace.density, trace.to_frame(), trace.to_json()

    from explorer.views import charts      # the app's charts, for a notebook
    charts.curves(trace)

Guided examples (prompts chosen to contrast, with their settings) are in :mod:`explorer.examples`.
"""

from explorer.errors import ExplorerError
from explorer.examples import EXAMPLES, Example
from explorer.models.loading import DEFAULT_MODEL, EMBEDDED, LoadedModel, load_model
from explorer.trace import Settings, Stratum, Trace, trace_prompt

__all__ = [
    "DEFAULT_MODEL", "EMBEDDED", "EXAMPLES", "Example", "ExplorerError", "LoadedModel", "Settings", "Stratum",
    "Trace", "load_model", "trace_prompt",
]
