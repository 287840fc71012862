"""Packaging metadata agrees with the code: the declared Python range admits no version the code cannot run on."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parent.parent

# Standard-library modules edgeslm may use, with the first Python that has them.
NEWER_STDLIB = {"tomllib": "3.11"}


def test_requires_python_admits_only_versions_with_the_stdlib_modules_used():
    spec = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
    used = {m for path in (ROOT / "edgeslm").rglob("*.py") for m in NEWER_STDLIB
            if re.search(rf"^\s*(import|from) {m}\b", path.read_text(), re.M)}
    assert "tomllib" in used
    for module in used:
        major, minor = map(int, NEWER_STDLIB[module].split("."))
        older = f"{major}.{minor - 1}"
        assert older not in spec, f"requires-python {spec} admits {older}, which lacks {module}"
