"""The standalone HTML report (explorer.views.report): every view of the trace at one size, the specs the
notebook charts give, nothing fetched from the network, the trace's text escaped; written by ``trace
--html`` and by ``export`` from a saved trace. The browser test (tests/test_browser_report.py) opens it
from disk offline."""

from __future__ import annotations

import json
import re

import pytest

from explorer.__main__ import main
from explorer.results import Settings
from explorer.trace import trace_prompt
from explorer.views import charts, labels
from explorer.views.report import figures, report_html
from tests.helpers import random_model, tiny_loaded

SIZES = (0.01, 0.05, 0.2, 0.5, 1.0)
NASTY = '</script><img src=x onerror="f()">&<b>b'  # under 40 tokens: a token graph too
BLOCK = re.compile(r'<script type="application/json" id="([\w-]+)">(.*?)</script>', re.S)


@pytest.fixture(scope="module")
def report():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, NASTY, Settings(sizes=SIZES, controls=True), target=" x", foil=" y")
    return trace, report_html(trace, 0.2)


def test_the_report_holds_every_view_at_its_size(report):
    trace, page = report
    blocks = dict(BLOCK.findall(page))
    i = labels.closest_stratum(trace, 0.2)
    views = figures(trace, i)
    assert [k for k, _, _ in views] == ["distribution", "curves", "composition", "token-graph"]
    for key, _, chart in views:
        assert json.loads(blocks[f"spec-{key}"]) == json.loads(json.dumps(chart.to_dict()))
        assert f'<div class="chart" id="chart-{key}"></div>' in page
    assert json.loads(blocks["spec-distribution"]) == json.loads(json.dumps(charts.distribution(trace, 0.2).to_dict()))
    assert json.loads(blocks["node-graph-page"]) == charts.node_graph(trace, 0.2).html
    # the per-size table: one row per size, the shown one marked
    table = page.split('<table class="sizes">')[1].split("</table>")[0]
    assert table.count("<tr") == len(trace.strata) + 1 and table.count("class=shown") == 1
    assert labels.size_label(trace, i) in page


def test_the_report_fetches_nothing_and_escapes_the_trace(report):
    trace, page = report
    node_page = json.loads(dict(BLOCK.findall(page))["node-graph-page"])
    for doc in (page, node_page):
        assert not re.search(r"""<(script|link|img|iframe)[^>]*\s(src|href)\s*=\s*["']?(https?:)?//""", doc, re.I)
        assert not re.search(r"""<script[^>]*\ssrc\s*=""", doc, re.I)
    assert "vegaEmbed" in page and page.count("<script") == page.count("</script>")
    assert NASTY not in page and "<img src=x" not in page and "<b>b" not in page
    assert "&lt;/script&gt;&lt;img src=x onerror=&quot;f()&quot;&gt;&amp;&lt;b&gt;b" in page
    assert "u003c/script" in page  # the prompt inside the JSON blocks
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_a_long_prompt_leaves_out_the_token_graph_and_full_shows_the_last_size():
    lm, _ = tiny_loaded("llama")
    trace = trace_prompt(lm, "word " * 12, Settings(sizes=(0.1, 0.6)))  # 60 tokens: no token graph
    assert [k for k, _, _ in figures(trace, 0)] == ["distribution", "curves", "composition"]
    page = report_html(trace, "full")
    assert 'id="chart-token-graph"' not in page and labels.size_label(trace, 1) in page


def _config(tmp_path):
    return random_model(tmp_path)


def test_trace_and_export_write_the_report(tmp_path, capsys):
    model = _config(tmp_path)
    saved, first, second, graph = (tmp_path / n for n in ("t.json", "a.html", "b.html", "g.json"))
    code = main(
        ["trace", "--model", model, "--prompt", "The capital of France is", "--sizes", "0.05,0.2,1"]
        + ["--json", str(saved), "--html", str(first), "--export-size", "0.2"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "(HTML report, s = 0.2)" in out
    # from the saved trace, without the model: the same report
    code = main(
        ["export", "--trace", str(saved), "--html", str(second), "--neuronpedia", str(graph)] + ["--export-size", "0.2"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.splitlines()[0].split()[:3] == ["size", "edges", "TV"] and "wrote" in out
    assert first.read_text() == second.read_text()
    assert json.loads(graph.read_text())["metadata"]["pruning_settings"]["size"] == 0.2
    # a file that is not a trace: one line, status 2
    bad = tmp_path / "bad.json"
    bad.write_text(saved.read_text()[:1000])
    code = main(["export", "--trace", str(bad), "--html", str(second)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: the trace JSON is truncated") and err.count("\n") == 1
    code = main(["export", "--trace", str(saved), "--max-mb", "0.0001"])
    assert code == 2 and "over the cap" in capsys.readouterr().err
