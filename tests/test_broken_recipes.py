"""The gates still catch real damage after being made robust to near-ties: a recipe that scales a layer's weights
(a wrong group scale), one that maps weights into the wrong layers, and a lowering that drops a layer all fail —
on the trained demo model and on a random-weight model with transformers' own (flat) initialisation. The healthy
counterparts pass (tests/test_random_families.py, tests/test_demo_bundle.py)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

import edgeslm.backends.executorch.work as et_backend
import edgeslm.backends.executorch.export as et_export
import edgeslm.backends.onnx.work as onnx_work
from edgeslm.pipeline import export

from edgeslm.quant.apply import apply_recipe
from edgeslm.testing.breakage import scale_layer, swap_layers

real_build = et_backend.build_decoder
real_lower = et_export.lower_to_pte


def _scale_layer0(dec):
    scale_layer(dec, 0)


def _swap_layers(dec):
    swap_layers(dec, 0, -1)


def _broken_before_quantizing(breakage):
    """The backend's build_decoder with ``breakage`` applied to the fp32 weights before the recipe quantizes them
    (the backend otherwise quantizes each module as it loads)."""
    def build(ckpt, max_seq_len, use_custom_ops=False, untie=True, recipe=None, on_quantized=None, fuse=False):
        dec = real_build(ckpt, max_seq_len, use_custom_ops=use_custom_ops, untie=untie, fuse=fuse)
        breakage(dec)
        dec.quant_plan = apply_recipe(dec, recipe) if recipe is not None else {}
        return dec
    return build


def _drop_layer_when_lowering(dec, meta, out):
    dec.layers[len(dec.layers) // 2].forward = lambda h, *args: h
    return real_lower(dec, meta, out)


@pytest.fixture(scope="module")
def flat_llama(tmp_path_factory, tokenizer):
    from edgeslm.testing.tiny import make_tiny

    return make_tiny("llama", tmp_path_factory.mktemp("flat") / "llama", tokenizer, seed=1, init_std=None,
                     hidden_size=128, intermediate_size=384, num_hidden_layers=4)


MODELS = ("demo", "flat")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_broken_recipe_or_lowering_fails_its_stage(model, flat_llama, tmp_path, monkeypatch):
    """One export per model carries two defects, each judged by its own stage: the recipe scales layer 0 (demo)
    or swaps the first and last layers (flat), which the quantization stage (fp32 → quantized eager) must fail, and
    the lowering drops the middle layer, which the lowering stage (quantized eager → .pte, both carrying the
    recipe's defect) must fail. The stages compare neighbours, so neither defect can pass for the other; the
    healthy lowering of the same recipe passes (tests/test_demo_bundle.py, tests/test_random_families.py)."""
    breakage = _scale_layer0 if model == "demo" else _swap_layers
    # both are looked up in the backend's work module (imported there by name), so that is where they are patched
    monkeypatch.setattr(et_backend, "build_decoder", _broken_before_quantizing(breakage))
    monkeypatch.setattr(et_backend, "lower_to_pte", _drop_layer_when_lowering)
    src = "demo" if model == "demo" else str(flat_llama)
    res = export(src, "android", tmp_path / "b", backends=("executorch",), bench=False)
    assert not res.passed
    doc = json.loads((tmp_path / "b" / "parity.json").read_text())
    failed = {c["stage"] for c in doc["checks"] if c["status"] == "failed"}
    assert {"quantization", "lowering"} <= failed, [(c["stage"], c["status"], c["gate"]["failures"])
                                                     for c in doc["checks"]]
    assert json.loads((tmp_path / "b" / "manifest.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_written_onnx_graph_missing_a_layer_fails_lowering(tmp_path, monkeypatch):
    """The ONNX lowering stage (the eager model of MatMulNBits' numerics → the written graph in onnxruntime), whose
    bounds leave room for flipped int8 activation roundings, still fails a graph written without its middle layer
    (the layer's output projections zeroed in the copy the graph is written from), while the quantization stage,
    judged on the intact eager model, passes."""
    real_write = onnx_work.write_decoder

    def write_without_a_layer(dec, path, weights):
        broken = copy.deepcopy(dec)
        layer = broken.layers[len(broken.layers) // 2]
        with torch.no_grad():
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        facts = real_write(dec, path.with_name("intact.onnx"), weights)  # dec becomes the graph's eager twin
        for f in path.parent.glob("intact.onnx*"):
            f.unlink()
        real_write(broken, path, weights)
        return facts

    monkeypatch.setattr(onnx_work, "write_decoder", write_without_a_layer)
    res = export("demo", "android", tmp_path / "b", backends=("onnx",), bench=False)
    assert not res.passed
    doc = json.loads((tmp_path / "b" / "parity.json").read_text())
    status = {c["stage"]: c["status"] for c in doc["checks"]}
    assert status["lowering"] == "failed" and status["quantization"] == "passed", doc["checks"]
