"""The codebase's shape: no import cycle, small modules, Streamlit only in the app, result types and charts
without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 440  # about 400, as ruff formats them


def _sources() -> list[Path]:
    files = [ROOT / "app.py", *(ROOT / "explorer").rglob("*.py")]
    if (ROOT / "ui").is_dir():
        files += (ROOT / "ui").rglob("*.py")
    return sorted(files)


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports (at the top or inside a function), except under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_import_graph_has_no_cycle():
    modules = {_module(p): p for p in _sources()}
    graph = nx.DiGraph()
    for name, path in modules.items():
        graph.add_node(name)
        for target in _imports(path):
            if target in modules and target != name and not name.startswith(target + "."):
                graph.add_edge(name, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles: {cycles}"


def test_no_module_is_much_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_streamlit_is_imported_only_by_the_app():
    users = [str(p.relative_to(ROOT)) for p in _sources() if any(m.split(".")[0] == "streamlit" for m in _imports(p))]
    assert users and all(u == "app.py" or u.startswith("ui/") for u in users), users


def test_result_types_and_charts_load_without_torch():
    code = (
        "import sys, explorer, explorer.results, explorer.export, explorer.views.curves;"
        " assert 'torch' not in sys.modules and 'numba' not in sys.modules, 'torch or numba loaded'"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
