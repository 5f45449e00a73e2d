"""How the views read: sizes written one way everywhere, results labelled without repeats, panels that take
the page's width, a nucleus-recovery measure that tells prompts apart, and colours that read on a light
and on a dark background."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from explorer.corpus import stats
from explorer.corpus.store import find_results, load_results
from explorer.results import Settings
from explorer.trace import trace_prompt
from explorer.views import corpus_curves, curves, style, target
from explorer.views import corpus_tables as ct
from explorer.views.labels import format_size, size_expr, size_texts
from tests.helpers import tiny_loaded
from ui.panels import panel_columns

LIGHT, DARK = "#ffffff", "#0e1117"  # Streamlit's light and dark backgrounds


# ------------------------------------------------------------------------------------------------ sizes


def test_sizes_are_written_one_way():
    assert [format_size(s) for s in (1e-5, 1.2e-3, 0.003, 0.01, 0.04, 0.6, 1.0)] == [
        "1e-5",
        "1.2e-3",
        "3e-3",
        "0.01",
        "0.04",
        "0.6",
        "1",
    ]
    assert size_texts([0.001, float("nan"), None, 0.4]) == ["1e-3", "", "", "0.4"]
    # the axes' Vega expression takes the same two branches at the same threshold
    expr = size_expr("datum.value")
    assert "datum.value >= 0.01" in expr and "'~g'" in expr and "'.1~e'" in expr
    axis = style.size_x(1e-4).to_dict()["axis"]
    assert size_expr() in axis["labelExpr"] and "datum.label == ''" in axis["labelExpr"]


def _tooltip_fields(spec) -> list[dict]:
    found = []
    if isinstance(spec, dict):
        tips = spec.get("encoding", {}).get("tooltip")
        if isinstance(tips, list):
            found += [t for t in tips if isinstance(t, dict)]
        for value in spec.values():
            found += _tooltip_fields(value)
    elif isinstance(spec, list):
        for value in spec:
            found += _tooltip_fields(value)
    return found


@pytest.fixture(scope="module")
def trace():
    lm, _ = tiny_loaded("llama")
    return trace_prompt(lm, "one two three four", Settings(controls=True), target="x", foil="y")


def test_trace_curves_write_sizes_as_the_slider_does(trace):
    for panel in target.panels_beside_curves(trace, 2):
        spec = panel.to_dict()
        tips = _tooltip_fields(spec)
        assert tips and not [t for t in tips if t.get("format") == ".1e"], tips  # no "1.0e-3" anywhere
        sized = [t for t in tips if t.get("title") == "size s"]
        assert sized and all(t["field"] == "s" for t in sized)
        rows = [r for d in spec["datasets"].values() for r in d if r.get("size") is not None and "s" in r]
        assert rows and all(r["s"] == format_size(r["size"]) for r in rows if not math.isnan(r["size"]))


# ----------------------------------------------------------------------------------------------- labels


def _results(model_id: str, folder: str):
    return SimpleNamespace(model_id=model_id, folder=Path(folder))


def test_results_labels_never_repeat_a_name():
    got = ct.labels(
        [
            _results("smollm2-135m", "/r/smollm2-135m"),
            _results("smollm2-135m", "/r/smollm2-135m-kjv40"),
            _results("gpt2", "/a/run1"),
            _results("gpt2", "/b/run2"),
            _results("gemma3-270m", "/r/gemma3-270m"),
            _results("gpt2", "/c/run1"),
        ]  # type: ignore[arg-type]
    )
    assert got == ["smollm2-135m", "smollm2-135m-kjv40", "gpt2 (run1)", "gpt2 (run2)", "gemma3-270m", "gpt2 (run1)'"]
    assert len(set(got)) == len(got)
    assert not [g for g in got if g.count("smollm2-135m") > 1 or g.count("gemma3-270m") > 1]


# ----------------------------------------------------------------------------------------------- panels


def test_panel_rows_hold_at_most_three():
    assert [panel_columns(n) for n in range(1, 8)] == [1, 2, 3, 2, 3, 3, 3]
    assert panel_columns(3, most=2) == 2 and panel_columns(0) == 1


@pytest.fixture(scope="module")
def shipped():
    folders = find_results()
    if not folders:
        pytest.skip("no shipped results")
    return [load_results(f) for f in folders]


def test_corpus_panels_take_the_width_they_are_given(shipped, trace):
    modes = ["all"]
    panels = [
        *corpus_curves.mean_curves(ct.curve_frame(shipped, modes)),
        *corpus_curves.recovery(ct.recovery_by_frame(shipped, modes), ct.recovery_frame(shipped, modes)),
        *corpus_curves.frequency(ct.frequency_frame(shipped, modes)),
        *curves.panels(trace, 1),
    ]
    assert len(panels) >= 3 * len(shipped)
    for panel in panels:
        spec = panel.to_dict()
        assert "width" not in spec, spec.get("title")  # the page gives it
        assert spec["autosize"] == {"type": "fit-x", "contains": "padding"}  # its height stays the plot's
    # the notebook chart keeps its fixed panels, without a sub-chart autosize (Vega-Lite refuses one)
    fixed = curves.chart(trace, 1).to_dict()
    assert [p["width"] for p in fixed["hconcat"]] == [300, 300] and not [p for p in fixed["hconcat"] if "autosize" in p]


def test_recovery_by_size_tells_prompts_apart(shipped):
    for r in shipped:
        by = stats.recovery_by(r, "all").set_index(["k", "by"])["share"]
        p = stats.prompts_of(r, "all")
        for (k, size), share in by.items():
            first = p[f"recovery_{k}"]
            assert share == pytest.approx(float((first <= size * (1 + 1e-9)).mean()))
        some = stats.nucleus_recovery(r, "all").set_index("k")["recovered"]
        assert some.min() > 0.95  # at s = 1 (nearly) every prompt gets there: the old view's near-100% bars
        assert by.min() < 0.5 < by.max() or by.nunique() > 2  # the new one varies
        # shares grow with the size and fall with k
        for k in (1, 10, 50, 90):
            assert list(by.loc[k]) == sorted(by.loc[k])


def test_recovery_table_writes_sizes_and_shares(shipped):
    assert ct.recovery_table([], ["all"]).empty
    table = ct.recovery_table(shipped[:2], ["all"])
    rec, by = ct.recovery_frame(shipped[:2], ["all"]), ct.recovery_by_frame(shipped[:2], ["all"])
    shares = [f"by s = {format_size(b)}" for b in stats.RECOVERY_BY]
    assert list(table.columns) == ["model", "mode", "k", *shares, "at some size", "q25", "median", "q75"]
    assert table["median"].tolist() == size_texts(rec["median"])
    first = by[(by["model"] == table["model"].iloc[0]) & (by["k"] == table["k"].iloc[0])]
    assert [table[c].iloc[0] for c in shares] == pytest.approx(first.sort_values("by")["share"].tolist())


# ----------------------------------------------------------------------------------------------- colours


def _rgb(colour: str) -> tuple[float, float, float]:
    h = colour.lstrip("#")
    return tuple(int(h[i : i + 2], 16) / 255 for i in (0, 2, 4))  # type: ignore[return-value]


def _luminance(rgb) -> float:
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colours (hex strings or RGB triples in 0..1)."""
    la, lb = (_luminance(_rgb(c) if isinstance(c, str) else c) for c in (a, b))
    hi, lo = max(la, lb), min(la, lb)
    return (hi + 0.05) / (lo + 0.05)


