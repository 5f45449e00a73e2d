"""trace_prompt end to end: tiny models of every family, and the real embedded SmolLM2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explorer.density import density
from explorer.errors import BadPrompt, BadSetting
from explorer.export import to_csv, to_json
from explorer.results import Settings
from explorer.trace import trace_modes, trace_prompt
from tests.helpers import TINY_CONFIGS, tiny_loaded


@pytest.mark.parametrize("family", list(TINY_CONFIGS))
def test_every_family_traces_and_full_graph_reproduces_output(family):
    lm, _ = tiny_loaded(family)
    tr = trace_prompt(lm, "a tiny prompt", Settings(controls=True, compare_modes=True, sizes=(0.01, 0.1, 0.5, 1.0)))
    last = tr.strata[-1]
    assert last.size == 1.0 and last.n_edges == tr.n_edges
    assert last.trace.tv < 1e-5 and last.outputs["other_mode"].tv < 1e-5
    assert last.outputs["random"].tv < 1e-5  # all edges: the random control is the full graph too
    assert last.trace.shared_nucleus == 99
    edges = [s.n_edges for s in tr.strata]
    assert edges == sorted(edges)
    assert len(tr.order) == tr.n_edges == len(np.unique(tr.order))


def test_density_integrates_over_the_actual_sizes():
    """METHOD.md section 6: each stratum at ``n_edges / E``, not the grid size it was rounded from."""
    lm, _ = tiny_loaded("llama")
    tr = trace_prompt(lm, "a tiny prompt", Settings(controls=True, sizes=(0.003, 0.01, 0.03, 0.1, 0.5, 1.0)))
    actual = [s.n_edges / tr.n_edges for s in tr.strata]
    assert actual != [s.size for s in tr.strata]  # the rounding matters on this graph
    for variant in ("trace", "random"):
        tv = [s.outputs[variant].tv for s in tr.strata]
        for axis in ("log", "linear"):
            assert tr.density_of(variant, axis) == pytest.approx(density(actual, tv, axis), abs=1e-12)
        assert tr.density_of(variant) != pytest.approx(density([s.size for s in tr.strata], tv), abs=1e-6)
    assert tr.density == tr.density_of("trace")
    assert tr.actual_sizes() == actual


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_trace_modes_equal_one_trace_per_mode(family):
    lm, _ = tiny_loaded(family)
    settings = Settings(controls=True, sizes=(0.01, 0.1, 0.5, 1.0))
    both = trace_modes(lm, "a tiny prompt", settings, gold=" x")
    assert [t.settings.mode for t in both] == ["all", "attention-kept"]
    for tr in both:
        one = trace_prompt(
            lm, "a tiny prompt", Settings(mode=tr.settings.mode, controls=True, sizes=(0.01, 0.1, 0.5, 1.0)), gold=" x"
        )
        assert np.array_equal(tr.order, one.order)
        for a, b in zip(tr.strata, one.strata):
            assert sorted(a.outputs) == sorted(b.outputs) == ["inverse", "random", "trace"]
            for v in a.outputs:
                assert a.outputs[v].tv == pytest.approx(b.outputs[v].tv, abs=1e-6)
                assert a.outputs[v].gold_ce == pytest.approx(b.outputs[v].gold_ce, abs=1e-5)
        assert tr.density == pytest.approx(one.density, abs=1e-5)
    assert both[0].strata[1].trace.tv != both[1].strata[1].trace.tv


def test_settings_are_checked():
    with pytest.raises(BadSetting):
        Settings(weighting="l3")
    with pytest.raises(BadSetting):
        Settings(mode="none")
    with pytest.raises(BadSetting):
        Settings(sizes=(0.0, 0.5))


def test_bad_prompts(smollm):
    with pytest.raises(BadPrompt, match="empty"):
        trace_prompt(smollm, "   ")
    with pytest.raises(BadPrompt, match="limit is 8"):
        trace_prompt(smollm, "one two three four five six seven eight nine ten", Settings(max_tokens=8))


@pytest.fixture(scope="module")
def smollm_trace(smollm):
    return trace_prompt(smollm, "The capital of France is", Settings(controls=True, compare_modes=True), gold=" Paris")


def test_smollm_trace(smollm_trace):
    tr = smollm_trace
    assert tr.tokens == ["The", " capital", " of", " France", " is"]
    assert tr.full.top[0].token == " Paris"
    full = tr.strata[-1]
    assert full.size == 1.0 and full.trace.tv < 1e-5 and full.outputs["other_mode"].tv < 1e-5
    assert full.kinds["attention"] + full.kinds["mlp"] + full.kinds["residual"] == tr.n_edges
    # the papers' reading: tiny subgraphs lose the distribution, large ones recover it
    assert tr.strata[0].trace.tv > 0.5
    assert 0 < tr.density < 5
    assert tr.recovery[1] is not None
    assert tr.full.gold_ce == pytest.approx(-np.log(tr.full.top[0].prob), rel=1e-4)
    # the inverse control of the whole graph keeps only residual edges: far from the full model
    assert full.outputs["inverse"].tv > 0.5


def test_json_export_records_settings_modes_and_components(smollm_trace):
    data = json.loads(to_json(smollm_trace))
    assert data["settings"]["mode"] == "all" and data["settings"]["weighting"] == "l1"
    assert data["graph"]["edges"] == smollm_trace.n_edges
    s = data["strata"][-1]
    assert set(s["outputs"]) == {"trace", "other_mode", "inverse", "random"}
    assert sum(s["components"].values()) == s["kinds"]["attention"] + s["kinds"]["mlp"]
    assert all(k.startswith(("a", "m")) for k in s["components"])
    assert "a0.h0" in s["components"] and "m29" in s["components"]
    assert to_csv(smollm_trace).splitlines()[0].startswith("size,edges,tv,shared_nucleus")


def test_attention_kept_mode_is_recorded_and_differs(smollm, smollm_trace):
    tr = trace_prompt(smollm, "The capital of France is", Settings(mode="attention-kept"))
    assert json.loads(to_json(tr))["settings"]["mode"] == "attention-kept"
    # same edge order, the other mode's numbers
    np.testing.assert_array_equal(tr.order, smollm_trace.order)
    other = [s.outputs["other_mode"].tv for s in smollm_trace.strata]
    np.testing.assert_allclose([s.trace.tv for s in tr.strata], other, atol=1e-5)
    assert any(abs(a.trace.tv - b.trace.tv) > 0.05 for a, b in zip(tr.strata, smollm_trace.strata))
