"""Latency: the performance model reproduces the published figures it was fitted to (±15%) and stays close on
ExecuTorch figures it was not fitted to; device files carry the fitted numbers; inputs come from the artifact;
profiles and budgets are validated; bench/predict/latency.json on real bundles."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.latency.calibration import evaluate, fit, leave_one_out
from edgeslm.latency.devices import builtin_devices, load_device
from edgeslm.latency.perf import predict
from edgeslm.latency.report import check_budgets
from edgeslm.latency.workload import from_artifact
from edgeslm.json_schemas import problems


def test_left_out_points_within_15_percent():
    """Each fitted point predicted by a profile refitted without it (leave-one-out). Only ExecuTorch's float group
    on the OnePlus 12 holds two fitted points; there the errors are +2.8 % / -2.7 % (decode) and -8.6 % / +9.4 %
    (prefill). Groups of one point are checked on held-back points below."""
    rows = leave_one_out()
    assert len(rows) >= 2
    for r in rows:
        assert abs(r["decode_error"]) <= 0.15, r
        if "prefill_error" in r:
            assert abs(r["prefill_error"]) <= 0.15, r


def test_unfitted_onnx_points():
    """ONNX (weight-only int4 on Jetson): 7 published points the profiles were not fitted on. Found: decode errors
    from -13.8 % to +57.2 % (median |error| 13.8 %; Gemma 2 2B and 9B are the outliers, +57 % / +36 %: head_dim 256,
    soft-capping and a 256k-vocabulary lm_head cost more compute per byte than a bandwidth-only model sees), TRT-LLM's 512-token prefill -29 %. The bounds
    hold these figures with little room, so a profile change that moves them fails here."""
    rows = [r for r in evaluate() if not r["fit"] and r["backend"] == "onnx"]
    assert len(rows) >= 7
    errors = sorted(abs(r["decode_error"]) for r in rows)
    assert errors[len(errors) // 2] <= 0.20, errors
    for r in rows:
        assert abs(r["decode_error"]) <= 0.60, r
        if "prefill_error" in r:
            assert abs(r["prefill_error"]) <= 0.35, r


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
    assert check_budgets({"min_decode_tok_s": point * 0.5}, [p])[0].passed
    assert not check_budgets({"min_decode_tok_s": point * 0.9}, [p])[0].passed  # low end = 0.75 × point
    assert not check_budgets({"max_memory_mb": 1.0}, [p])[0].passed


def test_device_profile_errors(tmp_path):
    with pytest.raises(InputError, match="did you mean 'pixel-8-pro'"):
        load_device("pixel-8-pr")
    bad = tmp_path / "dev.toml"
    bad.write_text('name = "x"\ndescription = "x"\nmemory_bandwidth_gb_s = 1\nusable_memory_gb = 1\nbandwith = 2\n')
    with pytest.raises(InputError, match="unknown key 'bandwith'.*supported keys are"):
        load_device(bad)


@pytest.fixture(scope="module")
def slow_bundle(tiny_dir, tmp_path_factory):
    """The tiny llama exported to ONNX for a target whose latency budget cannot be met (bench runs in export)."""
    root = tmp_path_factory.mktemp("slow")
    target = root / "slow.toml"
    target.write_text('name = "slow"\nbackends = ["onnx"]\nrecipe = "fp32"\ncontext_length = 64\n'
                      'device = "jetson-orin-nano-8gb"\n[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n'
                      '[gates.fp32.lowering]\nmax_abs_logit_diff = 1e-3\n[latency]\nprompt_len = 16\ngen_len = 16\n'
                      'min_decode_tok_s = 1e9\n')
    out = root / "b"
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "--target", str(target), "-o", str(out)])
    return out, res


def test_latency_budget_fails_the_export(slow_bundle):
    """A target whose budget the prediction cannot meet: exit 1, bundle written and marked failed."""
    out, res = slow_bundle
    assert res.exit_code == 1, res.output
    doc = json.loads((out / "latency.json").read_text())
    (budget,) = doc["budgets"]
    assert budget["budget"] == "min_decode_tok_s" and not budget["passed"] and not doc["passed"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"
    (measured,) = doc["measured_here"]["artifacts"]  # measured here as well, labelled apart
    assert measured["measured"] and measured["decode_tok_s"]["median"] > 0


# Peak RSS (issue 12): the figure is the artifact's, not the parent's, the imports' or the tooling's.

_CHILD = ("import json; from edgeslm.latency.rss import PeakRss\n"
          "p = PeakRss(); p.start(); x = bytearray(64 << 20); x[::4096] = b'1' * len(x[::4096])\n"
          "print(json.dumps(p.stop()))\n")


def test_peak_rss_excludes_the_parents_memory():
    """A child started from a process holding 1 GiB (as bench's worker is from `edgeslm export`) inherits that
    peak in ru_maxrss across exec; the probe reports what the child itself added: 64 MiB."""
    import subprocess
    import sys

    big = bytearray(1 << 30)
    big[::4096] = b"1" * len(big[::4096])  # touched: resident
    res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60)
    del big
    got = json.loads(res.stdout)
    assert got["method"] == "vmhwm-reset"
    assert 60 <= got["above_baseline_mib"] <= 72, got
    assert got["peak_mib"] < 300, got  # the child's own peak: no trace of the parent's 1 GiB


def test_peak_rss_sampled_when_the_high_water_mark_cannot_be_reset(monkeypatch, tmp_path):
    """Without clear_refs the high-water mark may be an earlier (import-time) peak: a sampling thread catches a
    transient 64 MiB allocation freed before stop()."""
    import time

    from edgeslm.latency import rss

    monkeypatch.setattr(rss, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    filler = bytearray(256 << 20)  # raise VmHWM above what the measured stretch reaches
    filler[::4096] = b"1" * len(filler[::4096])
    del filler
    p = rss.PeakRss(interval_s=0.001)
    p.start()
    x = bytearray(64 << 20)
    x[::4096] = b"1" * len(x[::4096])
    time.sleep(0.1)
    del x
    got = p.stop()
    assert got["method"] == "vmhwm+sampled"
    assert 56 <= got["above_baseline_mib"] <= 80, got


def test_bench_peak_rss_is_the_artifacts_own(slow_bundle):
    """The figure export wrote (bench run from the exporting process, which held torch, transformers and the model)
    matches a bare onnxruntime-genai process's within 10% (or 3 MiB): not the worker's Python/torch imports
    (~200 MiB), not the exporting parent's peak, which ru_maxrss carried across exec (issue 12)."""
    from edgeslm.latency.reference_rss import reference_rss

    out, _ = slow_bundle
    doc = json.loads((out / "latency.json").read_text())
    (measured,) = doc["measured_here"]["artifacts"]
    p, g = doc["settings"]["measured"]["prompt_len"], doc["settings"]["measured"]["gen_len"]
    ref = reference_rss(out, 0, p, g)
    assert ref["tooling_imported"] == [] and ref["rss_baseline_mib"] < 100, ref  # only the runtime was imported
    bare = ref["rss_above_baseline_mib"]
    assert abs(measured["peak_rss_mib"] - bare) <= max(0.1 * bare, 3.0), (measured, ref)
    art = json.loads((out / "manifest.json").read_text())["artifacts"][0]
    files = sum(f["bytes"] for f in [art, *art.get("files", [])]) / 2**20
    assert measured["peak_rss_mib"] < 4 * files + 64, (measured, files)  # tiny model: tens of MiB at most
    assert measured["rss_method"] in ("vmhwm-reset", "vmhwm+sampled", "ru_maxrss")
    assert measured["rss_measured_in"] == "bare runtime"
    assert problems(doc, "latency") == []


def test_bench_times_the_bare_runtime_loop(slow_bundle):
    """ONNX is timed in onnxruntime-genai's own loop, in a worker that imports neither torch nor edgeslm's model
    code; a run that reaches the context length (64 here) stops there and counts the decode steps it ran."""
    import subprocess
    import sys

    out, _ = slow_bundle
    code = ("import json, sys; from pathlib import Path; from edgeslm.latency.worker import time_artifact; "
            "r = time_artifact(Path(sys.argv[1]), 0, 40, 24, 1, 2); heavy = ('torch', 'transformers', "
            "'edgeslm.model', 'edgeslm.backends.base'); "
            "print(json.dumps({**r, 'heavy': sorted(m for m in heavy if m in sys.modules)}))")
    res = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got["heavy"] == [] and got["rss_memory_pass"] == "bare runtime", got
    # 40 prompt tokens + the first pick leave 23 positions of 64: genai stops at max_length
    assert [r["decode_steps"] for r in got["runs"]] == [23, 23], got["runs"]
    assert all(r["ttft_s"] > 0 and r["decode_s"] > 0 for r in got["runs"])


def test_bench_times_a_step_model_where_there_is_no_bare_loop(slow_bundle, monkeypatch):
    """Runtimes without a bare loop (the QNN folders' static-shape models) are timed through their step model:
    the same runs, decode steps counted, the memory probed over its load and first run."""
    from edgeslm.latency import worker

    out, _ = slow_bundle
    monkeypatch.setattr(worker, "has_bare_runtime", lambda backend: False)
    got = worker.time_artifact(out, 0, 16, 8, 1, 2)
    assert got["rss_memory_pass"] == "step model" and got["load_s"] > 0 and got["rss_peak_mib"] > 0, got
    assert [r["decode_steps"] for r in got["runs"]] == [8, 8]
    assert all(r["ttft_s"] > 0 and r["decode_s"] > 0 for r in got["runs"])


@pytest.mark.parametrize("backend", ["onnx", "executorch"])
def test_preloading_imports_what_the_step_model_needs(backend):
    """bench's ``load_s`` is timed around ``step_model``: every module it reaches (the backend's work module,
    torch, the runtime glue) must be imported before, by ``preload_runtime``, in a process that has none yet."""
    import subprocess
    import sys

    code = ("import sys; from edgeslm.backends import get_backend; b = get_backend(%r); "
            "w = type(b).__module__.rsplit('.', 1)[0] + '.work'; "
            "assert w not in sys.modules; b.preload_runtime(); "
            "assert w in sys.modules and 'torch' in sys.modules, w" % backend)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
