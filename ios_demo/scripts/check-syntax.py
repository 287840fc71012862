#!/usr/bin/env python3
"""Syntax-check every .swift file under a folder (default: ios_demo/) with tree-sitter-swift.

No Swift toolchain runs on the Linux CI machines; this catches what a parser can: any ERROR or MISSING node is
reported as `path:line:column: syntax error near ...` and the exit status is 1. It does not type-check (the macOS
workflow's `swift test` / `xcodebuild` do). Exit 2 when tree-sitter or tree-sitter-swift is not installed.

    python ios_demo/scripts/check-syntax.py [FOLDER_OR_FILE ...]
"""
from __future__ import annotations

import sys
from pathlib import Path


def parser():
    try:
        import tree_sitter
        import tree_sitter_swift
    except ImportError as e:  # a missing tool fails CI, with what to do
        print(f"check-syntax: {e.name} is not installed: pip install -e '.[test]' (tree-sitter, tree-sitter-swift)",
              file=sys.stderr)
        sys.exit(2)
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_swift.language()))


def problems(p, path: Path) -> list[str]:
    """`path:line:col: ...` for every ERROR / MISSING node (outermost ones; nested errors add no information)."""
    source = path.read_bytes()
    tree = p.parse(source)
    out: list[str] = []
    stack = [tree.root_node]
    while stack:
        n = stack.pop()
        if n.is_missing or n.type == "ERROR":
            line, col = n.start_point
            text = source[n.start_byte:n.end_byte].decode("utf-8", "replace").splitlines()
            near = text[0][:60] if text else ""
            what = f"missing {n.type}" if n.is_missing else "syntax error"
            out.append(f"{path}:{line + 1}:{col + 1}: {what} near {near!r}")
            continue
        if n.has_error:
            stack.extend(reversed(n.children))
    return sorted(out, key=lambda s: (s.split(":")[0], int(s.split(":")[1])))


def swift_files(targets: list[Path]) -> list[Path]:
    files: list[Path] = []
    for t in targets:
        files += [t] if t.is_file() else sorted(f for f in t.rglob("*.swift") if ".build" not in f.parts)
    return files


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    targets = [Path(a) for a in argv] or [root]
    p = parser()
    files = swift_files(targets)
    if not files:
        print(f"check-syntax: no .swift files under {', '.join(map(str, targets))}", file=sys.stderr)
        return 1
    bad = [msg for f in files for msg in problems(p, f)]
    for msg in bad:
        print(msg)
    print(f"check-syntax: {len(files)} Swift files, {len(bad)} syntax errors", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
