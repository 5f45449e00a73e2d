"""The Prompt pairs page driven by Streamlit's AppTest on the embedded model: Run shows the transfer and the
component diff with :func:`explorer.pairs.trace_pair`'s numbers, prompts of other token counts get the
message and still the diff, the grid follows the size slider, and demo mode keeps its prompt cap."""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from explorer import DEFAULT_MODEL, Settings, load_model
from explorer.pairs import trace_pair
from explorer.views import pairs as views
from ui import state as app_state
from ui.pages.pairs import PROMPT_A, PROMPT_B

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
PAIRS = "ui/pages/pairs.py"
LONGER_B = PROMPT_B + " the girl"  # two more tokens than A
TIMEOUT = 600

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lm():
    return load_model(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def reference(lm):
    """The engine's pair of the page's default prompts with the page's default settings."""
    return trace_pair(lm, PROMPT_A, PROMPT_B, Settings())


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def pairs_page(**query) -> AppTest:
    """The app about to open the Prompt pairs page with ``query`` in the URL (the app runs once first, on
    the Trace page, so that ``st.navigation`` has registered its pages)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.query_params.clear()
    for k, v in query.items():
        at.query_params[k] = v
    at.switch_page(PAIRS)
    return at


def run_pair(at: AppTest, a: str, b: str) -> AppTest:
    at.text_area(key="pairs_a").set_value(a)
    at.text_area(key="pairs_b").set_value(b)
    return at.button[0].click().run()


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The page's table that has ``column``."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def chart_frames(at: AppTest, column: str) -> list[pd.DataFrame]:
    """The data sets with ``column`` of every Altair chart on the page, in the page's order."""
    frames = []
    for chart in at.get("vega_lite_chart"):
        for d in chart.proto.datasets:
            df = pa.ipc.open_stream(d.data.data).read_all().to_pandas()
            if column in df.columns:
                frames.append(df)
    return frames


def test_run_shows_the_engines_transfer_and_diff(reference):
    at = ok(pairs_page().run())
    assert any("press **Run**" in i.value for i in at.info)  # nothing traced before asked
    assert at.text_area(key="pairs_a").value == PROMPT_A and at.text_area(key="pairs_b").value == PROMPT_B
    ok(at.button[0].click().run())
    assert [s.value for s in at.subheader] == ["A's subgraphs on B", "Components in both and in one", "Export"]
    assert reference.transfer is not None
    assert not any("token counts differ" in i.value for i in at.info)
    pd.testing.assert_frame_equal(table(at, "tv_transferred"), reference.transfer.to_frame(), check_dtype=False)
    pd.testing.assert_frame_equal(table(at, "jaccard"), reference.diff.to_frame(), check_dtype=False)
    # the charts draw the same numbers: the transfer curves, the diff's counts, the grid of the slider's size
    curves = pd.concat(chart_frames(at, "series"))
    transferred = curves[(curves["series"] == views.SERIES["transferred"]) & (curves["metric"] == "tv")]
    assert transferred["value"].tolist() == pytest.approx(reference.transfer.to_frame()["tv_transferred"].tolist())
    size = cast(float, at.select_slider(key="pairs_size").value)
    assert size == views.most_different(reference.diff)  # where the traces differ most
    assert views.closest_diff(reference.diff, size).jaccard < 1
    grids = chart_frames(at, "category")
    grid = next(f for f in grids if "trace" in f.columns)
    expected = views.closest_diff(reference.diff, size)
    in_a = grid[(grid["trace"] == "A") & (grid["category"] != views.ABSENT)]
    assert set(in_a["name"]) == set(expected.both) | set(expected.only_a)
    assert dict(at.query_params) == {
        "model": DEFAULT_MODEL,
        "a": PROMPT_A,
        "b": PROMPT_B,
        "weights": "l1",
        "mode": "all",
        "size": views.format_size(size),
    }

    # another size: the grid follows
    other = reference.diff.sizes[0]
    assert other.size != size
    at.select_slider(key="pairs_size").set_value(other.size)
    ok(at.run())
    grid = next(f for f in chart_frames(at, "category") if "trace" in f.columns)
    in_b = grid[(grid["trace"] == "B") & (grid["category"] != views.ABSENT)]
    assert set(in_b["name"]) == set(other.both) | set(other.only_b)
    assert set(grid["s"]) == {views.format_size(other.size)}
    assert at.query_params["size"] == views.format_size(other.size)


def test_prompts_of_other_lengths_get_the_message_and_the_diff(lm):
    expected = trace_pair(lm, PROMPT_A, LONGER_B, Settings())
    assert expected.transfer is None and len(expected.b.tokens) > len(expected.a.tokens)
    at = ok(run_pair(ok(pairs_page().run()), PROMPT_A, LONGER_B))
    message = [i.value for i in at.info if "token counts differ" in i.value]
    assert message and f"A has {len(expected.a.tokens)} tokens" in message[0]
    assert f"B has {len(expected.b.tokens)}" in message[0]
    assert not [d for d in at.dataframe if "tv_transferred" in d.value.columns]
    pd.testing.assert_frame_equal(table(at, "jaccard"), expected.diff.to_frame(), check_dtype=False)
    assert chart_frames(at, "jaccard") and not chart_frames(at, "series")


def test_the_url_reproduces_the_view(reference):
    size = reference.diff.sizes[-3].size
    query = dict(a=PROMPT_A, b=PROMPT_B, position="-2", weights="l1", mode="all", size=views.format_size(size))
    at = ok(pairs_page(**query).run())  # run at once, with no click
    assert at.text_input(key="pairs_position_a").value == "-2"
    assert at.select_slider(key="pairs_size").value == size
    head = at.markdown[0].value  # 14 tokens, traced after the second last: B's position is A's
    assert "A: 13 tokens, traced after ' drink'" in head and "B: 13 tokens, traced after ' drink'" in head
    assert dict(at.query_params) == {"model": DEFAULT_MODEL, **query}


def test_positions_are_checked_with_one_message():
    at = ok(pairs_page().run())
    at.text_input(key="pairs_position_b").set_value("fifth")
    at.button[0].click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "the position of prompt B must be a whole number (0-based, negative from the end), not 'fifth'"
    ]
    at.text_input(key="pairs_position_b").set_value("99")
    at.button[0].click().run()
    assert not at.exception
    assert len(at.error) == 1 and "prompt B" in at.error[0].value and "outside the text" in at.error[0].value


@pytest.fixture
def demo(monkeypatch):
    """The app under the demo configuration; the defaults back afterwards."""
    monkeypatch.setenv("STRACE_CONFIG", str(ROOT / "config" / "demo.toml"))
    app_state._config_or_error.clear()
    app_state.sweep_store.clear()
    yield
    monkeypatch.delenv("STRACE_CONFIG", raising=False)
    app_state._config_or_error.clear()
    app_state.sweep_store.clear()


def test_demo_mode_caps_the_prompts_length(demo):
    at = ok(pairs_page().run())
    assert any("Prompts of at most 64 tokens here." in c.value for c in at.caption)
    assert not [t for t in at.text_input if t.key == "pairs_revision"]
    at = run_pair(at, PROMPT_A, "word " * 80)
    assert not at.exception
    assert len(at.error) == 1, [e.value for e in at.error]
    assert at.error[0].value.startswith("prompt B:") and "the limit is 64" in at.error[0].value
    assert "Traceback" not in at.error[0].value and not at.get("expander")
