"""The house rules, checked on the source: rooms, which way imports point, no circles, one namespace.

Rooms (installed as ``cadenza.*``): the core (``engine`` but its ``cli``),
``engine.dsp`` (shared real-time blocks, part of the core), ``instruments``,
``models`` and the tools (``engine.cli``). Imports point
core ← models (``engine.dsp`` and ``engine.errors`` only) ← instruments ← cli;
a model folder imports no other model's folder; nothing in the product imports
``bench`` or ``tests``; no module imports itself back through others.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOMS = ("engine", "instruments", "models")


def product_modules() -> dict[str, Path]:
    """Dotted installed name → file, for every module of the product."""
    out = {}
    for room in ROOMS:
        for path in (REPO / room).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out["cadenza." + ".".join(parts)] = path
    return out


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (lazy imports count too)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def room(module: str) -> str:
    if module.startswith("cadenza.engine.cli"):
        return "cli"
    if module.startswith("cadenza.engine.dsp"):
        return "dsp"
    return module.split(".")[1]


def model_folder(module: str) -> str | None:
    """``beat`` for ``cadenza.models.beat.train``; None for a module shared by every model (``weights``)."""
    parts = module.split(".")
    if len(parts) < 3:
        return None
    return parts[2] if (REPO / "models" / parts[2]).is_dir() else None


MODULES = product_modules()
GRAPH = {name: {m for m in imports_of(path, name) if m in MODULES and m != name} for name, path in MODULES.items()}


def test_imports_point_one_way():
    allowed = {
        "engine": {"engine", "dsp"},
        "dsp": {"dsp"},
        "models": {"dsp", "models"},
        "instruments": {"engine", "dsp", "models", "instruments"},
        "cli": {"engine", "dsp", "models", "instruments", "cli"},
    }
    wrong = []
    for name, targets in GRAPH.items():
        for target in targets:
            ok = room(target) in allowed[room(name)] or (room(name) == "models" and target == "cadenza.engine.errors")
            if ok and room(name) == room(target) == "models":
                ok = model_folder(target) in (None, model_folder(name))
            if not ok:
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circles():
    cycles = []
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if target.startswith(name + "."):  # a package importing its own submodule is no circle
                continue
            if state.get(target) == 1:
                cycles.append(" → ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, "\n".join(cycles)


def test_nothing_imports_bench_tests_or_a_bare_room_name():
    bad = []
    for path in [*MODULES.values(), *REPO.glob("bench/**/*.py"), *REPO.glob("tests/*.py")]:
        for module in imports_of(path, "x.y"):
            top = module.split(".")[0]
            if top in ROOMS or (path.is_relative_to(REPO / "engine") or path.is_relative_to(REPO / "instruments")
                                or path.is_relative_to(REPO / "models")) and top in ("bench", "tests"):
                bad.append(f"{path.relative_to(REPO)} imports {module}")
    assert not bad, "\n".join(sorted(bad))


def test_every_package_is_installed_under_the_cadenza_namespace():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {name for name, path in MODULES.items() if path.name == "__init__.py"}
    assert packages | {"cadenza.patches", "cadenza.engine.ui.static"} == listed  # the two data-only folders


def test_every_module_opens_with_a_line_that_says_what_it_is():
    missing = [str(path.relative_to(REPO)) for path in MODULES.values()
               if not (ast.get_docstring(ast.parse(path.read_text())) or "").strip()]
    assert not missing, missing
