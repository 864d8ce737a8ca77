"""The package's layers (../shared/DESIGN.md's rules of thumb), read from the source with ``ast``: every import
counts, the function-local ones too, since a function-local import is one top-level move away from a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "unlearnlib"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    """module -> the package's modules it imports (``from . import x`` resolves to the submodule ``x`` when there is
    one, else to the package)."""
    files = {_module_name(p, root): p for p in root.rglob("*.py")}
    top = root.name
    graph = {}
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[:len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in files else target for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[mod] = {t for t in found if t in files and t != mod and (t == top or t.startswith(top + "."))}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module, not counting a submodule's import of a package
    that contains it (``methods.ssd`` importing ``methods``: the package is initialised first, by design)."""
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _in(mod: str, *packages: str) -> bool:
    return any(mod == p or mod.startswith(p + ".") for p in packages)


GRAPH = import_graph()


def test_the_graph_is_read_from_the_source():
    """The reader sees imports, relative and function-local ones included (so the rules below can fail)."""
    assert "unlearnlib.harness" in GRAPH["unlearnlib.cli"]  # function-local, in cmd_* functions
    assert "unlearnlib.methods.common" in GRAPH["unlearnlib.methods.ssd"]  # from .common import ...
    assert "unlearnlib.schema" in GRAPH["unlearnlib.train"]


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_a_cycle_is_found(tmp_path):
    pkg = tmp_path / "unlearnlib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from .b import g\n")
    (pkg / "b.py").write_text("from . import a\n")
    (pkg / "sub" / "__init__.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("from . import X\n")  # a submodule of its own package: not a cycle
    assert cycles(import_graph(pkg)) == [["unlearnlib.a", "unlearnlib.b"]]


@pytest.mark.parametrize("rule,importer,imported", [
    ("schema imports nothing of the package", ("unlearnlib.schema",), ("unlearnlib",)),
    ("data never imports methods", ("unlearnlib.data",), ("unlearnlib.methods",)),
    ("methods never import metrics", ("unlearnlib.methods",), ("unlearnlib.metrics",)),
    ("metrics never import methods (a model operation they share lives in models)", ("unlearnlib.metrics",),
     ("unlearnlib.methods",)),
    ("models import no method, metric, data or harness module", ("unlearnlib.models",),
     ("unlearnlib.methods", "unlearnlib.metrics", "unlearnlib.data", "unlearnlib.harness")),
    ("the training loop is below every method and the harness", ("unlearnlib.train",),
     ("unlearnlib.methods", "unlearnlib.metrics", "unlearnlib.harness", "unlearnlib.config")),
    ("the reading side imports no method module directly", ("unlearnlib.results",
                                                             "unlearnlib.claims", "unlearnlib.book"),
     ("unlearnlib.methods", "unlearnlib.harness")),
])
def test_layering_rule(rule, importer, imported):
    broken = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() if _in(m, *importer) for t in ts if _in(t, *imported))
    assert broken == [], rule


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for t in graph.get(todo.pop(), ()):
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def test_the_reading_side_imports_no_method_module_directly_or_not():
    """Showing a stored run needs no method: the run folder says each row's kind, reference and the kinds a method
    ran on (issue 23, part 3), so a table does not change when a method's registration does."""
    for reader in sorted(m for m in GRAPH if _in(m, "unlearnlib.results")):
        bad = sorted(t for t in reachable(GRAPH, reader) if _in(t, "unlearnlib.methods", "unlearnlib.config",
                                                                 "unlearnlib.harness"))
        assert bad == [], reader


def test_nothing_below_the_harness_imports_it():
    """Only the package's API (unlearnlib/__init__.py), the CLI and the harness itself import the harness."""
    allowed = ("unlearnlib", "unlearnlib.cli")
    broken = sorted(f"{m} -> {t}" for m, ts in GRAPH.items() for t in ts
                    if _in(t, "unlearnlib.harness") and not _in(m, "unlearnlib.harness") and m not in allowed)
    assert broken == []
