"""The Method page and the Trace page's guided examples, driven by Streamlit's AppTest on the embedded
model: the page runs without exceptions, its figures carry the engine's numbers and change with the
prompt, its buttons open the prompt on the Trace page; every guided example loads its prompt and
settings and shows what its sentence says."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL, Settings, load_model, trace_prompt
from explorer.examples import EXAMPLES
from explorer.views import method, method_graph
from explorer.views.labels import default_stratum, format_size

ROOT = Path(__file__).resolve().parent.parent
METHOD = "ui/pages/method.py"  # relative to app.py
APP = str(ROOT / "app.py")
PROMPT = "The capital of France is"  # the Method page's default prompt
OTHER_PROMPT = "Two plus two is"
TIMEOUT = 600
SECTIONS = 9
N_CHARTS = 8


def checked(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def data_sets(at: AppTest, n: int) -> list[pd.DataFrame]:
    """The data sets of the ``n``-th Altair chart on the page."""
    proto = at.get("vega_lite_chart")[n].proto
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in proto.datasets]


def datasets(at: AppTest, n: int) -> pd.DataFrame:
    """All the data of the ``n``-th Altair chart on the page, stacked."""
    return pd.concat(data_sets(at, n))


def chart_with(at: AppTest, columns: set[str]) -> pd.DataFrame:
    """The data of the first chart on the page that has all of ``columns``."""
    for n in range(len(at.get("vega_lite_chart"))):
        df = datasets(at, n)
        if columns <= set(df.columns):
            return df
    raise AssertionError(f"no chart with columns {columns}")


@pytest.fixture(scope="module")
def lm():
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference(lm):
    """The engine's trace of the page's prompt with the page's settings."""
    return trace_prompt(lm, PROMPT, Settings(controls=True, compare_modes=True))


