"""The dependency direction of ../shared/DESIGN.md, read from the source with `ast`.

models imports nothing of ours; store (settings, tables, artifacts) imports nothing of ours
either; workers imports models and store; service imports store and models (the one extra edge:
predictions from cached task states in the API process); cli, the `fewshot` command that starts
the API, the workers and Redis, may import all four. Nothing imports cli, and only cli imports
service. Every import counts: at the top of a module, inside a function, under TYPE_CHECKING,
and importlib.import_module("...") with a literal name. No module takes part in an import cycle.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Each package of ours and the packages of ours it may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "models": frozenset(),
    "store": frozenset(),
    "workers": frozenset({"models", "store"}),
    "service": frozenset({"store", "models"}),
    "cli": frozenset({"service", "workers", "store", "models", "fewshot_client"}),
    "fewshot_client": frozenset(),  # the SDK (client/): installable alone, it imports nothing of ours
}
# Packages that live below the root (pyproject.toml finds them there too).
PARENT = {"fewshot_client": ROOT / "client"}


def _root_of(package: str) -> Path:
    return PARENT.get(package, ROOT)
# Ours too, but no package may import them.
NOT_IMPORTABLE = frozenset({"tests", "benchmarks", "scripts"})


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "service.routes.jobs"
    target: str  # the module imported, as precisely as the statement names it
    where: str  # path:line, for the message

    @property
    def source_package(self) -> str:
        return self.source.split(".")[0]

    @property
    def target_package(self) -> str:
        return self.target.split(".")[0]


def _module_name(path: Path) -> str:
    parent = next((d for d in PARENT.values() if path.is_relative_to(d)), ROOT)
    parts = list(path.relative_to(parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([name] if name else [])])


def _existing_module(name: str) -> bool:
    path = _root_of(name.split(".")[0]).joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def imports_of(path: Path) -> list[Import]:
    return list(imports_in(path.read_text(), _module_name(path), _is_package(path), str(path.relative_to(ROOT))))


def imports_in(text: str, module: str, is_package: bool, filename: str) -> Iterator[Import]:
    for node in ast.walk(ast.parse(text, filename=filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, where)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, is_package, node.level, node.module) if node.level else node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                candidate = f"{base}.{alias.name}"
                yield Import(module, candidate if alias.name != "*" and _existing_module(candidate) else base, where)
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
            if name in ("import_module", "__import__") and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and not first.value.startswith("."):
                    yield Import(module, first.value, where)


def our_files() -> list[Path]:
    return sorted(p for package in ALLOWED for p in (_root_of(package) / package).rglob("*.py"))


def all_imports() -> list[Import]:
    return [imp for path in our_files() for imp in imports_of(path)]


def test_every_installed_package_has_a_rule():
    """A new top-level package gets a line in ALLOWED before it ships."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    included = {pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert included == set(ALLOWED), f"pyproject.toml installs {sorted(included)}; ALLOWED rules {sorted(ALLOWED)}"
    for package in ALLOWED:
        assert (_root_of(package) / package / "__init__.py").exists(), f"{package}/ is not a package"


def test_the_rules_point_one_way():
    """ALLOWED itself has no cycle, so the packages form layers."""
    assert _cycles({p: set(targets) for p, targets in ALLOWED.items()}) == []


def test_imports_follow_the_dependency_direction():
    ours = set(ALLOWED) | NOT_IMPORTABLE
    broken = [
        f"{imp.where}: {imp.source} imports {imp.target} ({imp.source_package} may import "
        f"{', '.join(sorted(ALLOWED[imp.source_package])) or 'nothing of ours'})"
        for imp in all_imports()
        if imp.target_package in ours
        and imp.target_package != imp.source_package
        and imp.target_package not in ALLOWED[imp.source_package]
    ]
    assert not broken, "imports against the dependency direction (../shared/DESIGN.md):\n" + "\n".join(broken)


def test_the_parser_sees_every_kind_of_import():
    """Top-level, in a function, from-package-import-module, relative, importlib."""
    text = (
        "import workers.app\n"
        "from store import db\n"
        "def f():\n"
        "    from workers.pipelines import train_job\n"
        "    import importlib\n"
        "    importlib.import_module('cli.main')\n"
        "from .routes import jobs\n"
        "from . import main\n"
    )
    targets = {imp.target for imp in imports_in(text, "service.probe", False, "service/probe.py")}
    assert targets == {"workers.app", "store.db", "workers.pipelines", "importlib", "cli.main", "service.routes.jobs",
                       "service.main"}


def test_no_module_imports_itself_through_others():
    graph: dict[str, set[str]] = {}
    modules = {_module_name(p) for p in our_files()}
    for imp in all_imports():
        if imp.target in modules and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other, directly or through others:\n" + "\n".join(
        ", ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan): each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found
