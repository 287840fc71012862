"""What makes real-size exports fit and finish: streamed weight loading, the memory forecast and its refusal,
teacher-forced greedy observation (exact against free-running), and the XNNPACK-delegable decoder forms."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from edgeslm.errors import InputError
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import LazyWeights, load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder
from edgeslm.parity.stages import compare, default_prompts, observe
from edgeslm.quant.apply import apply_recipe
from edgeslm.quant.recipes import get_recipe


def test_lazy_weights_read_what_safetensors_wrote(tmp_path):
    from safetensors.torch import save_file

    tensors = {"a": torch.randn(3, 5).to(torch.bfloat16), "b": torch.arange(7, dtype=torch.int64),
               "c": torch.randn(2, 2, 2), "empty": torch.zeros(0, 4)}
    save_file(tensors, str(tmp_path / "m.safetensors"))
    w = LazyWeights([tmp_path / "m.safetensors"])
    assert sorted(w) == sorted(tensors) and w.numel("a") == 15
    for k, t in tensors.items():
        assert w[k].dtype == t.dtype and torch.equal(w[k], t)


def test_streamed_build_matches_transformers_and_unties_lm_head():
    ckpt = load_checkpoint(resolve("demo"))
    dec = build_decoder(ckpt, 128)
    assert not any(b.is_meta for b in dec.buffers()) and not any(p.is_meta for p in dec.parameters())
    assert dec.lm_head.weight.data_ptr() != dec.embed_tokens.weight.data_ptr()
    assert torch.equal(dec.lm_head.weight, dec.embed_tokens.weight)  # tied in the checkpoint, own copy here
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    dec.full_logits = True
    with torch.no_grad():
        ours = dec(ids, torch.arange(6))
        theirs = ckpt.reference_model()(ids).logits
    assert (ours - theirs).abs().max() < 1e-4


@pytest.mark.parametrize("family", ["llama", "phi3", "qwen2", "qwen3"])
def test_delegate_forms_compute_the_same_logits(tiny_dir, family):
    """RMSNorm's mean as a linear and rotate-half as a matmul (partial rotary, qkv bias and qk-norm included)."""
    ckpt = load_checkpoint(resolve(str(tiny_dir(family))))
    dec = build_decoder(ckpt, 64, use_custom_ops=True)
    ids = torch.tensor([[1, 7, 9, 11, 13, 200, 201]])
    dec.full_logits = True
    with torch.no_grad():
        plain = dec(ids, torch.arange(7)).clone()
        dec.use_delegate_forms()
        forms = dec(ids, torch.arange(7))
    assert dec.delegate_forms
    assert (plain - forms).abs().max() < 1e-4 * max(1.0, plain.abs().max().item())


def test_delegate_forms_left_out_where_attention_is_explicit(tiny_dir):
    """Gemma 2 (soft-capping, sliding windows) attends without the custom SDPA op: plain forms are kept."""
    dec = build_decoder(load_checkpoint(resolve(str(tiny_dir("gemma2")))), 64, use_custom_ops=True)
    assert not dec.use_delegate_forms().delegate_forms


def test_delegate_forms_lower_to_one_xnnpack_partition_per_layer(tiny_dir, tmp_path):
    from edgeslm.backends.executorch.export import lower_to_pte, runner_metadata

    ckpt = load_checkpoint(resolve(str(tiny_dir("llama"))))
    spec_layers = ckpt.config.num_hidden_layers
    plain = build_decoder(ckpt, 64, use_custom_ops=True)
    facts_plain = lower_to_pte(plain, runner_metadata(plain, 1, (2,)), tmp_path / "plain.pte")
    forms = build_decoder(ckpt, 64, use_custom_ops=True).use_delegate_forms()
    facts = lower_to_pte(forms, runner_metadata(forms, 1, (2,)), tmp_path / "forms.pte")
    assert facts["xnnpack_partitions"] <= spec_layers + 4 < facts_plain["xnnpack_partitions"]


