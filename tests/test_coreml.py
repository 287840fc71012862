"""Core ML backend: every family converts (fp16 and int4) to a stateful package; stage 1 (the package's weights in
PyTorch) and stage 2 (the saved package re-read) pass; the runtime stage is reported as not run off macOS and as a
measured check on macOS (see .github/workflows/coreml-macos.yml)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeslm.backends.coreml.runtime import unavailable_here
from edgeslm.pipeline import export
from edgeslm.testing.tiny import CONFIGS

FAMILIES = sorted(CONFIGS)
ON_MAC = unavailable_here() is None

# Random-weight tiny models have near-flat logits, so top-1 agreement under 4-bit weights says little about them;
# KL bounds the damage. The shipped ios target gates the trained demo model (test_demo_bundle.py).
TINY_IOS = """
name = "tiny-ios"
description = "ios gates for random-weight tiny models"
backends = ["coreml"]
recipe = "int4"
context_length = 64
[gates.reauthoring]
max_abs_logit_diff = 1e-3
min_top1 = 0.99
[gates.fp16.quantization]
min_top1 = 0.97
max_kl_mean = 1e-4
[gates.int4.quantization]
max_kl_mean = 0.05
# Core ML vs PyTorch, both fp16 (macOS only): kernels accumulate in a different order, which flips near-ties on
# these flat-logit models, so the runtime stage is bounded by KL.
[gates.fp16.lowering]
max_kl_mean = 1e-3
[gates.int4.lowering]
max_kl_mean = 1e-3
[gates.int8.quantization]
max_kl_mean = 0.01
[gates.int8.lowering]
max_kl_mean = 1e-3
[gates.palettize4.quantization]
max_kl_mean = 0.05
[gates.int4-asym.quantization]
max_kl_mean = 0.05
[gates.int4-asym.lowering]
max_kl_mean = 1e-3
[gates.palettize4.lowering]
max_kl_mean = 1e-3
"""


@pytest.fixture(scope="module")
def tiny_ios(tmp_path_factory):
    p = tmp_path_factory.mktemp("targets") / "tiny-ios.toml"
    p.write_text(TINY_IOS)
    return p


def _check(res, stage):
    return next(c for c in res.parity["checks"] if c["stage"] == stage)


def _validation(res, stage):
    return next(v for v in res.parity["validations"] if v["stage"] == stage)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["fp16", "int4"])
@pytest.mark.parametrize("family", FAMILIES)
def test_family_converts_and_passes_stages_1_and_2(family, recipe, tiny_dir, tiny_ios, tmp_path):
    from edgeslm.backends.coreml.package import read_package

    res = export(str(tiny_dir(family)), tiny_ios, tmp_path / "b", recipe=recipe, bench=False)
    (art,) = [a.to_json() for a in res.artifacts]
    q = _check(res, "quantization")
    assert q["gate"]["passed"], q["gate"]["failures"]
    if recipe == "fp16":
        assert q["metrics"]["top1_agreement"] > 0.97 and q["metrics"]["kl_mean"] < 1e-4
    else:  # the package's int4 weights really differ from fp32 (stage 1 uses them, not a copy of fp32)
        assert 1e-4 < q["metrics"]["kl_mean"] < 0.05
    structure = _validation(res, "structure")
    assert structure["status"] == "passed", [c for c in structure["checks"] if not c["passed"]]

    facts = read_package(tmp_path / "b" / art["package"])
    assert facts["minimum_deployment_target"] == "iOS18"
    assert len(facts["states"]) == 2 * 2  # two layers, K and V
    heaviest = max(facts["weight_bytes_by_dtype"], key=facts["weight_bytes_by_dtype"].get)
    assert heaviest == {"fp16": "float16", "int4": "int4"}[recipe]

    doc = json.loads((tmp_path / "b" / "parity.json").read_text())  # stage-1 figures are in the report
    assert any(c["stage"] == "quantization" and c["artifact"] == art["package"] for c in doc["checks"])
    if ON_MAC:
        assert _check(res, "lowering")["gate"]["passed"] and art["parity"] == "passed"
    else:
        assert _validation(res, "lowering")["status"] == "not_run"
        assert art["parity"] == "runtime_not_run"  # never "passed" when Core ML did not run
        assert doc["not_run"] and "Linux" in doc["not_run"][0]
    assert res.passed


@pytest.mark.slow
@pytest.mark.parametrize("recipe,op,dtype", [("int8", "constexpr_blockwise_shift_scale", "int8"),
                                             ("palettize4", "constexpr_lut_to_dense", "uint4")])
def test_int8_and_palettized_weights(recipe, op, dtype, tiny_dir, tiny_ios, tmp_path):
    res = export(str(tiny_dir("qwen3")), tiny_ios, tmp_path / "b", recipe=recipe, bench=False)
    (art,) = [a.to_json() for a in res.artifacts]
    assert _validation(res, "structure")["status"] == "passed"
    # qwen3's tiny config ties lm_head to the embeddings: Core ML stores that table once
    assert art["weight_bytes_by_dtype"][dtype] > 0
    assert any("tied" in q for q in art["quantization"])
    checks = {c["check"]: c for c in _validation(res, "structure")["checks"]}
    assert checks["compressed weight ops"]["found"] == {op: 1 + 2 * 7}  # embedding + 7 projections per layer


def test_stage_1_reads_the_weights_from_the_saved_package(tiny_dir, tiny_ios, tmp_path):
    """Corrupting the package's weight blob changes what stage 1 loads: the figures come from the file."""
    from edgeslm.backends.coreml.package import package_weights

    export(str(tiny_dir("llama")), tiny_ios, tmp_path / "b", recipe="fp16", bench=False)
    pkg = tmp_path / "b" / "model-fp16.mlpackage"
    before = package_weights(pkg)
    blob = pkg / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2: len(data) // 2 + 4096] = bytes(4096)  # zero 4 KiB in the middle of the weights
    blob.write_bytes(bytes(data))
    after = package_weights(pkg)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert changed and all(k.startswith("p_") for k in changed)


