"""The package's import structure (docs/ARCHITECTURE.md, "Layers"): no import cycle among its modules, and the
command line on top, imported by nothing below it.

Imports are read from the source with ``ast``, not by importing: a cycle is a bug even while the import order
of the day happens to resolve it. For cycles only imports that run when a module is imported count: an import
inside a function runs when the function is called (that is how the command line, ``policy_engine.testing`` and
the backtest machinery load heavy parts lazily) and an ``if TYPE_CHECKING:`` block never runs. For the command
line every import counts, lazy or not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "policy_engine"
CLI = ("policy_engine.cli", "policy_engine.commands")


@dataclass(frozen=True, slots=True)
class Import:
    importer: str
    target: str  # a module of the package
    line: int
    eager: bool  # runs when the importer is imported (module level, outside `if TYPE_CHECKING:`)


def modules(package: Path) -> dict[str, Path]:
    """Every module of the package under ``package``, by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(body: list[ast.stmt], eager: bool) -> Iterator[tuple[ast.stmt, bool]]:
    """Every import statement under ``body``, and whether it runs at import time."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, eager
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _statements(node.body, False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, False)
            yield from _statements(node.orelse, eager)
        else:  # if / try / with / for / class bodies run at import time when they sit at module level
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                for child in getattr(node, field, ()):
                    if isinstance(child, ast.stmt):
                        yield from _statements([child], eager)
                    elif hasattr(child, "body"):  # except handlers, match cases
                        yield from _statements(child.body, eager)


def imports(package: Path) -> list[Import]:
    """Every import of a package module by a package module, relative imports resolved.

    Importing ``a.b.c`` runs the ``__init__`` of ``a.b`` first, so it counts as importing ``a.b`` too, except
    from inside ``a.b`` (whose ``__init__`` is then already running, as it is for the root package always).
    """
    known = modules(package)
    found = []
    for name, path in known.items():
        is_package = path.name == "__init__.py"
        for node, eager in _statements(ast.parse(path.read_text(encoding="utf-8"), str(path)).body, True):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    parts = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join([*parts, *([node.module] if node.module else [])])
                # `from pkg import sub` imports the submodule; `from mod import name` just the module
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            reached = {".".join(t.split(".")[:n]) for t in targets for n in range(1, t.count(".") + 2)}
            found += [Import(name, module, node.lineno, eager) for module in sorted(reached)
                      if module in known and not (name + ".").startswith(module + ".")]
    return found


def cycles(found: list[Import]) -> list[list[Import]]:
    """The import cycles among eager imports: for each strongly connected component of more than one module
    (or a module importing itself), the imports inside it (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for imp in found:
        if imp.eager:
            graph.setdefault(imp.importer, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph[node]:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [[imp for imp in found if imp.eager and imp.importer in c and imp.target in c] for c in components]


def _show(cycle: list[Import]) -> str:
    """The shortest loop of a cycle through its first module, each step with the line that makes it."""
    start = min(i.importer for i in cycle)
    paths: dict[str, list[Import]] = {start: []}
    queue = [start]
    for node in queue:  # breadth first; a strongly connected component always leads back to start
        for imp in cycle:
            if imp.importer != node:
                continue
            if imp.target == start:
                steps = [*paths[node], imp]
                return "import cycle: " + " -> ".join(
                    [start, *(f"{i.target} (line {i.line} of {i.importer})" for i in steps)])
            if imp.target not in paths:
                paths[imp.target] = [*paths[node], imp]
                queue.append(imp.target)
    raise AssertionError(f"not a cycle: {cycle}")


def test_the_package_has_no_import_cycle():
    found = imports(PACKAGE)
    assert {i.importer for i in found} >= {"policy_engine.engine", "policy_engine.pack", "policy_engine.cli"}
    assert not (loops := cycles(found)), "\n".join(map(_show, loops))


def test_nothing_below_the_command_line_imports_it():
    """The library must not need argparse and the commands, not even lazily: only ``cli.py``, ``commands/``
    and ``__main__.py`` (``python -m policy_engine``, never imported by the library) import them."""
    wrong = [i for i in imports(PACKAGE)
             if i.target.startswith(CLI) and not i.importer.startswith(CLI)
             and i.importer != "policy_engine.__main__"]
    assert not wrong, "\n".join(f"{i.importer} (line {i.line}) imports {i.target}" for i in wrong)


@pytest.fixture
def tangled(tmp_path: Path) -> Path:
    """A small package with one real cycle (a imports sub.b, which runs sub/__init__, which imports c, which
    imports a) and imports that must not count as one: a lazy import, a TYPE_CHECKING import, and a package
    whose ``__init__`` imports a submodule that imports from the package."""
    files = {
        "__init__.py": "",
        "a.py": "from .sub.b import x\n",
        "sub/__init__.py": "from ..c import y\nfrom .d import q\n",
        "sub/b.py": "x = 1\n",
        "sub/d.py": "from .b import x\n",
        "c.py": "import typing\nif typing.TYPE_CHECKING:\n    from .e import z\n"
                "try:\n    from .a import w\nexcept ImportError:\n    pass\n",
        "e.py": "from .c import y\n\ndef late():\n    from .f import v\n",
        "f.py": "from .e import late\n",
    }
    for name, text in files.items():
        (tmp_path / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pkg" / name).write_text(text, encoding="utf-8")
    return tmp_path / "pkg"


def test_the_cycle_check_finds_a_cycle_and_only_that_one(tangled):
    found = imports(tangled)
    assert Import("pkg.c", "pkg.e", 3, False) in found
    assert Import("pkg.e", "pkg.f", 4, False) in found
    (cycle,) = cycles(found)
    assert {(i.importer, i.target) for i in cycle} == {
        ("pkg.a", "pkg.sub"), ("pkg.sub", "pkg.c"), ("pkg.c", "pkg.a")}
    assert _show(cycle) == ("import cycle: pkg.a -> pkg.sub (line 1 of pkg.a) -> pkg.c (line 1 of pkg.sub) "
                            "-> pkg.a (line 5 of pkg.c)")
