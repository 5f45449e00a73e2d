"""The component panel's charts (explorer/views/component.py) show the engine's numbers: the pattern's cells
are the head's probabilities, the outlined cells are exactly its edges in the trace, the effects are the
promoted and suppressed tokens, and the what-if chart holds the three distributions' top tokens."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.inspection import inspect_component
from explorer.results import Settings
from explorer.trace import trace_prompt
from explorer.views import component as views
from explorer.whatif import evaluate_subgraph
from tests.helpers import tiny_loaded


@pytest.fixture(scope="module")
def traced():
    lm, _ = tiny_loaded("llama")
    return lm, trace_prompt(lm, "a tiny prompt", Settings(sizes=(0.05, 0.2, 0.5, 1.0)))


def test_pattern_cells_are_the_heads_probabilities_and_marks_are_its_edges(traced):
    lm, tr = traced
    name = max(tr.strata[2].components, key=lambda n: tr.strata[2].components[n] if n.startswith("a") else -1)
    ins = inspect_component(lm, tr, name, tr.strata[2].size)
    df = views.pattern_frame(ins)
    T = len(tr.tokens)
    assert len(df) == T * (T + 1) // 2 and (df["key"] <= df["query"]).all()
    assert np.allclose(df["prob"], ins.pattern[df["query"], df["key"]])  # type: ignore[index]
    marked = set(zip(df[df["in_trace"]]["key"], df[df["in_trace"]]["query"]))
    assert marked == {(e.source, e.target) for e in ins.component.edges} and marked
    assert views.pattern_chart(ins).to_dict()  # a valid spec


def test_long_prompts_show_the_last_tokens_of_the_pattern(traced):
    lm, tr = traced
    ins = inspect_component(lm, tr, "a1.h0", 1.0)
    df = views.pattern_frame(ins, max_tokens=4)
    assert set(df["query"]) == set(range(len(tr.tokens) - 4, len(tr.tokens)))


def test_effects_are_the_promoted_and_suppressed_tokens(traced):
    lm, tr = traced
    ins = inspect_component(lm, tr, "m0", 1.0, k=5)
    df = views.effects_frame(ins)
    assert (df["effect"] == "promotes").sum() == 5 and (df["effect"] == "suppresses").sum() == 5
    assert df[df["effect"] == "promotes"]["logit"].min() >= df[df["effect"] == "suppresses"]["logit"].max()
    assert views.pattern_frame(ins).empty  # an MLP has no pattern
    assert views.effects_chart(ins).to_dict()


def test_whatif_chart_holds_the_three_distributions(traced):
    lm, tr = traced
    wi = evaluate_subgraph(lm, tr, size=tr.strata[2].size, remove="a1")
    df = views.whatif_frame(wi, k=3)
    assert list(df["which"].unique()) == ["full model", "subgraph", "changed"] and len(df) == 9
    changed = df[df["which"] == "changed"]["prob"].tolist()
    assert changed == pytest.approx([t.prob for t in wi.output.top[:3]])
    assert views.whatif_chart(wi).to_dict()
