"""Every supported family: re-authoring is exact, the fp32 .pte matches transformers' greedy output token for
token in the ExecuTorch runtime, and 8da4w exports, runs and reports parity."""

from __future__ import annotations

import json

import pytest
import torch

from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.pipeline import export
from edgeslm.testing.tiny import CONFIGS

FAMILIES = sorted(CONFIGS)
# The slow .pte cases run in CI for the families that differ most (llama; gemma3: sliding window, soft-capping,
# q/k norm; phi3: partial rotary, fused qkv/gate_up); the others are the `extra` tier (scripts/test --extra).
ET_FAMILIES = [f if f in ("llama", "gemma3", "phi3") else pytest.param(f, marks=pytest.mark.extra) for f in FAMILIES]


@pytest.mark.parametrize("family", FAMILIES)
def test_reauthored_decoder_matches_transformers(family, tiny_dir, tokenizer):
    ckpt = load_checkpoint(resolve(str(tiny_dir(family))))
    ref = ckpt.reference_model()
    dec = build_decoder(ckpt, 64)
    ids = torch.tensor([tokenizer("The import statement is used to find a module").input_ids * 2])
    with torch.no_grad():
        want = ref(ids).logits[0]
        dec.full_logits = True
        got = dec(ids, torch.arange(ids.shape[1]))[0]
        dec.full_logits = False
        # the decode path: one token at a time through the static KV cache
        steps = torch.stack([dec(ids[:, i : i + 1], torch.tensor([i]))[0] for i in range(ids.shape[1])])
    assert (want - got).abs().max() < 1e-4
    assert (want - steps).abs().max() < 1e-4


def _check(res, stage):
    return next(c for c in res.parity["checks"] if c["stage"] == stage)


@pytest.mark.slow
@pytest.mark.parametrize("family", ET_FAMILIES)
def test_fp32_pte_matches_transformers_greedy(family, tiny_dir, tmp_path):
    res = export(str(tiny_dir(family)), "android", tmp_path / "b", recipe="fp32", backends=("executorch",),
                 context_length=64, bench=False)
    e2e = _check(res, "end_to_end")
    assert e2e["greedy_tokens"] == 32
    for p in e2e["per_prompt"]:
        assert p["greedy_candidate"] == p["greedy_reference"], p["prompt"]
    assert e2e["metrics"]["max_abs_logit_diff"] < 1e-3
    assert res.passed
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert manifest["model"]["family"] == family