def test_lowering_lets_its_graphs_and_weights_go(tiny_dir, tmp_path):
    """ExecuTorch keeps a lowering's graphs reachable from module-level state (an unbounded lru_cache keyed on fx
    Nodes, the partitioner configs' last rejected node), and through them the model's weights: on the Llama-3.2-1B
    shape the ONNX half of an android export peaked 3.3 GB above its peak alone. lower_to_pte lets them go."""
    import gc
    import sys
    import weakref

    from executorch.exir.backend.utils import WhyNoPartition, is_same_node

    from edgeslm.backends.executorch.export import lower_to_pte, runner_metadata

    dec = build_decoder(load_checkpoint(resolve(str(tiny_dir("llama")))), 64, use_custom_ops=True)
    lower_to_pte(dec, runner_metadata(dec, 1, (2,)), tmp_path / "m.pte")
    assert is_same_node.cache_info().currsize == 0
    whys = [m.why for n, m in list(sys.modules.items())
            if n.startswith("executorch.") and isinstance(getattr(m, "why", None), WhyNoPartition)]
    assert whys and all(w.node is None for w in whys)
    weight = weakref.ref(dec.layers[0].mlp.down_proj.weight)
    del dec
    gc.collect()
    assert weight() is None


def test_teacher_forced_greedy_prefix_equals_free_running():
    """Along the reference's path, a candidate's prefix is exactly its free-running one (stages.py docstring)."""
    ckpt = load_checkpoint(resolve("demo"))
    prompts = [ckpt.tokenizer(p).input_ids for p in default_prompts()]
    ref = observe(EagerDecoder(build_decoder(ckpt, 256)), prompts)  # free-running
    q = build_decoder(ckpt, 256)
    apply_recipe(q, get_recipe("8da4w"))
    free = observe(EagerDecoder(q), prompts)
    along = observe(EagerDecoder(q), prompts, path=ref.greedy)
    diverged = 0
    for rg, fg, ag in zip(ref.greedy, free.greedy, along.greedy):
        d_free = next((i for i, (a, b) in enumerate(zip(rg, fg)) if a != b), len(rg))
        d_along = next((i for i, (a, b) in enumerate(zip(rg, ag)) if a != b), len(rg))
        assert d_free == d_along
        if d_free < len(rg):
            diverged += 1
            assert fg[d_free] == ag[d_along]  # the same token chosen where it leaves the reference
    assert diverged  # 4-bit does leave the reference on the demo: the comparison above was exercised
    # The prompt rows of one longer forward equal the prompt's own forward up to float rounding (~1e-5), which
    # dynamic int8 activation quantization turns into one rounding step where a value sits on a boundary
    # (seen at 1 thread: 2 of 76 rows off by 0.09). Nearly all rows agree exactly, and the stage's figures do.
    rows = torch.cat([(a - b).abs().max(-1).values for a, b in zip(free.logits, along.logits)])
    assert (rows < 1e-3).float().mean() >= 0.9 and rows.max() < 0.25, rows
    m_free = compare("quantization", "r", "c", ref, free, default_prompts(), None).metrics
    m_along = compare("quantization", "r", "c", ref, along, default_prompts(), None).metrics
    for key in ("top1_agreement", "top1_exact", "greedy_agreement", "greedy_prefix_mean"):
        assert m_free[key] == m_along[key], key
    assert m_free["kl_mean"] == pytest.approx(m_along["kl_mean"], rel=0.01)
    assert m_free["logit_sqnr_db"] == pytest.approx(m_along["logit_sqnr_db"], abs=0.05)