def test_mark_colours_read_on_light_and_dark_backgrounds():
    marks = {
        **style.VARIANT_COLOURS,
        **style.MODE_COLOURS,
        **{f"kind {k}": c for k, c in style.KIND_COLOURS.items()},
        **{f"quarter {i}": c for i, c in enumerate(style.QUARTER_COLOURS)},
        "full model": style.FULL_COLOUR,
        "foil": style.FOIL_COLOUR,
        "rule": style.RULE_COLOUR,
        "reference": style.REFERENCE_COLOUR,
    }
    for name, colour in marks.items():  # no near-white mark on white, no near-black one on black
        assert min(contrast(colour, LIGHT), contrast(colour, DARK)) >= 1.6, (name, colour)
    for colour in (style.LABEL_COLOUR,):  # text on a chart: readable on both
        assert min(contrast(colour, LIGHT), contrast(colour, DARK)) >= 3.0


def test_phase_shading_tints_either_background():
    for _, _, _, colour in style.PHASES:
        for background in (LIGHT, DARK):
            bg, fg = _rgb(background), _rgb(colour)
            blended = tuple(style.PHASE_OPACITY * f + (1 - style.PHASE_OPACITY) * b for f, b in zip(fg, bg))
            assert 1.03 < contrast(blended, background) < 1.6, (colour, background)  # seen, not painted over


def test_phase_names_sit_above_the_plot():
    layers = style.phase_shading(1e-4).to_dict()["layer"]
    text = next(layer for layer in layers if layer["mark"]["type"] == "text")
    assert text["mark"]["baseline"] == "bottom" and text["mark"]["dy"] < 0 and text["encoding"]["y"] == {"value": 0}
