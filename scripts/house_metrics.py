"""Measures of the code's shape, for reviews of the house: internal imports inside functions vs at file tops,
package-level two-way ties and file circles among edgeslm's modules, line counts of the export path and its
longest function. Torch-free (it only parses the sources). Run: python scripts/house_metrics.py [--json]"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "edgeslm"
EXPORT_PATH = ("pipeline", "backends/base.py")  # files and folders of one export


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(tree: ast.AST, module: str) -> list[tuple[str, bool]]:
    """(imported edgeslm module, inside a function?) for every internal import of one file."""
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_func: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0 \
                    and child.module.split(".")[0] == "edgeslm":
                out.append((child.module, in_func))  # one per statement
            elif isinstance(child, ast.Import):
                out.extend((a.name, in_func) for a in child.names[:1] if a.name.split(".")[0] == "edgeslm")
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # type-only imports are not dependencies at run time
            visit(child, inner)

    visit(tree, False)
    return out


def _package(module: str) -> str:
    """The first level below edgeslm: a subpackage, or a top-level module (edgeslm.target)."""
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def measure() -> dict:
    files = sorted(p for p in PKG.rglob("*.py"))
    modules = {_module(p) for p in files}
    graph: dict[str, set[str]] = {}
    inside = total = 0
    longest = ("", 0)
    export_lines = 0
    for p in files:
        tree = ast.parse(p.read_text())
        mod = _module(p)
        for target, in_func in _imports(tree, mod):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            total += 1
            inside += in_func
            if target != mod:  # a dependency wherever the import sits
                graph.setdefault(mod, set()).add(target)
        rel = p.relative_to(PKG).as_posix()
        if any(rel == e or rel.startswith(e + "/") for e in EXPORT_PATH):
            export_lines += len(p.read_text().splitlines())
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > longest[1]:
                        longest = (f"{rel}:{node.name}", n)
    pkgs: dict[str, set[str]] = {}
    for a, bs in graph.items():
        for b in bs:
            if _package(a) != _package(b):
                pkgs.setdefault(_package(a), set()).add(_package(b))
    ties = sorted({tuple(sorted((a, b))) for a, bs in pkgs.items() for b in bs
                   if a in pkgs.get(b, set())})
    return {"internal_imports": total, "inside_functions": inside, "package_ties": [list(t) for t in ties],
            "file_circles": _cycles(graph), "export_path_lines": export_lines,
            "longest_export_function": {"name": longest[0], "lines": longest[1]}}


if __name__ == "__main__":
    m = measure()
    if "--json" in sys.argv:
        print(json.dumps(m, indent=2))
    else:
        print(f"internal imports: {m['internal_imports']}, inside functions: {m['inside_functions']}")
        print(f"package ties (two-way): {m['package_ties'] or 'none'}")
        print(f"file circles: {m['file_circles'] or 'none'}")
        print(f"export path: {m['export_path_lines']} lines; longest function {m['longest_export_function']}")
