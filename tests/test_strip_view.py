"""The Text strip's views (:mod:`explorer.views.strip`), the target view (:mod:`explorer.views.target`) and
the strip store's entries, without Streamlit: a tiny random-weight model traces a short text, and every chip
and point shows that text's numbers."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from explorer.results import Settings
from explorer.sweep_cache import Generation, Strip, StripRequest, SweepRequest, SweepStore
from explorer.text import trace_text
from explorer.trace import trace_prompt
from explorer.views import strip, target
from tests.helpers import tiny_loaded

TEXT = "Tiny <b>text</b>\nfor the strip!"  # one token per byte with the tests' tokenizer
SIZE = 0.1


@pytest.fixture(scope="module")
def traced():
    lm, _ = tiny_loaded("llama")
    return lm, trace_text(lm, TEXT, Settings())


def _value(p, key, text):
    if key == "density":
        return p.density
    if key == "entropy":
        return p.entropy
    if key == "next_token_prob":
        return p.next_token_prob
    if key == "tv":
        return {s.size: s.trace.tv for s in text.traces[p.position].strata}.get(SIZE)
    return p.recovery[1]


@pytest.mark.parametrize("key", list(strip.QUANTITIES))
def test_each_chip_shows_its_positions_value(traced, key):
    _, text = traced
    df = strip.frame(text, key, SIZE)
    assert df["position"].tolist() == list(range(len(text.tokens)))
    assert not df.loc[0, "traced"] and math.isnan(df.loc[0, "value"])  # the first token: nothing to trace
    for p in text.positions:
        row = df.loc[p.position]
        want = _value(p, key, text)
        assert row["traced"] and row["token"] == repr(p.token)
        assert math.isnan(row["value"]) if want is None else row["value"] == pytest.approx(want)
        assert row["next_token"] == (repr(p.next_token) if p.next_token is not None else "\u2014")
    # the strip store keeps the TV table, not the traces: the same values
    compact = Strip.of(trace_text(traced[0], TEXT, Settings()))
    assert not compact.text.traces and compact.nbytes < 1 << 20
    again = strip.frame(compact.text, key, SIZE, tv=compact.tv)
    assert again["value"].fillna(-1).tolist() == pytest.approx(df["value"].fillna(-1).tolist())


def test_chips_wrap_inside_the_width_and_break_at_line_breaks():
    tokens = ["The", " capital", " of", " France", " is", " Paris", ".\n", "It", " is", " big", "."]
    df = strip.layout(tokens, width=120)
    assert (df["x"] >= 0).all() and (df["x2"] <= 120).all() and (df["x2"] > df["x"]).all()
    assert df["line"].is_monotonic_increasing and df["line"].max() >= 2
    newline = tokens.index(".\n")
    assert df.loc[newline + 1, "line"] == df.loc[newline, "line"] + 1 and df.loc[newline + 1, "x"] == 0
    same_line = df[df["line"] == 0]
    assert (same_line["x"].iloc[1:].to_numpy() >= same_line["x2"].iloc[:-1].to_numpy()).all()  # no overlap


@pytest.mark.parametrize(
    "token, shown",
    [
        (" France", "France"),
        ("\n", "\u21b5"),
        (" ", "\u2423"),
        ("  ", "\u2423"),
        ("\t", "\u21e5"),
        ("a" * 40, "a" * 23 + "\u2026"),
        ("<b>", "<b>"),
    ],
)
def test_chip_text_makes_whitespace_visible(token, shown):
    assert strip.chip_text(token) == shown


def test_wide_characters_take_two_cells():
    assert strip.text_width("\u6771\u4eac") == 4 * strip.CHAR_PX and strip.text_width("ab") == 2 * strip.CHAR_PX


@pytest.mark.parametrize("key", list(strip.QUANTITIES))
def test_the_strip_chart_selects_a_position_and_draws_tokens_as_text(traced, key):
    _, text = traced
    df = strip.frame(text, key, SIZE)
    spec = strip.chart(df, key, SIZE).to_dict()
    params = spec.get("params", []) + [p for layer in spec["layer"] for p in layer.get("params", [])]
    assert any(p["name"] == strip.SELECTION and p["select"]["fields"] == ["position"] for p in params)
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg" and spec["autosize"]["type"] == "pad"
    words = [layer for layer in spec["layer"] if layer["mark"]["type"] == "text"]
    assert words and words[0]["encoding"]["text"]["field"] == "chip"  # Vega draws text nodes, never markup
    rows = next(v for v in spec["datasets"].values() if v and "chip" in v[0])
    assert [r["chip"] for r in rows] == [strip.chip_text(t) for t in text.tokens]
    line = strip.line(df, key, SIZE, generated_from=5).to_dict()
    points = next(v for v in line["datasets"].values() if v and "value" in v[0])
    assert [r["position"] for r in points] == df.loc[df["value"].notna(), "position"].tolist()


def test_markup_in_a_token_stays_text(traced):
    _, text = traced
    evil = ["<img src=x onerror=1>", "<b>", "&amp;", "**bold**"]
    tokens = evil + text.tokens[len(evil) :]
    spec = strip.chart(strip.frame(replace(text, tokens=tokens))).to_dict()
    rows = next(v for v in spec["datasets"].values() if v and "chip" in v[0])
    assert [r["chip"] for r in rows[: len(evil)]] == evil  # data for Vega's text marks, as typed
    assert all(layer["mark"]["type"] != "image" for layer in spec["layer"]) and "html" not in json.dumps(spec)


def test_light_chips_get_dark_text_and_dark_chips_light_text(traced):
    _, text = traced
    df = strip.frame(text, "density")
    traced_rows = df[df["traced"]]
    assert set(traced_rows["ink"]) <= {strip.DARK_TEXT, strip.LIGHT_TEXT}
    darkest = traced_rows.loc[traced_rows["value"].idxmax()]
    lightest = traced_rows.loc[traced_rows["value"].idxmin()]
    assert darkest["ink"] == strip.LIGHT_TEXT and lightest["ink"] == strip.DARK_TEXT


def test_an_unknown_quantity_is_refused(traced):
    with pytest.raises(ValueError, match="unknown quantity"):
        strip.frame(traced[1], "perplexity")


def test_the_target_view_shows_the_traces_target_and_foil():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, TEXT, Settings(controls=True), position=6, target="x", foil="y")
    df = target.frame(trace)
    prob = df[(df["panel"] == "prob") & df["size"].notna()]
    tgt = prob[prob["series"] == f"target {trace.target!r}"]
    assert tgt["value"].tolist() == pytest.approx([s.trace.target_prob for s in trace.strata])
    diff = df[(df["panel"] == "logit_diff") & df["size"].isna()]
    assert diff["value"].tolist() == pytest.approx([trace.full.target_logit_diff])
    spec = target.beside_curves(trace, 3).to_dict()
    assert len(spec["vconcat"]) == 2 and len(spec["vconcat"][1]["hconcat"]) == 2  # probability, logit difference
    no_foil = trace_prompt(lm, TEXT, Settings())
    assert len(target.chart(no_foil, 0).to_dict()["hconcat"]) == 1


def test_requests_differ_by_position_target_foil_and_generation():
    base = dict(model="m", device="cpu", dtype="float32", revision=None, prompt="p", settings=Settings())
    keys = {
        SweepRequest(**base),
        SweepRequest(**base, position=2),
        SweepRequest(**base, target=" a"),
        SweepRequest(**base, foil=" b"),
        SweepRequest(**base, position=2, target=" a", foil=" b"),
    }
    assert len(keys) == 5
    text = dict(model="m", device="cpu", dtype="float32", revision=None, text="t", settings=Settings())
    strips = {
        StripRequest(**text),
        StripRequest(**text, generation=Generation()),
        StripRequest(**text, generation=Generation(greedy=True)),
        StripRequest(**text, generation=Generation()),
    }
    assert len(strips) == 3 and Generation() == Generation(20, False, 1.0, 0.6, 0)
    store: SweepStore[StripRequest, Strip] = SweepStore(max_entries=1)
    first, second = StripRequest(**text), StripRequest(**text, generation=Generation())
    lm, _ = tiny_loaded("llama")
    made = store.get_or_compute(first, lambda: Strip.of(trace_text(lm, "abc", Settings())))
    assert store.get_or_compute(first, lambda: pytest.fail("computed twice")) is made
    store.put(second, made)
    assert store.get(first) is None  # bounded