def test_structure_check_fails_on_a_package_without_states(tiny_dir, tiny_ios, tmp_path):
    from edgeslm.backends.coreml.package import read_package, structure_checks

    export(str(tiny_dir("llama")), tiny_ios, tmp_path / "b", recipe="int4", bench=False)
    facts = read_package(tmp_path / "b" / "model-int4.mlpackage")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    (art,) = manifest["artifacts"]
    expected = {"context_length": 64, "num_layers": 2, "num_kv_heads": 2, "head_dim": 16, "vocab_size": 512,
                "compressed_ops": {"constexpr_blockwise_shift_scale": 1 + 2 * 7}, "weight_dtype": "int4",
                "metadata": art["metadata"]}
    assert all(c["passed"] for c in structure_checks(facts, expected)), structure_checks(facts, expected)
    broken = {**facts, "states": facts["states"][:-1], "minimum_deployment_target": "iOS17"}
    failed = {c["check"] for c in structure_checks(broken, expected) if not c["passed"]}
    assert failed == {"KV cache states (2 per layer)", "minimum deployment target"}


def _on_asym_grid(w, block=32):
    """``w`` moved onto an asymmetric 4-bit grid per block of ``block`` input channels (as GGUF Q4_1 stores
    linears: a scale and a float minimum per block), with blocks centred away from zero."""
    import torch

    out_f, in_f = w.shape
    g = torch.Generator().manual_seed(out_f * 7 + in_f)
    blocks = w.reshape(out_f, in_f // block, block)
    scale = blocks.abs().amax(-1, keepdim=True) / 7.5
    low = -scale * (2 + 9 * torch.rand(out_f, in_f // block, 1, generator=g))  # offsets 2..11 steps below 0
    q = torch.randint(0, 16, blocks.shape, generator=g).float()
    q[..., 0], q[..., 1] = 0, 15  # every block spans the whole grid
    return (scale * q + low).reshape(out_f, in_f).half().float()


def test_int4_asym_package_holds_float_offsets_and_reproduces_an_asymmetric_grid(copy_model, tiny_ios, tmp_path):
    """int4-asym stores each linear as uint4 blocks with an fp16 scale and an fp16 offset, and stage 1 reads them
    back decompressed as Core ML does: on weights already on an asymmetric 4-bit grid (GGUF Q4_1's) the package
    reproduces them, where int4 (an integer offset, a range widened to hold zero) rounds them again."""
    from safetensors.torch import load_file, save_file

    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
    from coremltools.converters.mil.mil.types import builtin_to_string as name_of
    from coremltools.models.utils import _convert_model_spec_to_pymil_prog
    from coremltools.optimize.coreml._quantization_passes import linear_quantize_weights
    from edgeslm.backends.coreml.package import load_spec, package_weights

    model = copy_model("llama")
    (st,) = model.glob("*.safetensors")
    tensors = load_file(st)
    grid = {k: _on_asym_grid(v) for k, v in tensors.items() if k.startswith("model.layers.") and v.dim() == 2}
    save_file({**tensors, **grid}, st, metadata={"format": "pt"})

    res = export(str(model), tiny_ios, tmp_path / "b", recipe="int4-asym", bench=False)
    structure = _validation(res, "structure")
    assert structure["status"] == "passed", [c for c in structure["checks"] if not c["passed"]]
    q = _check(res, "quantization")
    assert q["gate"]["passed"], q["gate"]["failures"]
    pkg = tmp_path / "b" / "model-int4-asym.mlpackage"
    model_spec, spec = load_spec(pkg)
    prog = _convert_model_spec_to_pymil_prog(model_spec, spec.specificationVersion, milproto_load)
    ops = {op.name: op for op in prog.functions["main"].operations if op.op_type == "constexpr_blockwise_shift_scale"}
    lin = [op for name, op in ops.items() if "layers_" in name]
    assert len(lin) == 2 * 7
    assert {(name_of(op.data.dtype), name_of(op.scale.dtype), name_of(op.offset.dtype)) for op in lin} \
        == {("uint4", "fp16", "fp16")}
    # the (tied) embedding table: int8 blocks, symmetric (no offset)
    rest = [op for name, op in ops.items() if "layers_" not in name]
    assert rest and all(name_of(op.data.dtype) == "int8" and op.offset is None for op in rest)

    weights = package_weights(pkg)  # what stage 1 runs: the blob decompressed as Core ML does

    def steps_off(got, w):  # worst error of any weight, in steps of its block's grid
        blocks = w.reshape(w.shape[0], -1, 32)
        step = (blocks.max(-1) - blocks.min(-1)) / 15
        return float((np.abs(got.astype(np.float32) - w).reshape(blocks.shape).max(-1) / step).max())

    errors = {"int4-asym": 0.0, "int4": 0.0}
    for k, w in grid.items():
        w = w.numpy()
        got = weights["p_" + k.removeprefix("model.").removesuffix(".weight").replace(".", "_") + "_weight"]
        errors["int4-asym"] = max(errors["int4-asym"], steps_off(got, w))
        # the int4 recipe's fit (coremltools' linear mode: an integer offset, the range widened to hold zero)
        params = linear_quantize_weights.blockwise_compress(w.astype(np.float16), 4, "LINEAR", True, [1, 32])
        errors["int4"] = max(errors["int4"], steps_off(linear_quantize_weights.decompress(params), w))
    assert errors["int4-asym"] < 0.02, errors  # fp16 rounding of the offset only
    assert errors["int4"] > 0.2, errors
