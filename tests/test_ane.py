"""Apple Neural Engine readiness, judged from a saved package's structure (Core ML cannot plan on Linux).

The demo decoder converted the way edgeslm did before issue 16 (index-assignment cache writes → scatter_nd, a
range-flexible token axis) fails the check, naming the op; converted as edgeslm now does for the ANE (slice writes →
slice_update, one token per prediction) it passes; edgeslm's flexible (GPU) form is reported not ready, and why.
The ios-ane target gates the check on a real export (tests/test_npu.py covers the QNN side)."""

from __future__ import annotations

import json

import torch

from edgeslm.backends.coreml import convert as C
from edgeslm.backends.coreml.ane import ane_readiness
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.quiet import native_output_silenced


def _package(tmp_path, tokens_per_call, slice_writes=True):
    import coremltools as ct
    import numpy as np

    dec = build_decoder(load_checkpoint(resolve("demo")), 64)
    with native_output_silenced():
        if slice_writes:
            ml = C.convert(dec, 64, tokens_per_call)
        else:  # the pre-issue-16 conversion: index assignment into the cache
            ml = ct.convert(C.export_program(dec, 64, tokens_per_call), minimum_deployment_target=ct.target.iOS18,
                            compute_precision=ct.transform.FP16ComputePrecision(
                                op_selector=lambda op: not C._feeds_trig(op)),
                            outputs=[ct.TensorType(name="logits", dtype=np.float32)], skip_model_load=True)
        path = tmp_path / "m.mlpackage"
        C.save(ml, path)
    return ane_readiness(path)


def _check(res, name):
    return next(c for c in res.reasons if c.check == name)


def test_slice_writes_equal_index_assignment():
    dec = build_decoder(load_checkpoint(resolve("demo")), 64)
    ids = torch.tensor([[1, 5, 9, 200, 7]])
    with torch.no_grad():
        a = dec(ids, torch.arange(5))
        a1 = dec(torch.tensor([[42]]), torch.tensor([5]))
        dec.use_slice_writes()
        b = dec(ids, torch.arange(5))
        b1 = dec(torch.tensor([[42]]), torch.tensor([5]))
    assert torch.equal(a, b) and torch.equal(a1, b1)


def test_scatter_cache_write_fails_naming_the_op(tmp_path):
    res = _package(tmp_path, None, slice_writes=False)
    assert not res.ready
    kv = _check(res, "kv_cache_write")
    assert not kv.ok and "scatter_nd" in kv.found and kv.source.startswith("https://")
    assert not _check(res, "input_shapes").ok


def test_ane_form_passes_and_flexible_form_says_why_not(tmp_path):
    res = _package(tmp_path, 1)
    assert _check(res, "kv_cache_write").ok and res.op_counts.get("slice_update") == 8
    assert "scatter_nd" not in res.op_counts
    assert res.ready, res.summary()
    assert not _check(res, "rope_fp32_island").blocking  # fp32 rope angles: reported, not blocking
    assert all(c.source for c in res.reasons)

    (tmp_path / "flex").mkdir()
    flex = _package(tmp_path / "flex", None)
    assert _check(flex, "kv_cache_write").ok  # slice writes in both forms
    assert not flex.ready and [c.check for c in flex.failed() if c.blocking] == ["input_shapes"]


def test_ios_ane_target_gates_readiness(tmp_path):
    """A real export: the ios-ane package is ANE-ready (a gated stage), takes one token per prediction, and its
    parity stages pass; the manifest says ANE-ready and why."""
    from edgeslm.pipeline import export

    res = export("demo", "ios-ane", tmp_path / "b", bench=False, context_length=128)
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    art = m["artifacts"][0]
    assert art["validation"]["ane_readiness"] == "passed", art["validation"]
    assert art["validation"]["structure"] == "passed" and art["validation"]["quantization"] == "passed"
    assert art["neural_engine"]["ready"] is True and art["tokens_per_call"] == 1
    assert res.passed


def test_compute_plan_script_is_python():
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "coreml-compute-plan.py"
    compile(script.read_text(), str(script), "exec")
