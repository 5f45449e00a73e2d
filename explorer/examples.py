"""Guided examples: prompts chosen to contrast, each with the settings that show its point and one
sentence on what to look for.

The sentences state what the embedded model (SmolLM2-135M-Instruct, float32) actually does; ``top1``
and ``top1_kept_from`` hold the measured values the sentence relies on (the full model's top-1 token
and the smallest evaluated size whose subgraph keeps it), so that tests can check them. Other models
will differ.

    from explorer import load_model
    from explorer.examples import EXAMPLES
    trace = EXAMPLES[1].trace(load_model())
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from explorer.models.loading import LoadedModel
from explorer.options import Mode
from explorer.results import Settings, Trace
from explorer.trace import trace_prompt


@dataclass(frozen=True)
class Example:
    """A prompt with its settings. ``look_for``: one sentence on what the views show; ``gold``: the
    expected next token where there is one; ``size``: the size the Trace page's slider starts at
    (``None``: the first size that keeps the top-1 token); ``component``: a head or MLP worth inspecting,
    which reads token ``component_reads`` (its text) into the last position from size ``component_from``
    on."""

    key: str
    title: str
    prompt: str
    look_for: str
    weighting: str = "l1"
    mode: Mode = "all"
    controls: bool = False
    compare_modes: bool = False
    gold: str | None = None
    size: float | None = None
    component: str | None = None
    component_reads: str | None = None
    component_from: float | None = None
    top1: str | None = None
    top1_kept_from: float | None = None

    @property
    def settings(self) -> Settings:
        return Settings(
            weighting=self.weighting, mode=self.mode, controls=self.controls, compare_modes=self.compare_modes
        )

    @property
    def label(self) -> str:
        """Title and prompt, for a picker (the prompt quoted, so that a final space shows)."""
        return f"{self.title}: {self.prompt!r}"

    def trace(self, lm: LoadedModel, **overrides) -> Trace:
        """The example traced on ``lm``; keyword arguments override settings (``controls=True``...)."""
        return trace_prompt(lm, self.prompt, replace(self.settings, **overrides), gold=self.gold)


EXAMPLES: tuple[Example, ...] = (
    Example(
        key="fact",
        title="A memorised fact",
        prompt="The capital of France is",
        look_for="' Paris' (77%) comes back at s = 0.4 when every edge outside the trace is removed, but "
        "already at s = 0.2 when attention is kept (the 's-trace, attention-kept' line in Error against "
        "size): the ablation mode changes the answer.",
        controls=True,
        compare_modes=True,
        gold=" Paris",
        top1=" Paris",
        top1_kept_from=0.4,
    ),
    Example(
        key="copy",
        title="A repeated list the model can copy",
        prompt="Alice, Bob, Carol, Dave. Alice, Bob, Carol,",
        look_for="The model copies ' Dave' (59%) from the first list: inspect head a18.h6 under Components, "
        "whose edge from the first ' Dave' into the last token is in the trace from s = 0.004, long "
        "before the subgraph itself predicts ' Dave' (s = 0.4; at 0.2 it still says ' Carol').",
        gold=" Dave",
        component="a18.h6",
        component_reads=" Dave",
        component_from=0.004,
        top1=" Dave",
        top1_kept_from=0.4,
    ),
    Example(
        key="agreement",
        title="Agreement across a phrase",
        prompt="The keys to the cabinet in the kitchen",
        look_for="' are' (27%) agrees with ' keys', six tokens back, not with ' cabinet' or ' kitchen': head "
        "a26.h0 (Components) carries ' keys' straight into the last token from s = 0.01, and ' are' "
        "is the subgraph's top-1 from s = 0.4.",
        gold=" are",
        component="a26.h0",
        component_reads=" keys",
        component_from=0.01,
        top1=" are",
        top1_kept_from=0.4,
    ),
    Example(
        key="arithmetic",
        title="Arithmetic with a worked example",
        prompt="2 + 2 = 4, 3 + 5 = ",
        look_for="The prompt ends with a space because this tokenizer writes digits as their own tokens; "
        "'8' (88%) is first kept at s = 0.2 with l2 edge weights but only at s = 0.4 with l1 (switch "
        "Edge weight): the weighting decides which edges the search takes first.",
        weighting="l2",
        gold="8",
        top1="8",
        top1_kept_from=0.2,
    ),
    Example(
        key="open",
        title="An open continuation",
        prompt="Once upon a time, there was a",
        look_for="The full model spreads its bet (' small' has 6%, entropy 5.6 nats): ' small' comes back at "
        "s = 0.4, but a 50% shared nucleus needs the whole graph, and the random control stays far "
        "above the trace (TV about 0.9 against 0.2 at s = 0.4).",
        controls=True,
        top1=" small",
        top1_kept_from=0.4,
    ),
)

BY_KEY: dict[str, Example] = {ex.key: ex for ex in EXAMPLES}
