"""The package's import graph: acyclic, and as docs/architecture.md says it is."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "gcrl"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_names() -> dict[str, Path]:
    """Every module of the package by dotted name (packages by their ``__init__``)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The gcrl modules ``name`` imports (anywhere in the file, lazy imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        yield from (t for t in targets if t == "gcrl" or t.startswith("gcrl."))


def graph() -> dict[str, set[str]]:
    modules = module_names()
    known = set(modules)
    return {
        name: {t for t in imported(name, path, known) if t != name}
        for name, path in modules.items()
    }


def area(module: str, areas: list[str]) -> str:
    """The table row a module falls under: the longest listed prefix."""
    matches = [a for a in areas if module == a or module.startswith(a + ".")]
    return max(matches, key=len)


def allowed_imports() -> dict[str, set[str] | None]:
    """The table of docs/architecture.md: package -> what it may import (None: anything)."""
    rows = re.findall(r"^\| `(gcrl[\w.]*)` \| (.*) \|$", ARCHITECTURE.read_text(), re.M)
    assert rows, "docs/architecture.md has no import table"
    return {
        package: None if rule.strip() == "any" else set(re.findall(r"`(gcrl[\w.]*)`", rule))
        for package, rule in rows
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` (its nodes, the first repeated last), or
    None when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_is_acyclic() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_every_import_follows_docs_architecture() -> None:
    rules = allowed_imports()
    areas = [*rules, "gcrl"]
    modules = set(module_names())
    assert {area(m, areas) for m in modules} <= set(areas)
    unlisted = sorted({area(m, areas) for m in modules} - set(rules) - {"gcrl"}, key=str)
    assert not unlisted, f"packages missing from docs/architecture.md: {unlisted}"
    broken = []
    for module, targets in graph().items():
        own = area(module, areas)
        allowed = rules.get(own, set())
        if allowed is None:
            continue
        for target in targets:
            other = area(target, areas)
            if other != own and other not in allowed:
                broken.append(f"{module} imports {target}")
    assert not broken, "imports docs/architecture.md does not allow: " + "; ".join(broken)


#: A string that is a module name or a ``MODULE:NAME`` reference into gcrl, in full.
MODULE_REFERENCE = re.compile(r"(gcrl(?:\.\w+)*)(?::\w+)?")


def test_no_module_names_a_layer_it_may_not_import_in_a_string() -> None:
    """A string default such as ``"gcrl.envs.babyai:hindsight_instructions"`` in
    gcrl.relabel would import the environments at run time, around the table above: a lower
    layer takes such a function from its caller instead."""
    rules = allowed_imports()
    areas = [*rules, "gcrl"]
    broken = []
    for module, path in module_names().items():
        own = area(module, areas)
        allowed = rules.get(own, set())
        if allowed is None or module == "gcrl":  # the root's lazy names are its job
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            match = MODULE_REFERENCE.fullmatch(node.value)
            if match is None:
                continue
            other = area(match.group(1), areas)
            if other not in (own, "gcrl") and other not in allowed:
                broken.append(f"{module}:{node.lineno} names {node.value!r}")
    assert not broken, broken
    assert MODULE_REFERENCE.fullmatch("gcrl.envs.babyai:hindsight_instructions")
    assert not MODULE_REFERENCE.fullmatch("for BabyAI: gcrl.envs.babyai:hindsight_instructions")


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The parser finds imports inside functions and resolves relative ones."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from gcrl.relabel import goals\n    from . import io\n")
    found = set(imported("gcrl.datasets.mod", source, {"gcrl.relabel.goals", "gcrl.datasets.io"}))
    assert found == {"gcrl.relabel.goals", "gcrl.datasets.io"}


def test_no_test_module_skips_itself_at_import() -> None:
    """A test module's imports are plain: scripts/setup.sh installs every extra the tests
    read, so a missing or broken one fails the suite instead of turning a file into skips."""
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            calls = [n for n in ast.walk(node) if isinstance(n, ast.Call)]
            for call in calls:
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in ("importorskip", "skip") and not isinstance(
                    node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                ):
                    offenders.append(f"{path.name}:{call.lineno}")
    assert not offenders, offenders
