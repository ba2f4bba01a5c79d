"""The layering contract of the ``ductaflow`` package, checked on its import graph (no kernel).

Layers, highest first; a module may import its own layer and any layer below it, never above:

    cli | compat                          the command and the earlier tool's names (both façades)
    debug | conductor | report | scaffold | analysis
                                          peers: none imports another, except conductor -> report
    inflow
    run
    kernels | lifecycle | trackers        peers: none imports another
    store                                 the one owner of ductaflow's files (and FlowResult, their schema)
    core
    errors, _version                      the leaves

``cli`` and ``compat`` may import every layer below them. ``ductaflow/__init__.py`` and ``__main__.py`` are the public
façade: exempt, and nothing inside the package may import them. Scripts under
``ductaflow/kernels/scripts/`` run by path inside kernels and import nothing from ductaflow.

The graph is built with :mod:`ast` from every ``import`` statement, at module level and inside
functions (plus ``importlib.import_module("literal")``). ``from pkg import name`` counts as an
import of ``pkg.name`` when that is a module, else of ``pkg``. Imports under
``if TYPE_CHECKING:`` never run: they are left out of the cycle check but are still
dependencies for the layer check. Rules:

(a) no import cycles between modules;
(b) no import of a higher layer (or a peer that is not allowed);
(c) an import inside a function of a ductaflow module or of a heavy third-party library says why
    it is deferred: a comment on its line or the line above containing "defer", "heavy" or "lazy".

Known violations are allow-listed below (each marked ``TODO(issue 13)``); a listed edge that no
longer exists fails ``test_allow_lists_hold_only_edges_that_still_exist`` so the lists shrink.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ductaflow"
ROOT = "ductaflow"

#: Layers, lowest first (index = height). Peers share a layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "_version"}),
    frozenset({"core"}),
    frozenset({"store"}),
    frozenset({"kernels", "lifecycle", "trackers"}),
    frozenset({"run"}),
    frozenset({"inflow"}),
    frozenset({"debug", "conductor", "report", "scaffold", "analysis"}),
    frozenset({"cli", "compat"}),
)
#: Imports between peers of one layer that the contract allows (importer, imported).
PEER_EXCEPTIONS = frozenset({("conductor", "report")})
FACADE = frozenset({"ductaflow", "ductaflow.__main__"})
SCRIPTS = "ductaflow.kernels.scripts"

#: Third-party libraries slow enough to import that an in-function import of one must say so.
HEAVY = frozenset({
    "pandas", "numpy", "pyarrow", "duckdb", "papermill", "nbformat", "nbclient", "nbconvert", "jupytext",
    "jupyter_client", "ipykernel", "IPython", "jinja2", "matplotlib", "dask", "distributed", "dask_jobqueue",
    "zmq", "tornado", "rich", "playwright", "scipy",
})  # fmt: skip
_DEFER_WORDS = re.compile(r"defer|heavy|lazy", re.IGNORECASE)

# Known violations found when this contract was written (module -> imported module). Remove an
# entry when its import is fixed; the stale-entry test below insists on it.
# Each cycle is broken by allowing one of its edges (the in-function one).
ALLOWED_CYCLE_EDGES: frozenset[tuple[str, str]] = frozenset()
ALLOWED_UPWARD_EDGES: frozenset[tuple[str, str]] = frozenset()


# ---------------------------------------------------------------- the graph
@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    line: int
    in_function: bool
    type_only: bool
    commented: bool  # a "defer/heavy/lazy" comment on its line(s) or the line above

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} (line {self.line})"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _comments(source: str) -> dict[int, str]:
    out: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            out[tok.start[0]] = tok.string
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, in_function: bool = False, type_only: bool = False) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every node below ``node`` with: inside a function body? under ``if TYPE_CHECKING``?"""
    for child in ast.iter_child_nodes(node):
        yield child, in_function, type_only
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, in_function, True
                yield from _walk(stmt, in_function, True)
            for stmt in child.orelse:
                yield stmt, in_function, type_only
                yield from _walk(stmt, in_function, type_only)
            continue
        func = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from _walk(child, in_function or func, type_only)


def _resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
    return ".".join([*base, node.module] if node.module else base)


def _targets(module: str, path: Path, node: ast.AST) -> list[str]:
    """The modules one import statement (or import_module call) loads."""
    known = modules()
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = _resolve_from(module, path.name == "__init__.py", node)
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    if (
        isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))
        )
    ):
        return [node.args[0].value]
    return []


@cache
def all_imports() -> tuple[Edge, ...]:
    """Every import of every module of the package, ductaflow's own and third-party ones."""
    edges: list[Edge] = []
    for module, path in modules().items():
        source = path.read_text(encoding="utf-8")
        comments = _comments(source)
        for node, in_function, type_only in _walk(ast.parse(source, str(path))):
            for target in _targets(module, path, node):
                first, last = node.lineno, getattr(node, "end_lineno", node.lineno) or node.lineno  # type: ignore[attr-defined]
                said = any(_DEFER_WORDS.search(comments.get(n, "")) for n in range(first - 1, last + 1))
                edges.append(Edge(module, target, first, in_function, type_only, said))
    return tuple(edges)


def internal_edges() -> list[Edge]:
    known = modules()
    return [e for e in all_imports() if e.imported in known and e.imported != e.importer]


def layer_of(module: str) -> str:
    """The layer name of a module: its first component below ``ductaflow``."""
    return module.split(".")[1] if module.count(".") else module


