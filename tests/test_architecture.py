"""The package's floors: imports only point down (docs/ARCHITECTURE.md), so each floor can be read and tested
on its own."""

import ast
import re
from pathlib import Path

import cnnbench

PACKAGE = Path(cnnbench.__file__).parent
# floor of each top-level module or subpackage; a module may import its own package's modules and lower floors only
FLOORS = {
    "errors": 0,
    "fileio": 0,
    "layout": 0,
    "version": 0,
    "models": 1,
    "data": 1,
    "config": 2,
    "engine": 3,
    "analysis": 4,
    "report": 5,
    "launch": 6,
    "tune": 7,
    "study": 8,
    "cli": 9,
    "__init__": 10,
    "__main__": 10,
}


def unit_of(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(source: str, package_parts: tuple[str, ...]) -> set[str]:
    """Top-level cnnbench units imported anywhere in ``source`` (lazy imports inside functions included), for a
    module in the subpackage ``package_parts`` (() for the top level)."""
    units = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package_parts[: len(package_parts) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [target[0]] if target else [a.name for a in node.names]
            units.update(n for n in names if n in FLOORS)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            for name in [module] if module else [a.name for a in node.names]:
                parts = name.split(".")
                if parts[0] == "cnnbench" and len(parts) > 1:
                    units.add(parts[1])
    return units


def test_every_unit_has_a_floor():
    units = {unit_of(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(FLOORS), units - set(FLOORS)


def test_imports_only_point_down():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        unit = unit_of(path)
        source = path.read_text(encoding="utf-8")
        for target in imported_units(source, path.relative_to(PACKAGE).parent.parts) - {unit}:
            if FLOORS[target] >= FLOORS[unit]:
                upward.append(
                    f"{path.relative_to(PACKAGE)} ({unit}, floor {FLOORS[unit]}) imports {target} (floor "
                    f"{FLOORS[target]})"
                )
    assert not upward, "\n".join(upward)


def test_the_checker_sees_lazy_relative_and_absolute_imports():
    """The rule above can fail: upward imports inside a function, relative or absolute, are found."""
    source = (
        "def f():\n    from ..report.plots import save_figure\n    import cnnbench.study\n    from . import train\n"
    )
    assert imported_units(source, ("engine",)) == {"report", "study", "engine"}
    assert imported_units("from .analysis.insight import cka\n", ()) == {"analysis"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The cnnbench modules ``source`` imports anywhere (lazy imports inside functions included); ``from X import
    name`` counts X.name where that is a module, else X."""
    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
    return {m for m in found if m in known and m != module}


def import_graph() -> dict[str, set[str]]:
    paths = list(PACKAGE.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {
        module_name(p): imported_modules(p.read_text(encoding="utf-8"), module_name(p), p.name == "__init__.py", known)
        for p in paths
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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


def test_no_import_cycles_between_modules():
    """Two modules never import each other, directly or round a loop, not even from inside a function.
    A package's __init__ re-exporting its modules is not a cycle: its modules must not import it back."""
    graph = import_graph()
    loops = cycles(graph)
    assert not loops, "import cycles: " + "; ".join(" <-> ".join(c) for c in loops)


def test_the_cycle_finder_finds_a_lazy_loop():
    source_a = "def f():\n    from .b import g\n"
    known = {"cnnbench.engine.a", "cnnbench.engine.b"}
    graph = {
        "cnnbench.engine.a": imported_modules(source_a, "cnnbench.engine.a", False, known),
        "cnnbench.engine.b": imported_modules("from . import a\n", "cnnbench.engine.b", False, known),
    }
    assert cycles(graph) == [["cnnbench.engine.a", "cnnbench.engine.b"]]


def test_the_architecture_page_lists_the_floors_this_test_enforces():
    """docs/ARCHITECTURE.md's floor table and FLOORS above say the same: a new unit or a moved floor updates both."""
    page = (PACKAGE.parents[1] / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    documented = {}
    for line in page.splitlines():
        cells = [c.strip() for c in line.split("|")[1:-1]]
        if len(cells) == 3 and cells[0].isdigit():
            for unit in re.findall(r"`([\w.]+)/?`", cells[1]):
                documented[unit.removesuffix(".py")] = int(cells[0])
    expected = {unit: floor for unit, floor in FLOORS.items() if not unit.startswith("__")}
    assert documented == expected


MAX_FILE_LINES = 450  # a module longer than this holds more than one concern
MAX_FUNCTION_LINES = 100  # a function longer than this does more than one thing


def test_no_module_or_function_is_too_long_to_read():
    too_long = []
    for path in PACKAGE.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        lines = source.count("\n")
        if lines > MAX_FILE_LINES:
            too_long.append(f"{path.relative_to(PACKAGE)}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PACKAGE)}: {node.name}() is {length} lines")
    assert not too_long, "split these: " + "; ".join(too_long)
