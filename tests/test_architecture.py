"""The package's floors: imports only point down (DESIGN.md), so each floor can be read and tested on its own."""

import ast
from pathlib import Path

import cnnbench

PACKAGE = Path(cnnbench.__file__).parent
# floor of each top-level module or subpackage; a module may import its own package's modules and lower floors only
FLOORS = {
    "errors": 0,
    "fileio": 0,
    "layout": 0,
    "models": 1,
    "data": 1,
    "config": 2,
    "engine": 3,
    "analysis": 4,
    "report": 5,
    "study": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
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
