"""Latency: the performance model reproduces the published figures it was fitted to (±15%) and stays close on
ExecuTorch figures it was not fitted to; device files carry the fitted numbers; inputs come from the artifact;
profiles and budgets are validated; bench/predict/latency.json on real bundles."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.latency.calibration import evaluate, fit
from edgeslm.latency.devices import builtin_devices, load_device
from edgeslm.latency.perf import predict
from edgeslm.latency.report import check_budgets
from edgeslm.latency.workload import from_artifact


def test_fitted_points_within_15_percent():
    rows = [r for r in evaluate() if r["fit"]]
    assert len(rows) >= 5
    for r in rows:
        if r["fit"] is True:
            assert abs(r["decode_error"]) <= 0.15, r
        if "prefill_error" in r:
            assert abs(r["prefill_error"]) <= 0.15, r


def test_unfitted_executorch_points_within_25_percent():
    """Llama 3.2 3B SpinQuant / QAT+LoRA, 1B QAT+LoRA and Llama 3 8B: not used in the fit."""
    rows = [r for r in evaluate() if not r["fit"] and r["backend"] == "executorch"]
    assert len(rows) >= 5
    for r in rows:
        assert abs(r["decode_error"]) <= 0.25, r
        if "prefill_error" in r:
            assert abs(r["prefill_error"]) <= 0.25, r


def test_device_files_carry_the_fitted_factors():
    for (device, backend, kind), values in fit().items():
        perf = load_device(device).perf(backend)
        for key, value in values.items():
            assert getattr(perf, key)[kind] == pytest.approx(value, rel=0.01), (device, backend, kind, key)


def test_required_device_profiles_exist():
    assert {"snapdragon-8-gen-3", "snapdragon-8-elite", "pixel-8-pro", "apple-a17-pro", "jetson-orin-nano-8gb",
            "jetson-agx-orin-64gb"} <= set(builtin_devices())


def _manifest(pte_bytes: int) -> tuple[dict, dict]:
    shape = {"vocab_size": 2048, "hidden_size": 128, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2,
             "head_dim": 32, "intermediate_size": 384}
    art = {"file": "model-8da4w.pte", "bytes": pte_bytes, "backend": "executorch", "recipe": "8da4w"}
    return {"model": {"shape": shape}, "context_length": 512, "artifacts": [art]}, art


def test_prediction_follows_the_artifact_bytes():
    dev = load_device("snapdragon-8-gen-3")
    small = predict(from_artifact(*_manifest(50_000_000)), dev, "executorch", 128, 64)
    big = predict(from_artifact(*_manifest(100_000_000)), dev, "executorch", 128, 64)
    assert big["decode_tok_s"]["point"] < small["decode_tok_s"]["point"] * 0.6  # memory-bound: ~half as fast
    assert big["memory_mb"] > small["memory_mb"] + 49
    for p in (small, big):
        band = p["decode_tok_s"]
        assert band["low"] < band["point"] < band["high"]


def test_budgets_fail_on_the_pessimistic_end():
    dev = load_device("snapdragon-8-gen-3")
    p = {"artifact": "a", "predicted": True, **predict(from_artifact(*_manifest(50_000_000)), dev, "executorch",
                                                       128, 64)}
    point = p["decode_tok_s"]["point"]
    assert check_budgets({"min_decode_tok_s": point * 0.5}, [p])[0]["passed"]
    assert not check_budgets({"min_decode_tok_s": point * 0.9}, [p])[0]["passed"]  # low end = 0.75 × point
    assert not check_budgets({"max_memory_mb": 1.0}, [p])[0]["passed"]


def test_device_profile_errors(tmp_path):
    with pytest.raises(InputError, match="did you mean 'pixel-8-pro'"):
        load_device("pixel-8-pr")
    bad = tmp_path / "dev.toml"
    bad.write_text('name = "x"\ndescription = "x"\nmemory_bandwidth_gb_s = 1\nusable_memory_gb = 1\nbandwith = 2\n')
    with pytest.raises(InputError, match="unknown key 'bandwith'.*supported keys are"):
        load_device(bad)


def test_latency_budget_fails_the_export(tiny_dir, tmp_path):
    """A target whose budget the prediction cannot meet: exit 1, bundle written and marked failed."""
    target = tmp_path / "slow.toml"
    target.write_text('name = "slow"\nbackends = ["onnx"]\nrecipe = "fp32"\ncontext_length = 64\n'
                      'device = "jetson-orin-nano-8gb"\n[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n'
                      '[gates.fp32.lowering]\nmax_abs_logit_diff = 1e-3\n[latency]\nprompt_len = 16\ngen_len = 16\n'
                      'min_decode_tok_s = 1e9\n')
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "--target", str(target), "-o", str(out)])
    assert res.exit_code == 1, res.output
    doc = json.loads((out / "latency.json").read_text())
    (budget,) = doc["budgets"]
    assert budget["budget"] == "min_decode_tok_s" and not budget["passed"] and not doc["passed"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    (measured,) = doc["measured_here"]["artifacts"]  # measured here as well, labelled apart
    assert measured["measured"] and measured["decode_tok_s"]["median"] > 0
