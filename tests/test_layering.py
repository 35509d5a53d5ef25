"""Imports and layering (issue 13, item 5).

- ``import aielower.ir``, ``import aielower.passes``, ``aielower opt``, ``aielower passes`` and ``aielower --help`` do
  not import torch or transformers (checked in a fresh interpreter: this test session has imported them already).
- The import graph of the package, read with ``ast`` (nothing is imported): the IR imports no layer above it,
  passes import no backend or frontend, backends do not import ``eval``, shared report formatting is a neutral
  module, and no modules import each other at module level (imports inside functions do not count for cycles).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "aielower"
HEAVY = ("torch", "transformers")

TWENTY_LINES = """\
weight @unused : tensor<4xf32>

func @prefill(%x: tensor<?bx?sx4x8xf32>) -> (tensor<?bx?sx32xf32>, tensor<?bx?sx32xf32>) {
  %one = nn.mul_scalar %x {value = 1.0} : tensor<?bx?sx4x8xf32>
  %zero = nn.add_scalar %one {value = 0} : tensor<?bx?sx4x8xf32>
  %t = tensor.transpose %zero {dim0 = 1, dim1 = 2} : tensor<?bx4x?sx8xf32>
  %tt = tensor.transpose %t {dim0 = 2, dim1 = 1} : tensor<?bx?sx4x8xf32>
  %r1 = tensor.reshape %tt {shape = [?b, ?s, 2, 16]} : tensor<?bx?sx2x16xf32>
  %r2 = tensor.reshape %r1 {shape = [?b, ?s, 32]} : tensor<?bx?sx32xf32>
  %a = nn.silu %r2 : tensor<?bx?sx32xf32>
  %b = nn.silu %r2 : tensor<?bx?sx32xf32>
  %dead = nn.exp %a : tensor<?bx?sx32xf32>
  return %a, %b
}
"""


# --------------------------------------------------------------------------- what a fresh interpreter imports


def _heavy_modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules it left in sys.modules."""
    script = code + f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_ir_and_passes_do_not_import_torch():
    assert _heavy_modules_after("import aielower.ir, aielower.passes") == []


def test_aielower_opt_does_not_import_torch(tmp_path):
    f = tmp_path / "twenty.ir"
    f.write_text(TWENTY_LINES, encoding="utf-8")
    code = ("import contextlib, io\nfrom aielower.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            f"    assert main(['opt', {str(f)!r}, '--pipeline', 'canonicalize']) == 0\n"
            "assert 'func @prefill' in out.getvalue()\n")
    assert _heavy_modules_after(code) == []


@pytest.mark.parametrize("argv", [["passes"], ["--help"], ["opt", "--help"]])
def test_light_commands_do_not_import_torch(argv):
    code = ("import contextlib, io\nfrom aielower.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        main({argv!r})\n"
            "    except SystemExit:\n"
            "        pass\n")
    assert _heavy_modules_after(code) == []


def test_package_attributes_are_lazy():
    """``import aielower`` imports nothing heavy; the public names are still there (and in dir()), and the
    torch-free ones (parse, the errors, QuantConfig, bundled_configs) load without torch."""
    code = ("import aielower\n"
            "names = {'compile', 'QuantConfig', 'default_pipeline', 'bundled_configs', 'load_model',\n"
            "         'load_tokenizer', 'parse', 'ModelError', 'AielowerError', '__version__'}\n"
            "assert names <= set(dir(aielower)), names - set(dir(aielower))\n"
            "assert set(aielower.__all__) <= set(dir(aielower))\n"
            "assert aielower.__version__\n"
            "assert aielower.parse is __import__('aielower.ir', fromlist=['parse']).parse\n"
            "assert issubclass(aielower.ModelError, aielower.AielowerError)\n"
            "assert aielower.QuantConfig(bits=4, group_size=128).bits == 4\n"
            "assert 'qwen2-0.5b' in aielower.bundled_configs()\n"
            "assert callable(aielower.compile) and callable(aielower.load_model)\n"
            "import aielower.frontend\n"
            "try:\n"
            "    aielower.no_such_name\n"
            "except AttributeError as e:\n"
            "    assert 'no_such_name' in str(e)\n"
            "else:\n"
            "    raise AssertionError('no AttributeError')\n")
    assert _heavy_modules_after(code) == []


