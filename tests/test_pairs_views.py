"""The Prompt pairs charts (explorer.views.pairs) on a tiny model: their tables hold the pair's numbers, the
grid places each component in its layer and column with its share, and every chart builds."""

from __future__ import annotations

import pytest

from explorer.pairs import trace_pair
from explorer.results import Settings
from explorer.views import pairs as views
from tests.helpers import tiny_loaded

SIZES = (0.01, 0.05, 0.2, 0.5, 1.0)


@pytest.fixture(scope="module")
def pair():
    lm, _ = tiny_loaded("llama")
    return trace_pair(lm, "The cat sat on the mat", "The dog sat on the rug", Settings(sizes=SIZES))


def test_the_transfer_frame_holds_both_curves(pair):
    df = views.transfer_frame(pair.transfer)
    tv = df[df["metric"] == "tv"]
    own = tv[tv["series"] == views.SERIES["own"]]["value"].tolist()
    moved = tv[tv["series"] == views.SERIES["transferred"]]["value"].tolist()
    assert own == [p.own.tv for p in pair.transfer.points]
    assert moved == [p.transferred.tv for p in pair.transfer.points]
    assert df["s"].tolist()[:2] == ["0.01", "0.01"]


def test_the_diff_frame_counts_each_share(pair):
    df = views.diff_frame(pair.diff)
    for d in pair.diff.sizes:
        here = df[df["size"] == d.size].set_index("category")["count"]
        assert (here[views.BOTH], here[views.ONLY_A], here[views.ONLY_B]) == (
            len(d.both),
            len(d.only_a),
            len(d.only_b),
        )
    refinement = [d for d in pair.diff.sizes if d.size >= 0.01]
    assert views.most_different(pair.diff) == min(refinement, key=lambda d: (d.jaccard, d.size)).size


def test_the_grid_places_each_component_with_its_share(pair):
    d = next(d for d in pair.diff.sizes if d.only_a or d.only_b)
    grid = views.grid_frame(pair, d.size)
    lay = pair.a.layout
    assert len(grid) == 2 * lay.n_layers * (lay.n_heads + 1)
    cells = grid.set_index(["trace", "name"])
    for name in d.only_a:
        assert cells.loc[("A", name), "category"] == views.ONLY_A
        assert cells.loc[("B", name), "category"] == views.ABSENT
    for name in d.only_b:
        assert cells.loc[("B", name), "category"] == views.ONLY_B
    for name in d.both:
        assert cells.loc[("A", name), "category"] == cells.loc[("B", name), "category"] == views.BOTH
    a_stratum = next(s for s in pair.a.strata if s.size == d.size)
    assert cells.loc[("A", "a1.h2"), "edges_a"] == a_stratum.components.get("a1.h2", 0)
    assert tuple(cells.loc[("A", "m2"), ["layer", "column"]]) == (2, views.MLP)
    assert tuple(cells.loc[("A", "a1.h3"), ["layer", "column"]]) == (1, "h3")


def test_every_chart_builds(pair):
    charts = views.transfer_panels(pair.transfer, 0.2) + views.diff_panels(pair.diff) + views.grid_panels(pair, 0.05)
    specs = [c.to_dict() for c in charts]
    assert len(specs) == 6
    assert all("$schema" in s for s in specs)


def test_the_pair_colours_read_on_light_and_dark_backgrounds():
    from tests.test_look import DARK, LIGHT, contrast

    for name, colour in views.PAIR_COLOURS.items():
        assert min(contrast(colour, LIGHT), contrast(colour, DARK)) >= 1.6, (name, colour)
    assert len(set(views.PAIR_COLOURS.values())) == len(views.PAIR_COLOURS)


def test_the_grid_starts_where_the_traces_differ_most_from_the_refinement_phase():
    from explorer.pairs import SizeDiff, TraceDiff

    def diff(*points):
        return TraceDiff("m", "a", "b", [SizeDiff(s, 1, 1, [], [], [], j) for s, j in points])

    assert views.most_different(diff((1e-3, 0.0), (0.02, 0.5), (0.1, 0.4), (0.2, 0.4), (1.0, 1.0))) == 0.1
    assert views.most_different(diff((1e-4, 0.5), (1e-3, 0.0))) == 1e-3  # nothing from 0.01: every size
