"""The floors of labkit: each module imports only from its own floor or the floors below it.

Every import of every module in labkit/ is read with `ast` — at module level, under `TYPE_CHECKING` and
inside functions — and checked against the floor table below. Violations that exist today are listed in
`KNOWN_VIOLATIONS`; the test fails on any other one (a new back-stair) and on a listed one that is gone
(so the list only shrinks). Cycles through module-level imports are checked against `KNOWN_CYCLES`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import labkit

# Floors, lowest first: a module may import its own floor or a lower one.
RANK = {"base": 0, "core": 1, "evals": 2, "facade": 3, "views": 4}

# The floor of each package or module (a submodule takes the floor of its nearest listed parent;
# "labkit" is the package's own __init__ only). Every module in labkit/ must have one.
FLOOR_OF = {
    "labkit.cli": "views",
    "labkit.__main__": "views",
    "labkit.panels": "views",
    "labkit.notebooks": "views",
    "labkit.sweeps": "views",
    "labkit.cloud": "views",
    "labkit.bench": "views",
    "labkit.bench_gpu": "views",  # `labkit bench gpu` (issue 24)
    "labkit.serve": "views",  # the REST API (issue 21)
    "labkit.testing": "views",  # may import anything; nothing in labkit/ may import it (TEST_HELPERS)
    "labkit.lab": "facade",
    "labkit.lab_args": "facade",
    "labkit.render": "facade",
    "labkit.replay": "facade",
    "labkit.diagnose": "facade",  # `labkit doctor --run`: a run explained (issue 24)
    "labkit.results": "facade",
    "labkit.evals": "evals",
    # the benchmarks' old addresses: shims that re-export labkit.evals (issue 20), so on its floor
    "labkit.toyworld.evaluate": "evals",
    "labkit.toyworld.motion_eval": "evals",
    "labkit.controller.evaluate": "evals",
    "labkit.training.compare": "evals",
    "labkit.pipelines": "core",
    "labkit.controller": "core",
    "labkit.compliance": "core",
    "labkit.tracking": "core",
    "labkit.training": "core",
    "labkit.toyworld": "core",
    "labkit.controls": "core",  # control-map preprocessors (issue 22)
    "labkit.plan": "base",
    "labkit.errors": "base",
    "labkit.hardware": "base",
    "labkit.probes": "base",  # what the machine has now: RAM, the GPU through NVML or torch, the platform
    "labkit.catalog": "base",
    "labkit.catalog_files": "base",
    "labkit.config": "base",
    "labkit.outputs": "base",
    "labkit.files": "base",
    "labkit.deps": "base",
    "labkit.families": "base",
    "labkit.grids": "base",
    "labkit.locks": "base",
    "labkit.tokenizers": "base",
    "labkit._lazy": "base",
    "labkit.version": "base",
    "labkit": "views",  # the package's face: it names Lab, Tracker and the rest for users and type checkers
}

# Test helpers: importable from tests and users' CI, never from labkit's own modules.
TEST_HELPERS = "labkit.testing"
# ... except the GPU bench, whose subject is the real architectures with random weights that only the test
# helpers build offline (`labkit.testing.build_full`, issue 24); it imports them inside a function.
TEST_HELPER_USERS = ("labkit.bench_gpu",)

# Stricter rules for parts already made clean. Importer prefix -> prefixes it must not import.
MUST_NOT_IMPORT = {
    "labkit.pipelines": ("labkit.controller", "labkit.compliance", "labkit.toyworld", "labkit.lab", "labkit.render"),
}
# Importer -> the only labkit modules it may import.
ONLY_IMPORTS = {
    "labkit.plan": ("labkit.errors", "labkit.catalog", "labkit.hardware", "labkit.config", "labkit.outputs",
                    "labkit.files", "labkit.locks"),
}

# (importer, imported) measured on 2026-12-04; a pair covers its submodules on either side (so a module
# that becomes a package stays covered). Remove a pair when its import is gone: the test says which.
KNOWN_VIOLATIONS: set[tuple[str, str]] = set()

# Import cycles through module-level imports (TYPE_CHECKING ones included), as groups of modules that
# reach each other, measured on 2026-12-04. A cycle found later must lie within one of these. Imports
# inside functions are left out of cycles (not out of the floors).
KNOWN_CYCLES: list[tuple[str, ...]] = []


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    where: str  # "top" (runs at import), "typing" (under TYPE_CHECKING) or "function"


# --------------------------------------------------------------------------------------------------
# Reading imports


def module_files(root: Path) -> dict[str, Path]:
    """Every module under the package folder `root`, by dotted name (a package by its own name)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def module_imports(name: str, source: str, *, is_package: bool = False,
                   known: Iterable[str] = ()) -> list[Import]:
    """The labkit modules that module `name` imports, wherever the import statement stands.

    `from pkg import x` counts as importing `pkg.x` when `pkg.x` is one of the `known` modules.
    Relative imports are resolved against `name` (`is_package`: `name` is a package's __init__).
    """
    known = set(known)
    package = name if is_package else name.rpartition(".")[0]
    out: list[Import] = []

    def add(target: str, node: ast.stmt, where: str) -> None:
        if target == "labkit" or target.startswith("labkit."):
            out.append(Import(name, target, node.lineno, where))

    def visit(nodes: Iterable[ast.AST], where: str) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node, where)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                for alias in node.names:
                    sub = f"{mod}.{alias.name}"
                    add(sub if sub in known else mod, node, where)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(ast.iter_child_nodes(node), "function")
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.body, "function" if where == "function" else "typing")
                visit(node.orelse, where)
            else:
                visit(ast.iter_child_nodes(node), where)

    visit(ast.parse(source).body, "top")
    return out


