"""QNN (Qualcomm HTP) quantization through ExecuTorch's QnnQuantizer: the fake-quant graph runs eagerly, keeps the
KV cache, stays close to fp32 at 16a8w, and lowering says why it cannot run without the QNN SDK."""

from __future__ import annotations

import pytest
import torch

from edgeslm.backends.executorch_qnn import quantize as Q


@pytest.fixture(scope="module")
def demo():
    from edgeslm.model.build import build_decoder
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    ckpt = load_checkpoint(resolve("demo"))
    ids = ckpt.tokenizer("The for statement is used to iterate over the elements of a sequence").input_ids
    return build_decoder(ckpt, 64), ids


def test_sensitive_linears_resolves_last_block(demo):
    dec, _ = demo
    last = len(dec.layers) - 1
    names = Q.sensitive_linears(dec, Q.DEFAULT_SENSITIVE)
    assert "lm_head" in names
    assert any(n.startswith("layers.0.") for n in names) and any(n.startswith(f"layers.{last}.") for n in names)
    assert not any(n.startswith("layers.1.") for n in names)
    with pytest.raises(ValueError):
        Q.sensitive_linears(dec, ["nope"])


def test_16a8w_decode_graph_tracks_fp32(demo, monkeypatch):
    dec, ids = demo
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)  # building the quantizer must not try to fetch the SDK
    model = Q.quantize(dec, [ids], scheme="16a4w", sensitive=["lm_head"], sensitive_scheme="16a8w")
    assert model.qnn_plan["sensitive"] == {"lm_head": "16a8w"}
    got = Q.run_sequence(model, ids, 1, collect=True)  # the decode path: the KV cache carries the context
    dec.full_logits = True
    try:
        with torch.no_grad():
            want = dec(torch.tensor([ids]), torch.arange(len(ids)))[0]
    finally:
        dec.full_logits = False
    assert got.shape == want.shape
    agree = (got.argmax(-1) == want.argmax(-1)).float().mean().item()
    assert agree >= 0.5, agree
    # without the cache the later positions could not match: position 0 alone is not the answer everywhere
    assert not torch.allclose(got[-1], got[0])
    assert "QNN_SDK_ROOT" not in __import__("os").environ


def test_lowering_reports_missing_sdk(monkeypatch):
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    assert "QNN_SDK_ROOT" in Q.lowering_unavailable()
    monkeypatch.setenv("QNN_SDK_ROOT", "/nonexistent")
    assert "libQnnHtp.so" in Q.lowering_unavailable()
    with pytest.raises(Q.QnnUnavailable):
        Q.lower(torch.nn.Identity(), "/tmp/never.pte")


def test_block_recipe_quantizes_linears_per_block(demo, monkeypatch):
    """16a4w-block (LPBQ) reaches QnnQuantizer as per-block int4 weights: the converted graph dequantizes the
    linears block-wise (torchao's dequantize_affine over blocks of 32 input channels, or --group-size's), the
    sensitive lm_head per channel."""
    from edgeslm.backends.executorch_qnn.work import _schemes
    from edgeslm.quant.recipes import get_recipe

    dec, ids = demo
    monkeypatch.delenv("QNN_SDK_ROOT", raising=False)
    assert _schemes(dec, get_recipe("16a4w"))[:2] == ("16a4w", 32)
    assert _schemes(dec, get_recipe("16a4w-block", 64))[:2] == ("16a4w_block", 64)
    scheme, block, sensitive = _schemes(dec, get_recipe("16a4w-block"))
    assert (scheme, block) == ("16a4w_block", 32) and "lm_head" in sensitive
    model = Q.quantize(dec, [ids], scheme=scheme, sensitive=["lm_head"], block_size=block)
    blocks = [n.args for n in model.graph.nodes if str(n.target) == "torchao.dequantize_affine"]
    per_channel = [n for n in model.graph.nodes if "dequantize_per_channel" in str(n.target)]
    linears = [n for n, m in dec.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(blocks) == len(linears) - 1 and len(per_channel) == 1
    assert all(tuple(a[1]) == (1, 32) for a in blocks), blocks[0]