@pytest.fixture(scope="module")
def page():
    """The Method page, opened from the app (whose first run registers the pages)."""
    at = checked(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    return checked(at.switch_page(METHOD).run())


def test_page_has_every_section_and_figure(page):
    titles = [s.value for s in page.subheader]
    assert len(titles) == SECTIONS and titles[0] == "1. The token-level graph"
    assert len(page.get("vega_lite_chart")) == N_CHARTS
    buttons = [b.label for b in page.button]
    assert len(buttons) == SECTIONS and all(b.startswith("See it on the Trace page") for b in buttons)
    for view in ("Components", "Output distribution", "Composition", "Error against size", "Token graph"):
        assert any(view in b for b in buttons), view


def test_figures_carry_the_engine_numbers(page, reference):
    index = default_stratum(reference)
    assert page.select_slider[0].value == index
    metrics = {m.label: m.value for m in page.metric}
    assert metrics["TV"] == f"{reference.strata[index].trace.tv:.3f}"
    assert metrics["Shared nucleus"] == f"{reference.strata[index].trace.shared_nucleus}%"
    # the two ablation modes, size by size
    modes = chart_with(page, {"mode", "tv", "top1"})
    for mode, variant in (("all", "trace"), ("attention-kept", "other_mode")):
        got = modes[modes["mode"] == mode].sort_values("size")["tv"].tolist()
        assert got == pytest.approx([s.outputs[variant].tv for s in reference.strata], abs=1e-5)
    # the controls
    ctrl = chart_with(page, {"variant", "tv", "shared_nucleus"})
    got = ctrl[ctrl["variant"] == "random control"].sort_values("size")["tv"].tolist()
    assert got == pytest.approx([s.outputs["random"].tv for s in reference.strata], abs=1e-5)
    # the nested sizes
    sizes = chart_with(page, {"edges", "top1_kept"}).drop_duplicates("size").sort_values("size")
    assert sizes["edges"].tolist() == [s.n_edges for s in reference.strata]
    # the greedy order's first edges and the graph's make-up
    first = page.dataframe[1].value
    assert first["from"].tolist() == method.first_edges(reference, 100)["from"].tolist()
    counts = page.dataframe[0].value
    assert counts["edges"].sum() == reference.n_edges
    # the weights into one node sum to 1
    weights = chart_with(page, {"edge", "source", "weight"})
    assert weights["weight"].sum() == pytest.approx(1.0, abs=1e-4)
    # density, in words
    text = " ".join(m.value for m in page.markdown)
    assert f"density {reference.density:.2f}" in text
    assert f"{reference.n_edges:,} edges" in text


def test_size_slider_moves_the_figures(page, reference):
    last = len(reference.strata) - 1
    page.select_slider[0].set_value(last).run()
    checked(page)
    assert {m.label: m.value for m in page.metric}["Size"] == "1"
    rule = [df for n in range(N_CHARTS) for df in data_sets(page, n) if list(df.columns) == ["size"]]
    assert len(rule) == 4 and all(df["size"].iloc[0] == pytest.approx(1.0) for df in rule)


def test_figures_change_with_the_prompt(page, lm):
    def figures():
        return (
            chart_with(page, {"mode", "tv", "top1"}),
            page.dataframe[1].value,
            chart_with(page, {"edges", "top1_kept"}),
        )

    before = figures()
    page.text_input(key="method_prompt").set_value(OTHER_PROMPT).run()
    checked(page)
    after = figures()
    for a, b in zip(before, after):
        assert not a.reset_index(drop=True).equals(b.reset_index(drop=True))
    n_tokens = len(lm.tokenizer(OTHER_PROMPT)["input_ids"])
    assert any(m.value.startswith(f"**{n_tokens} tokens**") for m in page.markdown)
    # the sketch of the graph draws the new prompt's tokens
    sketch = chart_with(page, {"x", "x2", "y", "y2", "kind", "heads"})
    assert sketch["x2"].max() == pytest.approx(n_tokens - 1 + method_graph.SHIFT)
    page.text_input(key="method_prompt").set_value("   ").run()
    assert not page.exception and any("empty" in e.value for e in page.error)


def test_button_opens_the_prompt_on_the_trace_page():
    at = checked(AppTest.from_file(APP, default_timeout=TIMEOUT).run())
    at.switch_page(METHOD).run()
    checked(at)
    assert at.subheader[0].value == "1. The token-level graph"
    at.button(key="open-ablation").click().run()
    checked(at)
    assert [s.value for s in at.subheader][:2] == ["Components", "Output distribution"]
    assert at.text_area(key="prompt").value == PROMPT
    assert at.toggle(key="compare").value and at.toggle(key="controls").value
    assert at.radio(key="mode").value == "all" and at.radio(key="weighting").value == "l1"


@pytest.fixture(scope="module")
def trace_page():
    return checked(AppTest.from_file(APP, default_timeout=TIMEOUT).run())


def test_examples_are_listed_and_the_first_is_the_default_prompt(trace_page):
    box = trace_page.selectbox(key="example")
    assert box.options[1:] == [ex.label for ex in EXAMPLES]
    assert EXAMPLES[0].prompt == PROMPT == trace_page.text_area(key="prompt").value


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.key for ex in EXAMPLES])
def test_guided_example_loads_and_shows_its_point(trace_page, lm, example):
    at = trace_page
    at.selectbox(key="example").select(example.key).run()
    checked(at)
    assert at.text_area(key="prompt").value == example.prompt
    assert at.radio(key="weighting").value == example.weighting
    assert at.radio(key="mode").value == example.mode
    assert at.toggle(key="controls").value == example.controls
    assert at.toggle(key="compare").value == example.compare_modes
    assert any(example.look_for in c.value for c in at.sidebar.caption)
    # distribution, composition, 3 curve panels, token graph (and, for an example that names a component,
    # the component panel's charts)
    assert len(at.get("vega_lite_chart")) >= 6
    metrics = {m.label: m for m in at.metric}
    # what the sentence relies on, measured on the embedded model
    assert metrics["Top-1 here"].proto.delta == f"full: {example.top1!r}"
    assert metrics["Top-1 first kept at"].value == f"s = {format_size(example.top1_kept_from)}"
    curves = chart_with(at, {"variant", "metric"})
    variants = set(curves["variant"].dropna())
    assert ("random control" in variants) == example.controls
    assert any(v.startswith("s-trace, ") for v in variants) == example.compare_modes
    if example.component:
        # the component the sentence names reads the named token into the last position, early on
        assert at.selectbox(key="node").value == example.component
        table = at.dataframe[0].value
        last = len(lm.tokenizer(example.prompt)["input_ids"]) - 1
        reads = table[
            table["source"].str.endswith(f": {example.component_reads.strip()}")
            & table["target"].str.startswith(f"{last}: ")
        ]
        assert len(reads)
        labels = at.select_slider[0].options
        at_size = next(lab for lab in labels if lab.startswith(f"s = {format_size(example.component_from)} "))
        n_edges = int(at_size.split("· ")[1].split(" ")[0].replace(",", ""))
        assert reads["rank"].min() < n_edges
