"""Shared fixtures: a locally trained tokenizer and tiny models of every family, built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the Hub
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # N workers on N cores: one compute thread each. With torch's default (one thread per core) two workers'
    # spinning OpenMP pools fight over the cores and tiny-model ops run up to 7x slower (measured: 100 decode steps
    # of the QNN quant-dequant program, 2.1 s alone, 15 s beside a second worker; 2.1 s with one thread each).
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # subprocesses (the README commands)
    import torch

    torch.set_num_threads(1)


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


@pytest.fixture(scope="session")
def demo_bundle(tmp_path_factory):
    """(folder, CliRunner result) of the main job: the demo model exported for android, timed here. Shared by
    every module that reads a demo bundle; tests that change it work on a copy."""
    from click.testing import CliRunner

    from edgeslm.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo-android"
    res = CliRunner().invoke(main, ["export", "demo", "--target", "android", "-o", str(out)])
    return out, res


@pytest.fixture(scope="session")
def chat_bundle(tiny_dir, tmp_path_factory):
    """A tiny llama with Llama 3's chat template, exported for android (ExecuTorch + ONNX): golden.json then
    holds chat prompts transformers rendered. Random weights may fail a quantization gate (exit 1): the bundle
    is still written and is what the app-contract tests read."""
    import json
    import shutil

    from click.testing import CliRunner

    from edgeslm.cli import main
    from edgeslm.testing.templates import TEMPLATES

    root = tmp_path_factory.mktemp("chat")
    model = root / "llama-chat"
    shutil.copytree(tiny_dir("llama"), model)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = TEMPLATES["llama3"][0]
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    out = root / "bundle"
    res = CliRunner().invoke(main, ["export", str(model), "-o", str(out), "--no-bench"])
    assert res.exit_code in (0, 1), res.output
    return out


# The longest single tests start first, so two workers finish together instead of one waiting on a late giant.
_LONGEST_FIRST = ("test_real_model_exports_for_android_and_passes", "test_readme_commands_run",
                  "test_default_init_family_passes_android_and_ios",
                  "test_broken_recipe_or_lowering_fails_its_stage", "test_broken_recipe_fails_on_the_real_model")


def pytest_addoption(parser):
    parser.addoption("--extra", action="store_true",
                     help="also run the `extra` tier: more instances of cases CI already runs (other families)")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--extra"):
        extra = [item for item in items if item.get_closest_marker("extra")]
        if extra:
            config.hook.pytest_deselected(items=extra)
            items[:] = [item for item in items if not item.get_closest_marker("extra")]

    def rank(item):
        name = item.name.split("[")[0]
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order


def pytest_terminal_summary(terminalreporter):
    """Lines tests record for CI logs (``record_property("summary", ...)``), e.g. the Kotlin/JUnit counts, shown
    even under xdist, where workers' own output is not."""
    for report in [r for key in ("passed", "failed") for r in terminalreporter.stats.get(key, [])]:
        for name, value in getattr(report, "user_properties", []):
            if name == "android_core":
                terminalreporter.write_line(str(value))
