"""ios_demo/ is Swift, and no Swift toolchain runs here: every .swift file is parsed with tree-sitter-swift
(ios_demo/scripts/check-syntax.py) and must have no ERROR / MISSING node. The build and XCTest run only on
GitHub's macOS runners (.github/workflows/coreml-macos.yml)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IOS = ROOT / "ios_demo"
CHECK = IOS / "scripts" / "check-syntax.py"



def run_check(*targets: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECK), *map(str, targets)], capture_output=True, text=True,
                          timeout=120)


def test_tree_sitter_is_installed():
    import tree_sitter  # noqa: F401  (the `test` extra installs both; a missing tool fails CI)
    import tree_sitter_swift  # noqa: F401


def test_every_swift_file_parses():
    files = sorted(IOS.rglob("*.swift"))
    names = {f.relative_to(IOS).as_posix() for f in files}
    # the package, its tests and the app are all covered
    for must in ("Package.swift", "Sources/EdgeSLMCore/SLMBundle.swift", "Sources/EdgeSLMCore/Utf8StreamAssembler.swift",
                 "Tests/EdgeSLMCoreTests/BundleSafetyTests.swift", "App/Sources/CoreMLEngine.swift",
                 "App/Sources/ExecuTorchEngine.swift", "App/Tests/CoreMLGreedyTests.swift"):
        assert must in names, f"ios_demo/{must} is missing"
    r = run_check(IOS)
    assert r.returncode == 0, f"tree-sitter-swift found syntax errors:\n{r.stdout}{r.stderr}"
    assert f"{len(files)} Swift files, 0 syntax errors" in r.stderr


@pytest.mark.parametrize("breakage", [
    ("    public func finish() -> String {", "    public func finish() -> String {{"),   # unbalanced brace
    ("        need = 0\n", "        need = = 0\n"),                                       # broken statement
])
def test_injected_syntax_error_fails_naming_the_file(tmp_path, breakage):
    src = IOS / "Sources" / "EdgeSLMCore" / "Utf8StreamAssembler.swift"
    dst = tmp_path / "ios_demo" / src.name
    dst.parent.mkdir()
    shutil.copy(src, dst)
    assert run_check(dst.parent).returncode == 0  # the copy itself is clean
    old, new = breakage
    text = dst.read_text()
    assert old in text
    dst.write_text(text.replace(old, new, 1))
    r = run_check(dst.parent)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"{dst}:" in r.stdout  # file:line:col
    line = int(r.stdout.splitlines()[0].split(":")[1])
    assert 1 <= line <= text.count("\n") + 1
