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
