"""Phone NPUs (issue 16): the android-npu target on the demo model, run here as a user runs it.

- ONNX for the QNN EP: static-shape QDQ graphs in onnxruntime-genai's windowed pipeline, parity simulated on the
  CPU EP (gated), the folder loaded and generating in onnxruntime-genai, the HTP itself reported not run;
- ExecuTorch's Qualcomm backend: the QnnQuantizer program's quantization stage gated, its lowering reported not
  run (no QNN SDK here) and the artifact listed as not built, never as passed;
- a mis-calibrated recipe (calibration text of one repeated word) fails the simulated-quantization gate;
- the HTP's per-context limit: `predict` refuses a model over it, naming the predicted footprint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeslm.cli import main

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def npu_bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("npu") / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--target", "android-npu", "-o", str(out), "--no-bench"])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "manifest.json").read_text()), json.loads((out / "parity.json").read_text())


def test_onnx_qnn_artifact_is_static_qdq_and_simulated(npu_bundle):
    import onnx

    out, m, parity = npu_bundle
    art = next(a for a in m["artifacts"] if a["backend"] == "onnx-qnn")
    assert art["validation"]["lowering"] == "passed" and art["validation"]["quantization"] == "passed"
    assert art["validation"]["runtime_agreement"] == "passed"
    assert art["validation"]["npu"].startswith("not run") and "simulated" in art["validation"]["npu"]
    assert art["parity"] == "runtime_not_run"  # never "passed" while the NPU stage did not run
    folder = out / Path(art["file"]).parent
    cfg = json.loads((folder / "genai_config.json").read_text())["model"]
    assert cfg["type"] == "decoder-pipeline" and cfg["decoder"]["sliding_window"]["window_size"] >= 1
    assert cfg["decoder"]["session_options"]["provider_options"] == [
        {"qnn": {"backend_path": "libQnnHtp.so", "htp_performance_mode": "burst"}}]
    for graph in ("ctx.onnx", "iter.onnx"):
        g = onnx.load(str(folder / graph), load_external_data=False).graph
        dims = [d for v in [*g.input, *g.output] for d in v.type.tensor_type.shape.dim]
        assert dims and all(d.HasField("dim_value") for d in dims), f"{graph} has a symbolic dimension"
        ops = {n.op_type for n in g.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert (folder / "calibration.txt").is_file()
    assert art["calibration"]["text"] == "built-in" and art["calibration"]["windows"] == 16
    stages = {(c["artifact"], c["stage"]): c for c in parity["checks"]}
    q = stages[(art["file"], "quantization")]
    assert "simulated" in q["candidate"] and q["status"] == "passed"


def test_qdq_folder_generates_in_onnxruntime_genai(npu_bundle):
    """The QDQ folder as an app loads it: onnxruntime-genai (CPU EP here) generates from a prompt longer than one
    prompt window, and its greedy tokens equal onnxruntime's run of the same graphs."""
    from edgeslm.backends.onnx.runtime import genai_greedy_tokens
    from edgeslm.backends.onnx_qnn.runtime import WindowedModel
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    out, m, _ = npu_bundle
    art = next(a for a in m["artifacts"] if a["backend"] == "onnx-qnn")
    folder = out / Path(art["file"]).parent
    tok = load_checkpoint(resolve("demo")).tokenizer
    window = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["sliding_window"]
    ids = tok((ROOT / "edgeslm" / "parity" / "heldout.txt").read_text()).input_ids[:window["window_size"] + 9]
    [genai] = genai_greedy_tokens(folder, [ids], [16])
    assert len(genai) == 16
    assert genai == WindowedModel(folder).greedy(ids, 16)
    res = CliRunner().invoke(main, ["run", str(out), "--artifact", art["file"], "-p", "The for statement", "-n", "8"])
    assert res.exit_code == 0 and res.output.strip(), res.output


def test_executorch_qnn_quantization_gated_lowering_not_run(npu_bundle):
    _, m, parity = npu_bundle
    assert all(a["backend"] != "executorch-qnn" for a in m["artifacts"])  # no file pretends to be the .pte
    nb = m["not_built"][0]
    assert nb["backend"] == "executorch-qnn" and nb["name"] == "model-16a4w-qnn.pte"
    assert nb["validation"]["quantization"] == "passed"
    assert nb["validation"]["lowering"].startswith("not run") and "QNN_SDK_ROOT" in nb["validation"]["lowering"]
    assert "QNN_SDK_ROOT" in nb["how"] and nb["parity"] == "runtime_not_run"
    assert any(line.startswith("model-16a4w-qnn.pte / lowering: QNN_SDK_ROOT") for line in parity["not_run"])
    q = next(c for c in parity["checks"] if c["artifact"] == nb["name"] and c["stage"] == "quantization")
    assert q["gate"] and q["status"] == "passed" and "simulated HTP" in q["candidate"]
    assert m["status"] == "passed"


