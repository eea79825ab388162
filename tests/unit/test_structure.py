"""The package's shape: pearl's modules import each other without a cycle, and every module imports.

The graph is read from the source with ``ast``: every ``import`` of a ``pearl`` module, at the top
of a file or inside a function (a deferred import is still a dependency), except those under
``if TYPE_CHECKING:``, which never run. Importing ``pearl.a.b`` runs ``pearl/a/__init__.py`` first,
so a module depends on the packages above what it imports too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "pearl"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, package: str) -> set[str]:
    """Absolute names of what ``tree`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pearl import runs`
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def dependencies(name: str) -> set[str]:
    """The pearl modules that importing ``name`` runs, itself and its own packages left out."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    deps = set()
    for target in _imported(ast.parse(path.read_text()), package):
        parts = target.split(".")
        for i in range(1, len(parts) + 1):  # pearl.a.b runs pearl, pearl.a, pearl.a.b
            prefix = ".".join(parts[:i])
            if prefix in MODULES and not name.startswith(prefix + ".") and prefix != name:
                deps.add(prefix)
    return deps


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_checker_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    tree = ast.parse("import x\nif TYPE_CHECKING:\n    import y\ndef f():\n    from pearl import runs\n")
    assert _imported(tree, "pearl") == {"x", "pearl", "pearl.runs"}


def test_pearl_has_no_import_cycle() -> None:
    graph = {name: dependencies(name) for name in MODULES}
    assert graph["pearl.cli"], "the graph is empty: the checker reads nothing"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_trainer_knows_nothing_of_runs_latents_or_the_cli() -> None:
    assert not {"pearl.runs", "pearl.latents", "pearl.cli", "pearl.plots"} & dependencies("pearl.trainer")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


LONGEST_FUNCTION = 60  # lines, docstring included


def test_no_function_in_pearl_runs_past_sixty_lines() -> None:
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert not long, "split these (or say here why one must stay whole): " + "; ".join(long)
