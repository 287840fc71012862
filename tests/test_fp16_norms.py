"""Core ML computes in fp16, norms included, and trained models carry "massive activations" in the residual stream
(SmolLM2-135M-Instruct: 24,795 from layer 11 on): RMSNorm's x² then overflows (past |x| = 256), rsqrt(inf) = 0,
and the row is zeroed. The package takes the max-scaled norm (``Decoder.use_fp16_norms``), and the stage that
simulates the package in PyTorch computes the norms in fp16 as the package does, so an unsafe form fails there."""

from __future__ import annotations

import collections

import pytest
import torch

from edgeslm.backends.coreml.convert import convert
from edgeslm.backends.coreml.work import simulated_decoder
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.decoder import RMSNorm
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder
from edgeslm.parity.stages import compare, default_prompts, heldout_chunks, observe
from edgeslm.quiet import native_output_silenced


def test_max_scaled_norm_survives_fp16():
    x = torch.randn(3, 64)
    x[1, 5] = 24795.0  # SmolLM2's massive activation
    norm = RMSNorm(64, 1e-5, 0.0)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        want = norm(x)  # fp32
        norm.half().upcast = False
        plain = norm(x.half()).float()
        norm.max_scaled = True
        safe = norm(x.half()).float()
    assert plain[1].abs().max() == 0 and torch.allclose(plain[0], want[0], rtol=1e-2, atol=1e-2)  # row zeroed
    assert torch.allclose(safe, want, rtol=1e-2, atol=1e-2)


def _massive(dec, channel: int = 7, factor: float = 3000.0):
    """The demo decoder with one residual channel made massive by layer 0's MLP (as trained models have)."""
    with torch.no_grad():
        dec.layers[0].mlp.down_proj.weight[channel] *= factor
    return dec


@pytest.fixture(scope="module")
def demo():
    ckpt = load_checkpoint(resolve("demo"))
    ids = [ckpt.tokenizer(p).input_ids for p in default_prompts()]
    held = heldout_chunks(ckpt.tokenizer, 128)[:2]
    return ckpt, ids, held


def test_package_simulation_computes_norms_in_fp16(demo):
    """With a massive channel, the fp16 simulation of the plain form breaks (as Core ML would) and the max-scaled
    form stays at fp16 rounding; without it, both forms agree."""
    ckpt, ids, held = demo
    fp32 = _massive(build_decoder(ckpt, 128))
    peaks = []
    hook = fp32.layers[1].input_layernorm.register_forward_hook(lambda m, i, o: peaks.append(i[0].abs().max()))
    ref = observe(EagerDecoder(fp32), ids, held)
    hook.remove()
    assert max(peaks) > 1000  # past fp16's square root of its largest value (256): the case at stake
    weights = {f"p_{n.replace('.', '_')}": p.detach().numpy() for n, p in fp32.named_parameters()}
    out = {}
    for form, dec in (("plain", build_decoder(ckpt, 128)), ("max-scaled", build_decoder(ckpt, 128).use_fp16_norms())):
        sim = simulated_decoder(dec, weights)
        assert all(not m.upcast for m in sim.modules() if isinstance(m, RMSNorm))
        c = compare("quantization", "fp32", form, ref, observe(EagerDecoder(sim), ids, held, path=ref.greedy),
                    default_prompts(), None)
        out[form] = (c.metrics["top1_agreement"], c.metrics["kl_mean"], c.metrics["ppl_rise"])
    assert out["max-scaled"][0] == 1.0 and out["max-scaled"][1] < 1e-3, out
    assert out["plain"][0] < 0.5 or out["plain"][1] is None or out["plain"][1] > 0.5, out


def test_converted_package_scales_every_norm(demo):
    """Every RMSNorm of the converted program divides by its row's max before squaring (one reduce_max and one
    real_div per norm, in fp16)."""
    ckpt, _, _ = demo
    dec = build_decoder(ckpt, 64).use_fp16_norms()
    norms = sum(isinstance(m, RMSNorm) for m in dec.modules())
    with native_output_silenced():
        ml = convert(dec, 64)
    ops = collections.Counter(op.op_type for op in ml._mil_program.functions["main"].operations)
    assert ops["reduce_max"] == ops["real_div"] == ops["rsqrt"] == norms, ops
