"""The architecture contract: the layer order in pyproject.toml holds, it bites, no import
cycles, and library functions take typed settings.

The layer order and what each room may import is written down in DEVELOPERS.md ("Layers").
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "finsight"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """lint-imports with the contract in ``cwd``/pyproject.toml, on the finsight in ``pythonpath``."""
    paths = [str(pythonpath), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_lint_imports_keeps_the_layers_contract():
    proc = _lint_imports(REPO, REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_contract_bites_on_an_upward_import(tmp_path):
    """A low module that imports the CLI (inside a function, where a lazy import hides) breaks it."""
    shutil.copytree(PACKAGE, tmp_path / "finsight", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    labels = tmp_path / "finsight" / "labels.py"
    labels.write_text(labels.read_text(encoding="utf-8") + "\n\ndef _upward():\n    import finsight.cli\n",
                      encoding="utf-8")
    proc = _lint_imports(tmp_path, tmp_path)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 1, report
    assert "finsight.labels is not allowed to import finsight.cli" in report, report


def test_grimp_counts_function_level_and_type_checking_imports(tmp_path):
    """What lint-imports sees: the lazy imports inside functions and the TYPE_CHECKING ones.
    If a grimp upgrade stops counting them, the AST checks below are the only guard left."""
    import grimp

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    for name in ("__init__", "typed", "lazy", "lazy_from"):
        (pkg / f"{name}.py").write_text("", encoding="utf-8")
    (pkg / "low.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg import typed\n"
        "def f():\n    import pkg.lazy\n    from pkg import lazy_from\n", encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("pkg", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert graph.find_modules_directly_imported_by("pkg.low") == {"pkg.typed", "pkg.lazy", "pkg.lazy_from"}


# ---------------------------------------------------------------- the import graph, by AST


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """finsight modules ``module`` imports anywhere (top level, functions, TYPE_CHECKING) -> a line.

    As the interpreter resolves them: ``from finsight import hub`` imports the module
    finsight.hub, ``from finsight.config import Settings`` the module finsight.config.
    """
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import finsight.x.y.z` of a non-module name
                target = target.rpartition(".")[0]
            if target and target != module:
                found.setdefault(target, node.lineno)
    return found


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
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
                        components.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(graph[child])))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return components


def _path(graph: dict[str, dict[str, int]], start: str, members: set[str]) -> list[str]:
    """One import chain from ``start`` back to itself inside a cycle, each hop with its line."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for child in sorted(graph[node]):
            if child == start:
                hops = [node]
                while hops[-1] != start:
                    hops.append(parents[hops[-1]])
                hops.reverse()
                return [f"{a} (l.{graph[a][b]})" for a, b in zip(hops, [*hops[1:], start])] + [start]
            if child in members and child not in parents:
                parents[child] = node
                frontier.append(child)
    return [start]


def test_no_import_cycle_among_finsight_modules():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    cycles = _cycles(graph)
    report = [f"{len(members)} modules: {', '.join(members)}\n    e.g. "
              + " -> ".join(_path(graph, members[0], set(members))) for members in cycles]
    assert not cycles, "import cycles (counting imports inside functions):\n  " + "\n  ".join(report)


# ---------------------------------------------------------------- settings are typed


# The pydantic-settings hook is called by pydantic with its own sources, named by pydantic.
NOT_SETTINGS = {("finsight/config.py", "settings_customise_sources")}


def _settings_classes() -> set[str]:
    from finsight.config import Section, Settings

    return {Settings.__name__, *(cls.__name__ for cls in Section.__subclasses__())}


def _is_settings_parameter(name: str) -> bool:
    return name in {"settings", "cfg", "opts"} or name.endswith("_settings")


def _names_a_settings_class(annotation: ast.expr | None, classes: set[str]) -> bool:
    """``Settings``, ``PredictSettings``, ``config.Settings``, either ``| None`` or Optional[...]."""
    if annotation is None:
        return False
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return _names_a_settings_class(ast.parse(annotation.value, mode="eval").body, classes)
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        sides = [annotation.left, annotation.right]
        nones = [s for s in sides if isinstance(s, ast.Constant) and s.value is None]
        return len(nones) == 1 and _names_a_settings_class(next(s for s in sides if s not in nones), classes)
    if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", "") == "Optional":
        return _names_a_settings_class(annotation.slice, classes)
    name = annotation.attr if isinstance(annotation, ast.Attribute) else getattr(annotation, "id", None)
    return name in classes


def test_library_functions_take_typed_settings():
    """No function outside finsight/cli/ takes its settings as Any or unannotated: a parameter
    named settings, cfg, opts or *_settings is annotated Settings or one *Settings section."""
    classes, offenders = _settings_classes(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(REPO).as_posix()
        if where.startswith("finsight/cli/"):
            continue
        for func in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if (where, func.name) in NOT_SETTINGS:
                continue
            arguments = func.args
            for arg in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]:
                if _is_settings_parameter(arg.arg) and not _names_a_settings_class(arg.annotation, classes):
                    shown = ast.unparse(arg.annotation) if arg.annotation else "unannotated"
                    offenders.append(f"{where}:{func.lineno} {func.name}({arg.arg}: {shown})")
    assert not offenders, (f"{len(offenders)} settings parameters are not typed Settings or a section:\n  "
                           + "\n  ".join(offenders))
