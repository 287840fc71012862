"""Shared fixtures: a locally trained tokenizer and tiny models of every family, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tokenizer():
    from edgeslm.testing.tiny import make_tokenizer

    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory, tokenizer):
    """``tiny_dir(family)`` → folder holding that family's tiny checkpoint (built on first use)."""
    from edgeslm.testing.tiny import make_tiny

    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = make_tiny(family, root / family, tokenizer)
        return built[family]

    return get


@pytest.fixture
def copy_model(tiny_dir, tmp_path):
    """A private, editable copy of a tiny checkpoint (for tests that break it on purpose)."""
    import shutil

    def make(family: str = "llama") -> Path:
        dst = tmp_path / f"{family}-copy"
        shutil.copytree(tiny_dir(family), dst)
        return dst

    return make


# The longest single tests start first, so two workers finish together instead of one waiting on a late giant.
_LONGEST_FIRST = ("test_real_shape_model_exports_for_android", "test_readme_commands_run",
                  "test_default_init_family_passes_android_and_ios",
                  "test_broken_recipe_or_lowering_fails_its_stage")


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.name.split("[")[0]
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