def all_imports(root: Path) -> list[Import]:
    files = module_files(root)
    out = []
    for name, path in files.items():
        out += module_imports(name, path.read_text(encoding="utf-8"), is_package=path.name == "__init__.py",
                              known=files)
    return out


# --------------------------------------------------------------------------------------------------
# Checking them


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def floor_of(module: str, table: Mapping[str, str] = FLOOR_OF) -> str | None:
    """The floor of `module`: its own entry, else its nearest listed parent's ("labkit" itself only exactly)."""
    parts = module.split(".")
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        if key in table and (key != "labkit" or module == "labkit"):
            return table[key]
    return None


def violations(imports: Iterable[Import], table: Mapping[str, str] = FLOOR_OF) -> dict[tuple[str, str], str]:
    """(importer, imported) -> why it breaks a rule: a higher floor, the test helpers, or a stricter rule."""
    out: dict[tuple[str, str], str] = {}
    for imp in imports:
        a, b = imp.importer, imp.imported
        fa, fb = floor_of(a, table), floor_of(b, table)
        why = []
        if fa and fb and RANK[fb] > RANK[fa]:
            why.append(f"{fa} imports {fb}")
        if _under(b, TEST_HELPERS) and not _under(a, TEST_HELPERS) and a not in TEST_HELPER_USERS:
            why.append("imports the test helpers")
        for prefix, banned in MUST_NOT_IMPORT.items():
            if _under(a, prefix) and any(_under(b, x) for x in banned):
                why.append(f"{prefix} must not import {b}")
        for mod, allowed in ONLY_IMPORTS.items():
            if _under(a, mod) and not _under(b, mod) and not any(_under(b, x) for x in allowed):
                why.append(f"{mod} may import only {', '.join(allowed)}")
        if why:
            out.setdefault((a, b), f"line {imp.line} ({imp.where}): " + "; ".join(why))
    return out


def _covered(pair: tuple[str, str], known: Iterable[tuple[str, str]]) -> bool:
    return any(_under(pair[0], k[0]) and _under(pair[1], k[1]) for k in known)


