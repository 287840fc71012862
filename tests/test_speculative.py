"""Speculative-decoding pairs (issue 17): the demo model as target and a draft built from it (two of its layers,
distilled on local text for a few seconds) exported into one bundle; acceptance measured in the ExecuTorch and
onnxruntime runtimes for k = 2, 4, 6, speculation leaving greedy output unchanged, onnxruntime-genai's native
draft mode configured and run, the speed-up predicted; a draft with another tokenizer refused before any work."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.model.source import DEMO_DIR


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from edgeslm.testing.draft import distilled_draft
    from edgeslm.testing.tiny import text_corpus

    root = tmp_path_factory.mktemp("spec")
    info = distilled_draft(DEMO_DIR, root / "draft", text_corpus()[:200000], keep=(0, 3), steps=600, lr=3e-3)
    assert info["agreement_after"] > info["agreement_before"] + 0.1, info  # distillation raised agreement
    out = root / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--draft", str(root / "draft"), "--target", "android",
                                    "-o", str(out), "--no-bench", "--context-length", "128"])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "manifest.json").read_text())


def test_pair_acceptance_measured_in_both_runtimes(pair):
    out, m = pair
    spec = m["speculative"]
    assert spec["draft"]["shape"]["num_layers"] == 2 and spec["draft"]["parameters"] < m["model"]["parameters"]
    pairs = {p["backend"]: p for p in spec["pairs"]}
    assert set(pairs) == {"executorch", "onnx"}
    for p in pairs.values():
        assert p["measured"] and sorted(p["k"], key=int) == ["2", "4", "6"]
        for k, r in p["k"].items():
            assert r["kept_greedy_output"], (p["backend"], k, r)  # speculation does not change greedy output
            assert 1.5 < r["tokens_per_target_pass"] <= int(k) + 1  # more than one token per target pass
            assert 0.0 < r["acceptance_rate"] <= 1.0
            assert r["tokens"] == p["prompts"] * p["new_tokens"]
        assert p["k"]["2"]["acceptance_rate"] > 0.3
        assert set(p["predicted"]["speedup"]) == {"2", "4", "6"}
    # ExecuTorch runs the same greedy decisions one token per call: exactly the target's output
    assert all(r["equals_target_greedy"] for r in pairs["executorch"]["k"].values())
    arts = {a["file"]: a for a in m["artifacts"]}
    for p in pairs.values():
        assert arts[p["target"]]["validation"]["speculative"] == "passed"
        assert arts[p["draft"]]["role"] == "draft" and arts[p["draft"]]["model_shape"]["num_layers"] == 2


def test_onnxruntime_genai_native_draft_runs(pair):
    out, m = pair
    onnx = next(p for p in m["speculative"]["pairs"] if p["backend"] == "onnx")
    native = onnx["native"]
    assert native["runs_here"] and native["equal_to_target_greedy"] >= native["prompts"] - 1
    assert 0 < native["acceptance_rate"] <= 1
    overlay = json.loads((out / native["file"]).read_text())
    assert overlay["model"]["draft"]["filename"] == "draft/model.onnx" and overlay["speculative"]["max_draft_tokens"]
    target = next(a for a in m["artifacts"] if a["file"] == onnx["target"])
    assert native["file"] in [f["file"] for f in target["files"]]
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0


def test_draft_with_another_tokenizer_is_refused(tmp_path):
    from edgeslm.testing.tiny import make_tiny, make_tokenizer

    tok = make_tokenizer(text="lorem ipsum dolor sit amet " * 2000 + "the quick brown fox jumps " * 2000)
    make_tiny("llama", tmp_path / "other", tok)
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--draft", str(tmp_path / "other"), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "differs from the target's at id" in res.output and "fix:" in res.output
    assert "running the transformers reference" not in res.output and not out.exists()


def test_pair_that_cannot_run_here_is_reported_not_run(tmp_path):
    """Core ML pairs cannot be measured on Linux: the speculative stage says not run, with the reason, and the
    bundle is never marked as having checked it."""
    from edgeslm.testing.draft import layer_dropped

    draft = layer_dropped(DEMO_DIR, tmp_path / "draft", (0, 3))  # acceptance is not measured: no distillation
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--draft", str(draft), "--target", "ios", "--backend",
                                    "coreml", "-o", str(out), "--no-bench", "--context-length", "128"])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "manifest.json").read_text())
    (p,) = m["speculative"]["pairs"]
    assert not p["measured"] and "Apple" in p["reason"] and "k" not in p
    target = next(a for a in m["artifacts"] if a["file"].startswith(p["target"]))
    assert target["validation"]["speculative"].startswith("not run: Core ML runs only on Apple")
    parity = json.loads((out / "parity.json").read_text())
    assert any(line.startswith(f"{p['target']} / speculative: Core ML") for line in parity["not_run"])
