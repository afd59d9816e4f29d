"""The shape of the package: one-way imports, and RQ/Redis behind one module.

Read from the source with ``ast`` (every import, also those inside functions, except the
ones under ``if TYPE_CHECKING:``), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import imagen_assets

PACKAGE = Path(imagen_assets.__file__).resolve().parent
#: The only modules that may import RQ, Redis or django-rq.
QUEUE_MODULES = {"imagen_assets.queueing", "imagen_assets.worker"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(path: Path) -> set[str]:
    """Every module ``path`` imports when it runs (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for child in ast.walk(node))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module_name(path).split(".")
                if path.name != "__init__.py":
                    package = package[:-1]
                base = ".".join([*package[: len(package) - node.level + 1], node.module])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        if ".migrations." in f"{name}.":
            continue
        graph[name] = {
            target
            for target in runtime_imports(path)
            if target in modules and target != name and ".migrations" not in target
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle, as the modules in it, or [] when there is none."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


class ImportLayoutTests:
    def test_no_module_of_the_package_imports_itself_in_a_circle(self) -> None:
        assert find_cycle(package_graph()) == []

    def test_the_cycle_finder_finds_a_circle(self) -> None:
        graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
        assert find_cycle(graph) == ["a", "b", "c", "a"]

    def test_only_queueing_and_the_worker_import_rq_or_redis(self) -> None:
        offenders = {
            module_name(path): sorted(
                name
                for name in runtime_imports(path)
                if name.split(".")[0] in {"rq", "redis", "django_rq"}
            )
            for path in PACKAGE.rglob("*.py")
        }
        assert {name for name, used in offenders.items() if used} == QUEUE_MODULES

    def test_lazy_imports_count(self, tmp_path: Path) -> None:
        module = PACKAGE / "jobs.py"
        assert "imagen_assets.queueing" in runtime_imports(module)
        lazy = tmp_path / "lazy.py"
        lazy.write_text(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    import rq\n"
            "def f():\n    import redis\n"
        )
        assert runtime_imports(lazy) == {"typing", "typing.TYPE_CHECKING", "redis"}