def cycles(imports: Iterable[Import]) -> list[tuple[str, ...]]:
    """Groups of modules that import one another through module-level imports (Tarjan's SCCs)."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if imp.where != "function" and imp.importer != imp.imported:
            graph.setdefault(imp.importer, set()).add(imp.imported)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(tuple(sorted(group)))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


ROOT = Path(labkit.__file__).resolve().parent


# --------------------------------------------------------------------------------------------------
# The tree as it is


def test_every_module_has_a_floor():
    missing = [m for m in module_files(ROOT) if floor_of(m) is None]
    assert not missing, f"add these to FLOOR_OF in {Path(__file__).name}: {missing}"


def test_no_new_import_from_a_higher_floor():
    found = violations(all_imports(ROOT))
    new = {pair: why for pair, why in found.items() if not _covered(pair, KNOWN_VIOLATIONS)}
    assert not new, "imports that break the floors:\n" + "\n".join(f"  {a} -> {b}: {why}"
                                                                  for (a, b), why in sorted(new.items()))


def test_known_violations_are_still_there():
    found = violations(all_imports(ROOT))
    gone = [k for k in KNOWN_VIOLATIONS if not any(_under(a, k[0]) and _under(b, k[1]) for a, b in found)]
    assert not gone, f"fixed: remove these from KNOWN_VIOLATIONS: {sorted(gone)}"


def test_pipelines_and_plan_keep_their_stricter_rules():
    imports = all_imports(ROOT)
    pipelines = [i for i in imports if _under(i.importer, "labkit.pipelines")]
    plan = [i for i in imports if i.importer == "labkit.plan"]
    assert pipelines and plan  # the reader sees them, so it would see a bad one
    bad = [(i.importer, i.imported) for i in pipelines
           if any(_under(i.imported, x) for x in MUST_NOT_IMPORT["labkit.pipelines"])]
    assert [p for p in bad if not _covered(p, KNOWN_VIOLATIONS)] == []
    assert {i.imported for i in plan} <= set(ONLY_IMPORTS["labkit.plan"]), {i.imported for i in plan}


def test_no_new_import_cycle():
    new = [c for c in cycles(all_imports(ROOT)) if not any(set(c) <= set(k) for k in KNOWN_CYCLES)]
    assert not new, f"modules that import each other at import time: {new}"


def test_old_plan_path_still_works():
    from labkit.controller import plan as old
    from labkit.plan import AdapterRef, Plan, check_text, plan_schema

    assert old.Plan is Plan and old.AdapterRef is AdapterRef and old.check_text is check_text
    assert old.plan_schema() == plan_schema()


# --------------------------------------------------------------------------------------------------
# The reader and the checks themselves, on small sources


SOURCE = '''
from __future__ import annotations
from typing import TYPE_CHECKING
import os
import labkit.errors
from labkit.controller import local
from . import sibling
from .. import lab as the_lab
if TYPE_CHECKING:
    from labkit.render import Result
def f():
    from labkit.compliance import Asset
    class Inner:
        import labkit.toyworld.motion
'''


def test_reader_sees_top_level_typing_function_and_relative_imports():
    known = {"labkit.controller.local", "labkit.pipelines.sibling", "labkit.lab"}
    got = {(i.imported, i.where) for i in module_imports("labkit.pipelines.x", SOURCE, known=known)}
    assert got == {("labkit.errors", "top"), ("labkit.controller.local", "top"),
                   ("labkit.pipelines.sibling", "top"), ("labkit.lab", "top"), ("labkit.render", "typing"),
                   ("labkit.compliance", "function"), ("labkit.toyworld.motion", "function")}


def test_checks_flag_an_upward_import_the_test_helpers_and_the_stricter_rules():
    imps = [Import("labkit.plan", "labkit.lab", 1, "typing"),              # base -> facade, and plan's own rule
            Import("labkit.errors", "labkit.hardware", 2, "top"),           # base -> base: fine
            Import("labkit.lab", "labkit.pipelines.lora", 3, "function"),   # facade -> core: fine
            Import("labkit.cli", "labkit.testing.vocab", 4, "function"),    # a view, but test helpers
            Import("labkit.pipelines.lora", "labkit.toyworld.motion", 5, "function"),  # same floor, banned
            Import("labkit.pipelines.lora", "labkit.plan", 6, "top")]       # core -> base: fine
    found = violations(imps)
    assert set(found) == {("labkit.plan", "labkit.lab"), ("labkit.cli", "labkit.testing.vocab"),
                          ("labkit.pipelines.lora", "labkit.toyworld.motion")}
    assert "base imports facade" in found[("labkit.plan", "labkit.lab")]
    assert floor_of("labkit") == "views" and floor_of("labkit.nothing") is None
    assert _covered(("labkit.cli.generate", "labkit.testing.vocab"), {("labkit.cli", "labkit.testing")})


def test_cycles_are_found_through_module_level_imports_only():
    imps = [Import("labkit.a", "labkit.b", 1, "top"), Import("labkit.b", "labkit.c", 1, "top"),
            Import("labkit.c", "labkit.b", 1, "typing"), Import("labkit.c", "labkit.d", 1, "top"),
            Import("labkit.d", "labkit.a", 1, "function"), Import("labkit.e", "labkit.e", 1, "top")]
    assert cycles(imps) == [("labkit.b", "labkit.c")]
    assert cycles(imps + [Import("labkit.d", "labkit.a", 2, "top")]) == [("labkit.a", "labkit.b", "labkit.c",
                                                                           "labkit.d")]


def test_old_benchmark_paths_still_work():
    """The four benchmarks moved to labkit.evals (issue 20); their old modules re-export the same objects."""
    import labkit.controller.evaluate as old_controller
    import labkit.evals.adapters as adapters
    import labkit.evals.controller as controller
    import labkit.evals.toymotion as toymotion
    import labkit.evals.toyworld as toyworld
    import labkit.toyworld.evaluate as old_toyworld
    import labkit.toyworld.motion_eval as old_toymotion
    import labkit.training.compare as old_adapters
    from labkit.outputs import captioned_grid
    from labkit.toyworld import motion_verdict
    from labkit.toyworld.motion_score import motion_verdict as scored

    for old, new in [(old_toyworld, toyworld), (old_toymotion, toymotion), (old_controller, controller),
                     (old_adapters, adapters)]:
        assert old.__all__ and all(getattr(old, n) is getattr(new, n) for n in old.__all__ if n != "EvalReport"), \
            old.__name__
        assert f"moved to {new.__name__}" in old.__doc__
    # two different reports had one name; each has its own now, the old name still works at the old paths
    assert old_toyworld.EvalReport is toyworld.ToyEvalReport
    assert old_controller.EvalReport is controller.ControllerReport
    assert old_toyworld.captioned_grid is captioned_grid
    assert old_toymotion.motion_verdict is motion_verdict is scored
    assert set(toymotion.__all__) <= set(old_toymotion.__all__)
    assert set(adapters.__all__) <= set(old_adapters.__all__)
