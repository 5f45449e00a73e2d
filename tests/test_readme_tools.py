"""The README's example of inspecting, ablating, comparing, reopening and sharing runs as written on the
embedded model, after the README's first example (which makes ``lm``, ``trace`` and ``trace.json``)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from explorer.trace_file import read_trace

README = Path(__file__).resolve().parent.parent / "README.md"


def _blocks() -> list[str]:
    section = README.read_text(encoding="utf-8").split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_readme_tools_example_runs(smollm, tmp_path, monkeypatch):
    blocks = _blocks()
    tools = next(b for b in blocks if "inspect_component" in b)
    monkeypatch.chdir(tmp_path)
    import explorer

    monkeypatch.setattr("explorer.models.loading.load_model", lambda *a, **k: smollm)
    monkeypatch.setattr(explorer, "load_model", lambda *a, **k: smollm, raising=False)
    namespace: dict = {"__name__": "__notebook__"}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    exec(compile(tools, "README.md", "exec"), namespace)
    panel, result, pair = namespace["panel"], namespace["result"], namespace["pair"]
    assert panel.name == "a23.h4" and panel.pattern is not None and len(panel.promoted) == 10
    at = {s.size: s for s in namespace["trace"].strata}[0.4]
    assert result.removed == ["a23.h4", "m5"] and result.size == 0.4
    assert abs(result.base.tv - at.trace.tv) < 1e-5
    assert pair.transfer is not None and len(pair.diff.sizes) == len(pair.a.strata)
    assert read_trace(tmp_path / "trace.json").to_dict() == namespace["trace"].to_dict()
    assert set(json.loads((tmp_path / "graph.json").read_text())) == {"metadata", "qParams", "nodes", "links"}
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert os.getcwd() == str(tmp_path)
