"""Any position of a text (METHOD.md section 3 rooted at ``(2L, t)``), many positions at once, generated
continuations, and target/foil tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.errors import BadSetting
from explorer.results import Settings
from explorer.text import generate, parse_positions, trace_continuation, trace_text
from explorer.trace import trace_prompt
from tests.helpers import TINY_CONFIGS, tiny_loaded

TEXT = "Tiny text for the strip!"  # one token per byte with the tests' tokenizer
SETTINGS = Settings(controls=True, compare_modes=True)


def _same(a, b, tol=1e-6):
    """Equal edge orders, and every variant's TV within ``tol``, size by size."""
    np.testing.assert_array_equal(a.order, b.order)
    assert [s.n_edges for s in a.strata] == [s.n_edges for s in b.strata]
    for sa, sb in zip(a.strata, b.strata):
        assert sa.outputs.keys() == sb.outputs.keys()
        for variant in sa.outputs:
            assert abs(sa.outputs[variant].tv - sb.outputs[variant].tv) <= tol, (variant, sa.size)


@pytest.mark.parametrize("family", list(TINY_CONFIGS))
def test_a_position_equals_the_text_cut_after_it(family):
    lm, _ = tiny_loaded(family)
    for t in (1, 7, len(TEXT) - 2):
        at = trace_prompt(lm, TEXT, SETTINGS, position=t)
        cut = trace_prompt(lm, TEXT[: t + 1], SETTINGS)
        _same(at, cut, tol=0.0)
        ids = lm.tokenizer(TEXT)["input_ids"]
        assert at.position == t and at.tokens == cut.tokens and at.next_token == lm.tokenizer.decode(ids[t + 1 : t + 2])
        assert at.layout.n_tokens == t + 1


@pytest.mark.parametrize("family", list(TINY_CONFIGS))
def test_a_strip_equals_one_trace_per_position(family):
    lm, _ = tiny_loaded(family)
    strip = trace_text(lm, TEXT, SETTINGS)
    assert [p.position for p in strip.positions] == list(range(1, len(TEXT)))
    for t, trace in strip.traces.items():
        _same(trace, trace_prompt(lm, TEXT, SETTINGS, position=t))


def test_strip_summaries_follow_the_full_model():
    lm, plain = tiny_loaded("llama")
    strip = trace_text(lm, TEXT, Settings(), positions="2:10")
    ids = torch.tensor([lm.tokenizer(TEXT)["input_ids"]])
    with torch.no_grad():
        probs = torch.softmax(plain(input_ids=ids).logits[0].float(), -1)
    for row in strip.positions:
        t, nxt = row.position, ids[0, row.position + 1]
        assert row.next_token == lm.tokenizer.decode([int(nxt)]) and row.token == lm.tokenizer.decode([int(ids[0, t])])
        assert row.next_token_prob == pytest.approx(float(probs[t, nxt]), rel=1e-5)
        assert row.next_token_rank == int((probs[t] > probs[t, nxt]).sum()) + 1
        trace = strip.traces[t]
        assert row.density == pytest.approx(trace.density_of("trace", "log"))
        assert row.density_linear == pytest.approx(trace.density_of("trace", "linear"))
        assert row.recovery == trace.recovery
    frame = strip.to_frame()
    assert list(frame["position"]) == list(range(2, 10)) and "top1_kept_at" in frame


def test_target_and_foil_at_full_size_equal_the_full_model():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, TEXT, Settings(controls=True), target="x", foil="y")
    full = trace.strata[-1].trace
    name = lambda c: lm.tokenizer.decode(lm.tokenizer(c)["input_ids"])
    assert trace.strata[-1].size == 1.0 and trace.target == name("x") and trace.foil == name("y")
    assert full.target_prob == pytest.approx(trace.full.target_prob, rel=1e-5)
    assert full.foil_prob == pytest.approx(trace.full.foil_prob, rel=1e-5)
    assert full.target_logit_diff == pytest.approx(np.log(full.target_prob) - np.log(full.foil_prob), abs=1e-5)
    # the target does not change the order
    np.testing.assert_array_equal(trace.order, trace_prompt(lm, TEXT, Settings(controls=True)).order)
    # by default the target is the text's next token, else the full model's top-1
    assert trace_prompt(lm, TEXT, Settings(), position=4).target == lm.tokenizer.decode(
        lm.tokenizer(TEXT[5])["input_ids"]
    )
    last = trace_prompt(lm, TEXT, Settings())
    assert last.target == last.full.top[0].token and last.foil is None and last.full.target_logit_diff is None
    assert f'"target": "{name("x")}"' in trace.to_json()


