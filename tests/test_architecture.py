"""The import graph stays one-way: no new cycles, audit/core at the bottom, no stage importing the CLI or pipeline.

Every import counts, also those inside functions, and importing ``audit.x.y`` from outside ``audit.x`` counts as
importing the package ``audit.x`` too (its ``__init__.py`` runs first). Known debts are listed below so they can only
shrink: removing one from the code makes its entry fail here until it is deleted from the list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "audit"
# the size limits of the house (../shared/tools/house.py counts the same way)
MAX_FUNCTION_LINES = 100
MAX_MODULE_LINES = 600

# Cycles still open, each as the sorted tuple of its modules (none today: keep it so).
KNOWN_CYCLES: set[tuple[str, ...]] = set()
# Imports that run back up to the pipeline or CLI (module -> target) still open.
KNOWN_UPWARD: set[tuple[str, str]] = set()
TOP = {"audit.cli", "audit.pipeline", "audit.__main__"}
ALLOWED_TO_IMPORT_TOP = {"audit.cli", "audit.pipeline", "audit.__main__", "audit.api", "audit.api.stages", "audit.demo",
                         "audit.dashboard"}


def _may_import_top(module: str) -> bool:
    """The top layer itself: the modules above, and every module of the ``audit.cli`` package."""
    return module in ALLOWED_TO_IMPORT_TOP or module.startswith("audit.cli.")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        is_pkg = p.name == "__init__.py"
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = m.split(".") if is_pkg else m.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # ``from pkg import sub`` depends on the submodule; ``from pkg import name`` on pkg's __init__
                subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in graph]
                direct = [mod] if len(subs) < len(node.names) else []
                targets = direct + subs
                for t in direct:
                    if t in graph and t != m:
                        graph[m].add(t)
            for t in targets:
                if not t.startswith("audit"):
                    continue
                # the target module and every package above it (their __init__ runs)
                parts = t.split(".")
                for i in range(1, len(parts) + 1):
                    cand = ".".join(parts[:i])
                    inside = m.startswith(cand + ".")  # a package's own modules run after its __init__
                    if cand in graph and cand != m and cand != "audit" and not inside:
                        graph[m].add(cand)
    return graph


def _cycles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: set[tuple[str, ...]] = set()
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(tuple(sorted(comp)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return _graph()


def test_no_import_cycles_beyond_the_known_debts(graph):
    found = _cycles(graph)
    new = found - KNOWN_CYCLES
    assert not new, f"new import cycle(s): {sorted(new)}"
    gone = KNOWN_CYCLES - found
    assert not gone, f"cycle(s) fixed: delete them from KNOWN_CYCLES: {sorted(gone)}"


def test_core_imports_nothing_above_it(graph):
    bad = {(m, t) for m, ts in graph.items() if m.startswith("audit.core") for t in ts
           if not (t.startswith("audit.core") or t == "audit.errors")}
    assert not bad, f"audit/core must import only audit.core and audit.errors: {sorted(bad)}"


def test_no_stage_imports_the_cli_or_pipeline(graph):
    up = {(m, t) for m, ts in graph.items() for t in ts
          if (t in TOP or t.startswith("audit.cli.")) and not _may_import_top(m)}
    new = up - KNOWN_UPWARD
    assert not new, f"imports running back up to the CLI/pipeline: {sorted(new)}"
    gone = KNOWN_UPWARD - up
    assert not gone, f"fixed: delete from KNOWN_UPWARD: {sorted(gone)}"


def test_the_graph_sees_function_level_and_relative_imports(graph):
    # audit.api.groups imports audit.metrics inside a function: it must be an edge
    assert "audit.metrics" in graph["audit.api.groups"]
    assert "audit.core.atomic" in graph["audit.rundir"]


def test_no_function_over_100_lines_and_no_module_over_600():
    """As ``../shared/tools/house.py`` counts: a function from its ``def`` line to its last line (decorators left
    out, nested functions counted on their own too), a module by its newline characters; every ``*.py`` file under
    audit/ and dashboards/."""
    long_fns, big = [], []
    for root in (ROOT / "audit", ROOT / "dashboards"):
        for p in sorted(root.rglob("*.py")):
            src = p.read_text(encoding="utf-8")
            where = p.relative_to(ROOT)
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION_LINES:
                        long_fns.append(f"{where}:{node.lineno} {node.name} ({n} lines)")
            if src.count("\n") > MAX_MODULE_LINES:
                big.append(f"{where} ({src.count(chr(10))} lines)")
    assert not long_fns, f"functions over {MAX_FUNCTION_LINES} lines: {long_fns}"
    assert not big, f"modules over {MAX_MODULE_LINES} lines: {big}"