# --------------------------------------------------------------------------- the import graph, read with ast


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class Import:
    def __init__(self, source: str, target: str, line: int, module_level: bool, type_only: bool):
        self.source, self.target, self.line = source, target, line
        self.module_level, self.type_only = module_level, type_only

    def __repr__(self) -> str:
        where = "" if self.module_level else " (in a function)"
        return f"{MODULES[self.source].relative_to(PACKAGE.parent)}:{self.line} imports {self.target}{where}"


def _imports(name: str) -> list[Import]:
    """aielower modules imported by ``name``: ``import a.b`` -> a.b; ``from a import b`` -> a.b if that is a
    module, else a. Imports in function bodies are marked not module-level; under ``if TYPE_CHECKING`` type-only."""
    path = MODULES[name]
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: list[Import] = []

    def record(node: ast.AST, module_level: bool, type_only: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.append(Import(name, alias.name, node.lineno, module_level, type_only))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = {f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module for a in node.names}
            for target in sorted(targets):
                found.append(Import(name, target, node.lineno, module_level, type_only))

    def walk(node: ast.AST, module_level: bool, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            record(child, module_level, type_only)
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                walk(child, False, type_only)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    record(stmt, module_level, True)
                    walk(stmt, module_level, True)
                for stmt in child.orelse:
                    record(stmt, module_level, type_only)
                    walk(stmt, module_level, type_only)
            else:
                walk(child, module_level, type_only)

    walk(ast.parse(path.read_text(encoding="utf-8"), str(path)), True, False)
    return [i for i in found if i.target == "aielower" or i.target.startswith("aielower.")]


GRAPH = {name: _imports(name) for name in MODULES}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(sources: str, forbidden: tuple[str, ...]) -> str:
    """Every import (module level, in a function, or for type checking only) from a module under ``sources`` of
    one under ``forbidden``, one per line; empty if none."""
    return "\n".join(repr(i) for src, imports in GRAPH.items() if _under(src, sources) for i in imports
                     if any(_under(i.target, f) for f in forbidden))


def test_the_graph_is_read():
    assert "aielower.ir.core" in MODULES and "aielower.passes.dce" in MODULES
    assert any(i.target == "aielower.ir" for i in GRAPH["aielower.passes.dce"])


def test_ir_imports_no_layer_above_it():
    above = tuple(f"aielower.{p}" for p in ("passes", "backends", "frontend", "eval", "quant", "interp", "api",
                                            "cli", "reporting"))
    assert not (found := _violations("aielower.ir", above)), found


def test_passes_import_no_backend_or_frontend():
    assert not (found := _violations("aielower.passes", ("aielower.backends", "aielower.frontend"))), found


def test_backends_do_not_import_eval():
    assert not (found := _violations("aielower.backends", ("aielower.eval",))), found


def test_interp_is_target_neutral():
    """Op semantics (``@impl``) do not depend on a backend, the frontend, passes or eval (backends use them)."""
    above = tuple(f"aielower.{p}" for p in ("backends", "frontend", "passes", "eval", "api", "cli"))
    assert not (found := _violations("aielower.interp", above)), found


def test_neutral_and_leaf_modules():
    # report formatting shared by eval and the AIE report: imports nothing of aielower
    assert GRAPH["aielower.reporting"] == []
    # the config checks that frontend/models.py and frontend/gguf.py share: a leaf (errors only)
    assert {i.target for i in GRAPH["aielower.frontend.config_checks"]} <= {"aielower.errors"}
    # gguf.py never imports models.py (models.py imports gguf.py in functions, one way only)
    assert [i for i in GRAPH["aielower.frontend.gguf"] if i.target == "aielower.frontend.models"] == []
    # the package itself loads its public names lazily (PEP 562): no aielower import at module level
    assert [i for i in GRAPH["aielower"] if i.module_level and not i.type_only] == []


def _cycles(edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(edges[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
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
                        found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_cycles_at_module_level():
    edges = {name: sorted({i.target for i in imports if i.module_level and not i.type_only
                           and i.target in MODULES and i.target != name})
             for name, imports in GRAPH.items()}
    cycles = _cycles(edges)
    detail = [[repr(i) for m in cycle for i in GRAPH[m] if i.module_level and i.target in cycle] for cycle in cycles]
    assert cycles == [], detail