def test_greedy_generation_equals_transformers_and_sampling_follows_its_seed():
    lm, plain = tiny_loaded("llama")
    ids = generate(lm, "Once", 12, greedy=True)
    prompt = torch.tensor([lm.tokenizer("Once")["input_ids"]])
    expected = plain.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0)[0].tolist()
    assert ids == expected
    a = generate(lm, "Once", 12, top_p=0.6, seed=3)
    assert a == generate(lm, "Once", 12, top_p=0.6, seed=3)
    assert a != generate(lm, "Once", 12, top_p=0.6, seed=4) or a != generate(lm, "Once", 12, top_p=0.6, seed=5)


def test_a_continuation_traces_every_generated_token():
    lm, _ = tiny_loaded("llama")
    strip = trace_continuation(lm, "Once", 6, Settings(), top_p=0.6, seed=0)
    n_prompt = len("Once")
    assert strip.generated_from == n_prompt
    assert [p.position for p in strip.positions] == list(range(n_prompt - 1, len(strip.token_ids) - 1))
    assert all(p.generated for p in strip.positions)
    assert [p.next_token for p in strip.positions] == strip.tokens[n_prompt:]


@pytest.mark.parametrize(
    "spec, expected",
    [
        (None, list(range(1, 6))),
        ("2:", [2, 3, 4, 5]),
        (":3", [1, 2]),
        ("-1", [5]),
        ("1,3,-2", [1, 3, 4]),
        ("0:6:2", [2, 4]),
    ],
)
def test_position_specs(spec, expected):
    assert parse_positions(spec, 6) == expected


@pytest.mark.parametrize("spec", ["9", "0", "-6", "a", "1:2:3:4", "7:"])
def test_bad_position_specs_are_refused(spec):
    with pytest.raises(BadSetting):
        parse_positions(spec, 6)


def test_a_position_outside_the_text_is_refused():
    lm, _ = tiny_loaded("llama")
    for position in (len(TEXT), 0, -len(TEXT)):
        with pytest.raises(BadSetting, match="outside"):
            trace_prompt(lm, TEXT, Settings(), position=position)


def test_the_embedded_model_traces_a_position_as_the_cut_text(smollm):
    text = "The cat sat on the mat because it was"
    strip = trace_text(smollm, text, Settings(), positions=[3, -1])
    ids = smollm.tokenizer(text)["input_ids"]
    for t, trace in strip.traces.items():
        cut = trace_prompt(smollm, smollm.tokenizer.decode(ids[: t + 1]), Settings())
        assert cut.token_ids == ids[: t + 1]
        # One forward pass over the whole text against one over the cut text: float32 rounding through 30
        # layers moves weights by about 1e-6 (relative), enough to swap a few edges of equal weight, and
        # TVs by a few 1e-6 (the strip's masked passes also run over the group's longest prefix). The
        # weights are fractions of a node's inputs: near zero the rounding is absolute (one weight of
        # 1.2e-5 moved by 1.6e-10 on one machine, 1.3e-5 relative), hence the atol.
        np.testing.assert_allclose(trace.order_weights, cut.order_weights, rtol=1e-5, atol=1e-8)
        assert (trace.order != cut.order).mean() < 0.01
        for a, b in zip(trace.strata, cut.strata):
            assert a.n_edges == b.n_edges and abs(a.trace.tv - b.trace.tv) < 2e-5


def test_groups_stay_within_memory_and_padding():
    from explorer.text import plan_groups

    cost = lambda longest, k: k * (longest + 1) ** 2
    groups = plan_groups(list(range(1, 64)), cost)
    assert sorted(t for g in groups for t in g) == list(range(1, 64))
    for g in groups:
        assert cost(g[-1], len(g)) <= cost(63, 1) and g[0] + 1 >= 0.9 * (g[-1] + 1)
    assert max(len(g) for g in groups) > 1  # neighbouring positions share batches
