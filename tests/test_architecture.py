"""The architecture, read from the source with ``ast``: no import cycles, one module reads the
environment, modules stay small.

Import rule: a module depends on every module it imports, at module level or inside a
function (both count for layering). Only MODULE-LEVEL imports (including those under ``if`` /
``try`` at top level, excluding ``if TYPE_CHECKING:``) count for cycles: a function-level import
is the deliberate way to defer a dependency. ``from X import Y`` resolves to ``X.Y`` when ``X.Y``
is a module, else to ``X``; relative imports resolve against the importing package.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "candor"
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    base = node.module or ""
    if node.level:
        pkg = importer.split(".") if is_package else importer.split(".")[:-1]
        pkg = pkg[: len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([base] if base else []))
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append(sub if sub in MODULES else base)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(name: str, module_level_only: bool) -> set[str]:
    """The candor modules ``name`` imports (see the module docstring for the rule)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.update(_resolve(name, is_package, node))
            elif isinstance(node, ast.If) and _is_type_checking(node):
                continue
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                if not module_level_only:
                    visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])

    if module_level_only:
        visit(tree.body)
    else:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                found.update(_resolve(name, is_package, node))
    return {m for m in found if m in MODULES and m != name}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return cycles


def test_the_import_graph_is_read():
    """The resolver itself: a known module-level edge is found, so the cycle test can fail."""
    assert "candor.errors" in imports("candor.face.imaging", module_level_only=True)


def test_no_import_cycles():
    graph = {name: imports(name, module_level_only=True) for name in MODULES}
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (module-level imports):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


def test_find_cycles_finds_one():
    assert find_cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


ENV_CALLS = ("environ", "getenv", "putenv", "unsetenv")


def environment_reads(path: Path) -> list[int]:
    """Lines that touch the process environment (``os.environ``, ``os.getenv``, ``environ.get``...)."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in ENV_CALLS:
            lines.append(node.lineno)
        elif isinstance(node, ast.Name) and node.id in ENV_CALLS:
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                a.name in ENV_CALLS for a in node.names):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_environment_reads_are_found():
    assert environment_reads(PACKAGE / "config.py"), "config.py reads the environment"


def test_only_config_reads_the_environment():
    offenders = {name: environment_reads(path) for name, path in MODULES.items()
                 if name != "candor.config"}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"modules reading the environment (module: lines): {offenders}"


def _explains_its_length(path: Path) -> bool:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return "lines" in doc.lower() and ("long" in doc.lower() or str(MAX_LINES) in doc)


def test_modules_stay_small():
    """Over MAX_LINES lines only when the module docstring says why (mentions its length)."""
    long = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    offenders = {k: n for k, n in long.items() if n > MAX_LINES and not _explains_its_length(MODULES[k])}
    assert not offenders, f"modules over {MAX_LINES} lines without a reason in the docstring: {offenders}"


def test_every_test_has_its_own_data_dir_and_home(tmp_path_factory):
    """The autouse fixture in conftest: nothing a test does reaches ~/.local/share/candor."""
    import os

    data_dir, home = Path(os.environ["CANDOR_DATA_DIR"]), Path(os.environ["HOME"])
    base = tmp_path_factory.getbasetemp()
    assert base in data_dir.parents and base in home.parents