@pytest.mark.slow
@pytest.mark.parametrize("family", ET_FAMILIES)
def test_8da4w_asym_exports_runs_and_reports(family, tiny_dir, tmp_path):
    res = export(str(tiny_dir(family)), "android", tmp_path / "b", recipe="8da4w-asym", backends=("executorch",),
                 context_length=64, bench=False)
    stages = [c["stage"] for c in res.parity["checks"]]
    assert stages == ["reauthoring", "quantization", "lowering", "end_to_end"]
    q = _check(res, "quantization")
    assert 0 < q["metrics"]["kl_mean"]  # 4-bit weights really changed the model
    low = _check(res, "lowering")
    assert low["metrics"]["top1_agreement"] > 0.8  # the runtime computes what the quantized eager model does
    doc = json.loads((tmp_path / "b" / "parity.json").read_text())
    assert doc["schema_version"] == "1.4" and len(doc["checks"]) == 4
    (art,) = [a.to_json() for a in res.artifacts]
    assert art["recipe"] == "8da4w-asym" and art["xnnpack_partitions"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_fp32_onnx_matches_transformers_in_ort_and_genai(family, tiny_dir, tmp_path):
    from edgeslm.backends.onnx.runtime import genai_greedy_tokens

    res = export(str(tiny_dir(family)), "jetson-orin", tmp_path / "b", recipe="fp32", context_length=64, bench=False)
    e2e = _check(res, "end_to_end")
    folder = tmp_path / "b" / "onnx-fp32"
    for p in e2e["per_prompt"]:
        assert p["greedy_candidate"] == p["greedy_reference"], p["prompt"]  # onnxruntime == transformers
    (art,) = [a.to_json() for a in res.artifacts]
    assert art["onnxruntime_genai"]["greedy_exact"] == 8  # onnxruntime-genai == onnxruntime, token for token
    assert art["onnxruntime_genai"]["max_abs_logit_diff"] == 0.0  # fed the same path: the same logits, to the bit
    assert e2e["metrics"]["max_abs_logit_diff"] < 1e-3 and res.passed
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    tok = load_checkpoint(resolve(str(tiny_dir(family)))).tokenizer
    ids = tok(e2e["per_prompt"][0]["prompt"]).input_ids
    assert genai_greedy_tokens(folder, [ids], [32])[0] == e2e["per_prompt"][0]["greedy_reference"]


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_int4_onnx_exports_runs_and_reports(family, tiny_dir, tmp_path):
    # android: the CPU execution provider (a CUDA target keeps the traced graph: tests/test_demo_bundle.py)
    res = export(str(tiny_dir(family)), "android", tmp_path / "b", backends=("onnx",), recipe="int4",
                 context_length=64, bench=False)
    (art,) = [a.to_json() for a in res.artifacts]
    traced = "traced_because" in art  # the tiny phi3's 12-dim partial rotary: GQA cannot fuse it
    assert traced == (family == "phi3")
    stages = ["lowering", "quantization"] if traced else ["quantization", "lowering"]
    assert [c["stage"] for c in res.parity["checks"]] == ["reauthoring", *stages, "end_to_end", "runtime_agreement"]
    assert _check(res, "quantization")["metrics"]["kl_mean"] > 0
    low = _check(res, "lowering")["metrics"]
    assert low["max_abs_logit_diff"] < 1e-3 if traced else low["kl_mean"] < 1e-3 and low["top1_agreement"] >= 0.99
    import onnx

    graph = onnx.load(str(tmp_path / "b" / "onnx-int4" / "model.onnx"), load_external_data=False).graph
    ops = [n.op_type for n in graph.node]
    # every projection of both layers (q, k and v as one when written, gate and up as one), and lm_head
    assert ops.count("MatMulNBits") == (7 if traced else 4) * 2 + 1
    assert traced or ops.count("GroupQueryAttention") == 2


@pytest.mark.parametrize("recipe,dtype", [("fp16", "float16"), ("int8", "float32")])
def test_onnx_fp16_and_int8(recipe, dtype, tiny_dir, tmp_path):
    import onnx

    res = export(str(tiny_dir("qwen3")), "jetson-orin", tmp_path / "b", recipe=recipe, context_length=64, bench=False)
    (art,) = [a.to_json() for a in res.artifacts]
    assert art["onnxruntime_genai"]["greedy_exact"] == 8  # the folder loads and runs in onnxruntime-genai
    assert art["onnxruntime_genai"]["max_abs_logit_diff"] == 0.0  # fp16 graphs too
    q = _check(res, "quantization")
    assert 0 < q["metrics"]["kl_mean"] < 0.05 and q["metrics"]["top1_agreement"] > 0.9
    graph = onnx.load(str(tmp_path / "b" / art["file"]), load_external_data=False).graph
    past = next(i for i in graph.input if i.name == "past_key_values.0.key")
    assert onnx.helper.tensor_dtype_to_np_dtype(past.type.tensor_type.elem_type).name == dtype


def _on_grids(dec, seed: int = 0) -> None:
    """Linears on an asymmetric 4-bit grid (a scale and an offset per block of 32 inputs, as GGUF Q4_1 stores
    them), the tied embedding table on a symmetric int8 grid per block of 32 (GGUF Q8_0), lm_head its copy."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in dec.named_modules():
            if isinstance(m, torch.nn.Linear) and name != "lm_head":
                out, k = m.weight.shape
                q = torch.randint(0, 16, (out, k // 32, 32), generator=g).float()
                q[..., 0], q[..., 1] = 0, 15  # every block spans its grid
                d = 0.004 + 0.01 * torch.rand(out, k // 32, 1, generator=g)
                m.weight.copy_((d * q + 0.05 * torch.rand(out, k // 32, 1, generator=g) - 3 * d).reshape(out, k))
        v, h = dec.embed_tokens.weight.shape
        q = torch.randint(-127, 128, (v, h // 32, 32), generator=g).float()
        q[..., 0] = 127
        table = (q * (0.002 + 0.002 * torch.rand(v, h // 32, 1, generator=g))).reshape(v, h)
        dec.embed_tokens.weight.copy_(table)
        dec.lm_head.weight.copy_(table)


def _logit_sqnr(ref_path, path) -> float:
    import numpy as np
    import onnxruntime as ort

    ids = np.array([[5, 17, 200, 33, 401, 7, 99, 250]])
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    sess = ort.InferenceSession(str(ref_path))
    for i in sess.get_inputs():
        if i.name.startswith("past_key_values"):
            feeds[i.name] = np.zeros([1, i.shape[1], 0, i.shape[3]], np.float32)
    ref = sess.run(["logits"], feeds)[0]
    out = ort.InferenceSession(str(path)).run(["logits"], feeds)[0]
    return float(10 * np.log10((ref ** 2).mean() / ((ref - out) ** 2).mean()))


def test_onnx_int4_asym_reproduces_an_asymmetric_grid_with_the_int4_kernel(tiny_dir, tmp_path):
    """int4-asym: each linear as a symmetric int4 MatMulNBits (no zero points: onnxruntime's fast kernel) on the
    fitted grid plus an fp32 offset MatMul over block sums; lm_head int8 sharing one table with the embedding
    GatherBlockQuantized. On weights already on an asymmetric 4-bit grid it is near-exact; symmetric int4 (int4)
    is not."""
    import onnx

    from edgeslm.backends.onnx.graph import write_decoder
    from edgeslm.backends.onnx.nbits import NBits
    from edgeslm.backends.onnx.work import _graph_weights, _matmul_scheme
    from edgeslm.quant.recipes import get_recipe

    assert _matmul_scheme(get_recipe("int4-asym")) == (NBits(4, 32, "asym"), NBits(8, 32))
    ckpt = load_checkpoint(resolve(str(tiny_dir("llama"))))
    paths = {}
    for name in ("fp32", "int4-asym", "int4"):
        dec = build_decoder(ckpt, 64)
        _on_grids(dec)
        (tmp_path / name).mkdir()
        paths[name] = tmp_path / name / "model.onnx"
        facts = write_decoder(dec, paths[name], _graph_weights(_matmul_scheme(get_recipe(name))))
    assert facts["table"]["tied_table"]

    graph = onnx.load(str(paths["int4-asym"])).graph
    inits = {i.name: i for i in graph.initializer}
    nbits = [n for n in graph.node if n.op_type == "MatMulNBits"]
    four = [n for n in nbits if onnx.helper.get_attribute_value(next(a for a in n.attribute if a.name == "bits")) == 4]
    assert len(four) == 4 * 2 and len(nbits) == len(four) + 1  # q/k/v as one, o, gate/up as one, down; + lm_head
    assert all(len(n.input) < 4 or not n.input[3] for n in four)  # symmetric: no zero points, the fast kernel
    offsets = [n for n in graph.node if n.op_type == "MatMul" and n.input[1] in inits]
    assert len(offsets) == len(four)  # one fp32 offset term per linear, 1/32 of its size
    s = dec.spec
    assert all(inits[n.input[1]].dims[0] * 32 in (s.hidden_size, s.intermediate_size) for n in offsets)
    (head,) = [n for n in nbits if n not in four]
    (gather,) = [n for n in graph.node if n.op_type == "GatherBlockQuantized"]
    assert gather.input[2] == head.input[2]  # one shared table (its scales, and its codes reshaped)
    v, h = s.vocab_size, s.hidden_size
    assert not [i for i in graph.initializer if tuple(i.dims) in ((v, h), (h, v))]  # no float table left

    asym, sym = _logit_sqnr(paths["fp32"], paths["int4-asym"]), _logit_sqnr(paths["fp32"], paths["int4"])
    assert asym > 35, asym
    assert sym < asym - 15, (sym, asym)