def test_export_refuses_when_memory_cannot_hold_it(tmp_path):
    env = {**os.environ, "EDGESLM_MEMORY_BYTES": str(64 * 2**20)}
    out = tmp_path / "b"
    p = subprocess.run([sys.executable, "-m", "edgeslm.cli", "export", "demo", "--output", str(out), "--no-bench"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "GiB of memory at its peak" in p.stderr and "--no-memory-check" in p.stderr
    assert not out.exists() and not list(tmp_path.glob(".*"))


def test_forecast_grows_with_the_model_and_counts_an_untied_head():
    from edgeslm.preflight import forecast

    small = forecast(135_000_000, 49152, 576, 30, True, ["executorch"], 16 * 2**30)
    big = forecast(1_236_000_000, 128256, 2048, 16, True, ["executorch"], 16 * 2**30)
    assert small.fp32_bytes == 4 * 135_000_000
    # both backends together need what the more demanding one needs, no less
    both = forecast(135_000_000, 49152, 576, 30, True, ["executorch", "onnx"])
    assert both.peak_bytes == max(small.peak_bytes, forecast(135_000_000, 49152, 576, 30, True, ["onnx"]).peak_bytes)
    assert small.peak_bytes < big.peak_bytes and small.fits
    assert not forecast(1_236_000_000, 128256, 2048, 16, True, ["executorch"], 2 * 2**30).fits
    assert json.loads(json.dumps(big.to_json()))["fp32_mib"] > 4000


# Peak RSS (MiB) of `edgeslm export MODEL --target android --no-bench` measured on the 2-core CI machine: the
# export's own high-water mark (its JSON's memory.peak_rss_mib), random weights of the published shapes
# (edgeslm/testing/shapes.py, context 512), both backends; SmolLM2-135M is the real GGUF checkpoint, ExecuTorch only
# (README's worked example).
MEASURED_PEAKS = {("gemma-3-270m", ("executorch", "onnx")): 3429, ("qwen2.5-0.5b", ("executorch", "onnx")): 4312,
                  ("smollm2-135m", ("executorch",)): 2162, ("llama-3.2-1b", ("executorch", "onnx")): 7733}


@pytest.mark.parametrize(("shape", "backends"), list(MEASURED_PEAKS))
def test_forecast_covers_the_measured_peaks_large_vocabularies_included(shape, backends):
    """Under-forecasting lets the OOM killer in where a clear refusal was promised; Gemma 3's 262 K vocabulary
    once peaked 21% above (logits held by the parity passes). Over-forecasting refuses machines that would do:
    within +25% here. A Llama-3.2-1B android export must fit a 16 GB machine (issue 25): it peaked at 7.6 GiB."""
    from edgeslm.preflight import forecast
    from edgeslm.testing.shapes import SHAPES, parameters

    c = SHAPES[shape][1]
    fc = forecast(parameters(shape), c["vocab_size"], c["hidden_size"], c["num_hidden_layers"],
                  c["tie_word_embeddings"], list(backends))
    measured = MEASURED_PEAKS[(shape, backends)] * 2**20
    assert measured <= fc.peak_bytes <= 1.25 * measured, (fc.peak_bytes / 2**20, measured / 2**20)
    big = SHAPES["llama-3.2-1b"][1]
    assert forecast(parameters("llama-3.2-1b"), big["vocab_size"], big["hidden_size"], big["num_hidden_layers"], True,
                    ["executorch", "onnx"], 16 * 10**9).fits


# Seconds of `edgeslm export MODEL --target TARGET --backend onnx [--recipe RECIPE]` (jetson-orin and the fp16 recipe:
# the traced ONNX path) from the forecast to the bundle written (the bench not counted: its latency.json
# export_cost.seconds.measured), measured on the 2-core host: random weights of the published shapes, context 512
# (1B) or the default.
MEASURED_SECONDS = {("smollm2-135m", "android", None): 16.3, ("llama-3.2-1b", "android", None): 96.2,
                    ("smollm2-135m", "jetson-orin", None): 88.8, ("smollm2-135m", "ios", "fp16"): 95.3}


@pytest.mark.parametrize(("shape", "target", "recipe"), list(MEASURED_SECONDS))
def test_time_forecast_of_an_onnx_export_holds_written_and_traced(shape, target, recipe):
    """The ONNX writer takes seconds where tracing took minutes: one forecast for both had the written 135M export
    at 3 min 20 s for 17 s. jetson-orin's CUDA provider and the fp16 recipe send it down the traced path, forecast
    apart (its peak too: 3419 MiB measured for jetson-orin, 3226 for fp16), and a run with both targets is
    forecast by the costlier path."""
    from edgeslm.pipeline.checks import check_memory
    from edgeslm.pipeline.plan import plan_target
    from edgeslm.target import load_target
    from edgeslm.testing.shapes import SHAPES, parameters

    c = SHAPES[shape][1]
    ckpt = SimpleNamespace(parameters=parameters(shape), config=SimpleNamespace(**c))
    tgts = [load_target(target)]
    fc = check_memory(ckpt, tgts, [plan_target(tgts[0], ("onnx",), (recipe,) if recipe else None, None)], False,
                      lambda m: None)
    measured = MEASURED_SECONDS[(shape, target, recipe)]
    assert 0.8 * measured <= fc.seconds <= 1.25 * measured, (fc.seconds, measured)
    if target == "jetson-orin" or recipe == "fp16":
        assert 3226 * 2**20 <= fc.peak_bytes <= 1.25 * 3419 * 2**20  # the traced path's measured peaks
    if target == "jetson-orin":
        both = [load_target("android"), tgts[0]]
        fc2 = check_memory(ckpt, both, [plan_target(t, ("onnx",), None, None) for t in both], False, lambda m: None)
        assert (fc2.seconds, fc2.peak_bytes) == (fc.seconds, fc.peak_bytes)


@pytest.mark.parametrize("family", ["llama", "phi3", "gemma3"])
def test_streamed_reference_equals_from_pretrained(tiny_dir, family):
    """The parity reference is filled tensor by tensor; it must be exactly what from_pretrained gives."""
    from transformers import AutoModelForCausalLM

    ckpt = load_checkpoint(resolve(str(tiny_dir(family))))
    ours = ckpt.reference_model()
    theirs = AutoModelForCausalLM.from_pretrained(ckpt.source.path, dtype=torch.float32).eval()
    assert not any(t.is_meta for t in [*ours.parameters(), *ours.buffers()])
    ids = torch.tensor([[1, 5, 9, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]])
    with torch.no_grad():
        assert torch.equal(ours(ids).logits, theirs(ids).logits)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_batched_reference_greedy_equals_per_prompt(tiny_dir, family):
    """The reference's greedy tokens and prompt logits come from one left-padded batch; padding must not change
    them (the re-authoring gate allows 1e-3 on logits)."""
    from edgeslm.parity.models import HFModel

    ckpt = load_checkpoint(resolve(str(tiny_dir(family))))
    m = HFModel(ckpt.reference_model())
    prompts = [ckpt.tokenizer(p).input_ids for p in default_prompts()]
    assert len(set(map(len, prompts))) > 1  # padding really happens
    batch, tops, logits = m.greedy_batch(prompts, 16)
    for p, g, t, lg in zip(prompts, batch, tops, logits):
        one: list[dict] = []
        assert m.greedy(p, 16, one) == g
        assert max(abs(a["logprobs"][0] - b["logprobs"][0]) for a, b in zip(one, t)) < 1e-4
        assert lg.shape == (len(p), ckpt.config.vocab_size)
        assert (lg - m.logits(p)).abs().max() < 1e-4


def test_quantizing_while_loading_equals_quantizing_after():
    """build_decoder(recipe=...) quantizes each module as its weights arrive (never the whole fp32 model beside
    quantization's temporaries); the result must be the same model."""
    ckpt = load_checkpoint(resolve("demo"))
    after = build_decoder(ckpt, 128, use_custom_ops=True)
    applied = apply_recipe(after, get_recipe("8da4w"))
    during = build_decoder(ckpt, 128, use_custom_ops=True, recipe=get_recipe("8da4w"))
    assert during.quant_plan == applied and len(applied) > 5
    ids = torch.tensor([[1, 40, 41, 42, 43, 44]])
    after.full_logits = during.full_logits = True
    with torch.no_grad():
        assert torch.equal(after(ids, torch.arange(6)), during(ids, torch.arange(6)))


def test_memory_check_override_goes_on(monkeypatch):
    """With the check off, a forecast above the available memory is printed and the export proceeds."""
    from edgeslm.pipeline.checks import check_memory
    from edgeslm.pipeline.plan import plan_target
    from edgeslm.target import load_target

    monkeypatch.setenv("EDGESLM_MEMORY_BYTES", str(64 * 2**20))
    ckpt = load_checkpoint(resolve("demo"))
    tgts = [load_target("android")]
    plans = [plan_target(tgts[0], ("executorch",), None, None)]
    said: list[str] = []
    with pytest.raises(InputError, match="GiB of memory at its peak"):
        check_memory(ckpt, tgts, plans, True, said.append)
    fc = check_memory(ckpt, tgts, plans, False, said.append)
    assert not fc.fits and len(said) == 2 and "64 MiB" not in said[0] and "0.1 GiB available" in said[1]


def test_fused_projections_compute_the_parts_and_lower_smaller(tiny_dir, tmp_path):
    """build_decoder(fuse=True), as ExecuTorch builds: q/k/v and gate/up become one linear each, quantized by the
    parts' rule, and compute what the parts do (same grids, one matmul); parts the recipe treats differently stay
    apart. The fused program lowers with fewer nodes, at most three XNNPACK partitions per layer (the slices that
    split a fused output run outside the delegate: XNNPACK takes no slice of a dynamic-length tensor)."""
    from edgeslm.backends.executorch.export import lower_to_pte, runner_metadata
    from edgeslm.quant.recipes import Recipe, Rule

    ckpt = load_checkpoint(resolve(str(tiny_dir("qwen2"))))  # q/k/v with biases
    rec = get_recipe("8da4w-asym")
    parts = build_decoder(ckpt, 64, use_custom_ops=True, recipe=rec)
    fused = build_decoder(ckpt, 64, use_custom_ops=True, recipe=rec, fuse=True)
    attn, mlp = fused.layers[0].self_attn, fused.layers[0].mlp
    assert attn.qkv_proj is not None and mlp.gate_up_proj is not None and not hasattr(attn, "q_proj")
    assert "layers.0.self_attn.qkv_proj.linear" in fused.quant_plan
    assert not any(".q_proj" in n or ".up_proj" in n for n in fused.quant_plan)
    assert len(fused.quant_plan) == len(parts.quant_plan) - 3 * len(fused.layers)
    ids = torch.tensor([[1, 7, 9, 11, 13, 200, 201]])
    parts.full_logits = fused.full_logits = True
    with torch.no_grad():
        want, got = parts(ids, torch.arange(7)), fused(ids, torch.arange(7))
    assert (want - got).abs().max() < 1e-4 * want.abs().max(), (want - got).abs().max()

    k_apart = Recipe("k-apart", (Rule("*.k_proj", "8da8w"), *rec.rules), "k_proj at 8 bits")
    mixed = build_decoder(ckpt, 64, recipe=k_apart, fuse=True)
    assert mixed.layers[0].self_attn.qkv_proj is None and mixed.layers[0].mlp.gate_up_proj is not None

    layers = ckpt.config.num_hidden_layers
    fused.use_delegate_forms()
    facts = lower_to_pte(fused, runner_metadata(fused, 1, (2,)), tmp_path / "fused.pte")
    assert 0 < facts["xnnpack_partitions"] <= 3 * layers + 4


_MALLOC_PROBE = """
import ctypes, sys
from edgeslm.memory import map_large_buffers
libc = ctypes.CDLL("libc.so.6"); libc.malloc.restype = ctypes.c_void_p; libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "1":
    map_large_buffers()
libc.free(libc.malloc(20 << 20))  # glibc's own threshold rises to the largest block freed (up to 32 MiB)
p = libc.malloc(9 << 20)
heap = next(l for l in open("/proc/self/maps") if l.rstrip().endswith("[heap]"))
lo, hi = (int(x, 16) for x in heap.split()[0].split("-"))
print("heap" if lo <= p < hi else "mapped")
"""


def test_large_buffers_are_mapped_during_an_export():
    """After a 20 MiB block is freed, glibc serves a 9 MiB one from the heap, where a freed weight or logits
    buffer stays in the RSS; ``map_large_buffers`` (called by every export) keeps such buffers mapped, so they
    leave the RSS when freed."""
    got = [subprocess.run([sys.executable, "-c", _MALLOC_PROBE, flag], capture_output=True, text=True,
                          timeout=120).stdout.strip() for flag in ("0", "1")]
    assert got == ["heap", "mapped"]


_EXIT_PROBE = """
import gc, sys, tempfile
gc.disable()
class Cycle:
    def __del__(self):
        print("collected", flush=True)
c = Cycle(); c.me = c; del c  # garbage only the interpreter's last collection would find
d = tempfile.TemporaryDirectory(); print(d.name, flush=True)  # left for its finalizer, as an export's may be
if sys.argv[1] == "1":
    from edgeslm.cli import main
    sys.argv = ["edgeslm", "--version"]
    main()
"""


def test_the_cli_skips_the_last_collection_and_still_removes_temporary_folders():
    """The interpreter's last full collection walks every object torch and transformers made (1.1 s after an
    export): the CLI freezes them at exit instead. Cyclic garbage is left to the OS, finalizers (temporary
    folders) still run."""
    runs = [subprocess.run([sys.executable, "-c", _EXIT_PROBE, flag], capture_output=True, text=True, timeout=120)
            for flag in ("0", "1")]
    plain, cli = (r.stdout.splitlines() for r in runs)
    assert plain[1:] == ["collected"] and "collected" not in cli and runs[1].returncode == 0
    assert not Path(plain[0]).exists() and not Path(cli[0]).exists()