def height(layer: str) -> int:
    for i, members in enumerate(LAYERS):
        if layer in members:
            return i
    raise KeyError(layer)


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def upward_edges() -> list[Edge]:
    """Imports that break rule (b), the façade and the kernel scripts included."""
    bad = []
    for e in internal_edges():
        if e.importer in FACADE:
            continue
        if e.importer == SCRIPTS or e.importer.startswith(SCRIPTS + "."):
            bad.append(e)  # a kernel script imports nothing from ductaflow
            continue
        if e.imported in FACADE:
            bad.append(e)  # the façade is above everything
            continue
        src, dst = layer_of(e.importer), layer_of(e.imported)
        if src == dst or src == "cli":
            continue
        if height(dst) > height(src) or (height(dst) == height(src) and (src, dst) not in PEER_EXCEPTIONS):
            bad.append(e)
    return bad


def _pairs(edges: list[Edge]) -> set[tuple[str, str]]:
    return {(e.importer, e.imported) for e in edges}


def _listing(edges: list[Edge]) -> str:
    return "\n".join(sorted({str(e) for e in edges}))


# ---------------------------------------------------------------- the contract
def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in modules() if m not in FACADE and not any(layer_of(m) in ly for ly in LAYERS))
    assert not unplaced, f"modules in no layer (add them to LAYERS and the docstring): {unplaced}"
    assert len(modules()) > 40, "the package was not found"


def test_no_import_cycles() -> None:
    runtime = [e for e in internal_edges() if not e.type_only and (e.importer, e.imported) not in ALLOWED_CYCLE_EDGES]
    found = cycles(runtime)
    detail = []
    for component in found:
        inside = [e for e in runtime if e.importer in component and e.imported in component]
        detail.append(f"cycle {component}:\n  " + "\n  ".join(sorted({str(e) for e in inside})))
    assert not found, "\n".join(detail)


def test_no_upward_imports() -> None:
    bad = [e for e in upward_edges() if (e.importer, e.imported) not in ALLOWED_UPWARD_EDGES]
    assert not bad, "imports of a higher layer (or a peer):\n" + _listing(bad)


def test_kernel_scripts_import_nothing_from_ductaflow() -> None:
    scripts = [m for m in modules() if m.startswith(SCRIPTS + ".")]
    assert scripts, "no kernel scripts found"
    used = [e for e in all_imports() if e.importer.startswith(SCRIPTS) and e.imported.split(".")[0] == ROOT]
    assert not used, _listing(used)


def test_allow_lists_hold_only_edges_that_still_exist() -> None:
    """An allow-listed violation that was fixed must leave the list (which only ever shrinks)."""
    edges = _pairs(internal_edges())
    stale = sorted((ALLOWED_CYCLE_EDGES | ALLOWED_UPWARD_EDGES) - edges)
    assert not stale, f"fixed, so remove from the allow-list: {stale}"
    not_upward = sorted(ALLOWED_UPWARD_EDGES - _pairs(upward_edges()))
    assert not not_upward, f"allowed as upward but no longer upward: {not_upward}"
    in_cycles = {m for c in cycles([e for e in internal_edges() if not e.type_only]) for m in c}
    not_cyclic = sorted(e for e in ALLOWED_CYCLE_EDGES if not {e[0], e[1]} <= in_cycles)
    assert not not_cyclic, f"allowed for a cycle that no longer exists: {not_cyclic}"


def undocumented_deferred_imports() -> list[Edge]:
    """Rule (c): in-function imports of ductaflow or heavy modules without a why-comment."""
    found = {
        str(e): e
        for e in all_imports()
        if e.in_function
        and not e.commented
        and e.importer not in FACADE
        and not e.importer.startswith(SCRIPTS)
        and e.imported.split(".")[0] in HEAVY | {ROOT}
    }
    return [found[k] for k in sorted(found)]



def test_in_function_imports_say_why() -> None:
    bad = undocumented_deferred_imports()
    assert not bad, f"{len(bad)} in-function import(s) without a defer/heavy/lazy comment:\n" + _listing(bad)


# ---------------------------------------------------------------- the checker checks itself
def _graph_of(tmp_path: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_sees_in_function_relative_and_type_only_imports(tmp_path: Path, monkeypatch) -> None:
    pkg = tmp_path / "ductaflow"
    _graph_of(pkg, {
        "__init__.py": "",
        "errors.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ductaflow.store.x import Y\n",
        "core/__init__.py": "",
        "core/a.py": "def f():\n    import pandas\n    from ..run import b  # deferred: heavy\n",
        "run/__init__.py": "",
        "run/b.py": "from ductaflow.core import a\nimport importlib\nimportlib.import_module('ductaflow.store.x')\n",
        "store/__init__.py": "",
        "store/x.py": "from . import y\n",
        "store/y.py": "",
    })  # fmt: skip
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    modules.cache_clear()
    all_imports.cache_clear()
    try:
        edges = {(e.importer, e.imported): e for e in all_imports()}
        assert edges[("ductaflow.core.a", "ductaflow.run.b")].in_function
        assert edges[("ductaflow.core.a", "ductaflow.run.b")].commented
        assert not edges[("ductaflow.core.a", "pandas")].commented
        assert edges[("ductaflow.errors", "ductaflow.store.x")].type_only
        assert ("ductaflow.run.b", "ductaflow.store.x") in edges  # import_module("literal")
        assert ("ductaflow.store.x", "ductaflow.store.y") in edges  # relative, resolved to the module
        assert cycles(internal_edges()) == [["ductaflow.core.a", "ductaflow.run.b"]]
        assert {str(e) for e in upward_edges()} == {
            "ductaflow.core.a -> ductaflow.run.b (line 3)",
            "ductaflow.errors -> ductaflow.store.x (line 3)",
        }
        assert [str(e) for e in undocumented_deferred_imports()] == ["ductaflow.core.a -> pandas (line 2)"]
    finally:
        modules.cache_clear()
        all_imports.cache_clear()
