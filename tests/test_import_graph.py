"""The package's import graph: no cycles, and the bottom layer imports nothing above it.

Every import counts, function-level ones included; only ``if TYPE_CHECKING:`` blocks are
left out. ``from .pkg import name`` is an edge to ``name`` when it is a submodule, else
to ``pkg`` itself.
"""

from __future__ import annotations

import ast
import pathlib

import tupu_async

PACKAGE = pathlib.Path(tupu_async.__file__).resolve().parent
ROOT = PACKAGE.name

BOTTOM = {
    f"{ROOT}.{name}" for name in ("_constants", "_exceptions", "_types", "_labels", "_logging")
}
"""Modules that may import only each other (and nothing outside the package's bottom)."""


def _modules() -> dict[str, pathlib.Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped.update(id(n) for n in ast.walk(child))
    return skipped


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The package imported from, then each imported name as a dotted path."""
    if isinstance(node, ast.Import):
        return ["", *(alias.name for alias in node.names)]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join([*base, *([node.module] if node.module else [])])
    else:
        target = node.module or ""
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skipped or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            package, *names = _targets(node, name, path.name == "__init__.py")
            submodules = {n for n in names if n in modules}
            if len(submodules) < len(names) and package in modules:
                graph[name].add(package)  # a name that is not a submodule comes from the package
            graph[name].update(submodules)
        graph[name].discard(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _a_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """One concrete loop through ``component``, for the failure message."""
    members = set(component)
    path = [component[0]]
    seen = {component[0]}
    while True:
        following = sorted(graph[path[-1]] & members)
        back = [n for n in following if n in seen]
        if back:
            return [*path[path.index(back[0]) :], back[0]]
        path.append(following[0])
        seen.add(following[0])


def test_the_graph_sees_known_edges() -> None:
    graph = import_graph()
    assert f"{ROOT}._constants" in graph[f"{ROOT}._labels"]
    assert f"{ROOT}._client" in graph[f"{ROOT}.telemetry"]
    assert f"{ROOT}._constants" in graph[ROOT]  # from ._constants import Region, Task


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert _a_cycle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]


def test_no_import_cycle() -> None:
    graph = import_graph()
    found = cycles(graph)
    loops = [" -> ".join(_a_cycle(graph, component)) for component in found]
    assert not found, "import cycles:\n" + "\n".join(loops)


def test_the_bottom_layer_imports_nothing_above_it() -> None:
    graph = import_graph()
    upward = {module: sorted(graph[module] - BOTTOM) for module in BOTTOM}
    assert upward == {module: [] for module in BOTTOM}