def test_miscalibrated_recipe_fails_the_simulated_gate(tmp_path):
    """Activation ranges calibrated on one repeated word clip real text: the simulated NPU's quantization stage
    fails its gate and the export exits 1 (the same recipe calibrated on the built-in text passes, above)."""
    target = (ROOT / "edgeslm" / "targets" / "android-npu.toml").read_text()
    target = target.replace('backends = ["onnx-qnn", "executorch-qnn"]', 'backends = ["onnx-qnn"]')
    target = target.replace("calibration_samples = 16", 'calibration_samples = 4\ncalibration_text = "bad.txt"')
    (tmp_path / "t.toml").write_text(target)
    (tmp_path / "bad.txt").write_text("the " * 400)
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--target", str(tmp_path / "t.toml"), "-o", str(out),
                                    "--no-bench", "--context-length", "128"])
    assert res.exit_code == 1, res.output
    parity = json.loads((out / "parity.json").read_text())
    q = next(c for c in parity["checks"] if c["stage"] == "quantization")
    assert q["status"] == "failed", q
    assert json.loads((out / "manifest.json").read_text())["artifacts"][0]["calibration"]["text"].endswith("bad.txt")


def test_predict_refuses_a_model_over_the_npu_context_limit(npu_bundle, tmp_path):
    out, _, _ = npu_bundle
    ok = CliRunner().invoke(main, ["predict", str(out), "--json"])
    assert ok.exit_code == 0, ok.output
    row = json.loads(ok.output)["artifacts"][0]
    assert row["kernel_kind"] == "fixed_point" and row["over_limit"] is None
    assert row["inputs"]["max_context_gb"] == pytest.approx(3.758)
    device = (ROOT / "edgeslm" / "targets" / "devices" / "snapdragon-8-gen-3.toml").read_text()
    (tmp_path / "tiny-npu.toml").write_text(device.replace("max_context_gb = 3.758", "max_context_gb = 0.001"))
    res = CliRunner().invoke(main, ["predict", str(out), "--device", str(tmp_path / "tiny-npu.toml")])
    assert res.exit_code == 2
    assert "predicted footprint" in res.output and "0.001 GB" in res.output


def test_htp_limit_separates_1b_from_8b():
    """The per-context limit on real shapes: Llama 3.2 1B at 16a4w fits one HTP context, Llama 3.1 8B does not."""
    from edgeslm.latency.devices import load_device
    from edgeslm.latency.perf import over_limit
    from edgeslm.latency.workload import from_shape

    dev = load_device("snapdragon-8-gen-3")
    shapes = {"1b": (16, 2048, 8192, 32, 8, 64, 0.8e9), "8b": (32, 4096, 14336, 32, 8, 128, 4.6e9)}
    verdict = {}
    for name, (layers, hidden, inter, heads, kv, hd, weight_bytes) in shapes.items():
        shape = {"num_layers": layers, "hidden_size": hidden, "intermediate_size": inter, "num_heads": heads,
                 "num_kv_heads": kv, "head_dim": hd, "vocab_size": 128256}
        verdict[name] = over_limit(from_shape(shape, weight_bytes, 0.0, 2, "fixed_point", 4096), dev, "onnx-qnn")
    assert verdict["1b"] is None
    assert verdict["8b"] and "exceeds the 3.758 GB" in verdict["8b"]


def test_qnn_soc_list_matches_executorch():
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset

    from edgeslm.backends.qnn_options import QNN_SOCS

    assert set(QNN_SOCS) == {c.name for c in QcomChipset} - {"UNKNOWN_SM"}


def test_qnn_target_options_are_checked(tmp_path):
    from edgeslm.errors import InputError
    from edgeslm.target import parse_target

    base = (ROOT / "edgeslm" / "targets" / "android-npu.toml").read_text()
    for bad, needle in [('soc = "SM9999"', "qnn.soc"), ("calibration_samples = 0", "calibration_samples"),
                        ('calibration_text = "missing.txt"', "missing.txt"), ("colour = 1", "supported keys are")]:
        text = base.replace("calibration_samples = 16", "") if "samples" in bad else base
        (tmp_path / "t.toml").write_text(text.replace('soc = "SM8650"', bad))
        with pytest.raises(InputError) as e:
            parse_target(tmp_path / "t.toml")
        assert needle in str(e.value.problem) + str(e.value.hint)


def test_a_bundle_with_nothing_buildable_is_refused_before_work(tmp_path, monkeypatch):
    """executorch-qnn alone without Qualcomm's SDK would write a bundle holding no artifact: refused up front,
    naming the reason and a backend that builds here; nothing is written."""
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--target", "android-npu", "--backend", "executorch-qnn",
                                    "--recipe", "16a4w-block", "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert "would write no artifact on this machine: executorch-qnn cannot build here (QNN_SDK_ROOT" in res.output
    assert "--backend onnx-qnn beside --backend executorch-qnn" in res.output
    assert "resolving model" not in res.output and not out.exists()
