"""The ONNX graph writer (edgeslm/backends/onnx/graph.py): every family it writes computes what the eager decoder
computes, and NBitsLinear (the lowering stage's eager reference) computes what MatMulNBits computes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
import torch

from edgeslm.backends.onnx.graph import Weights, unsupported, write_decoder
from edgeslm.backends.onnx.nbits import NBits, NBitsEmbedding, NBitsLinear, dequantize, quantize
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.testing.tiny import CONFIGS

IDS = [5, 17, 200, 33, 401, 7, 99, 250, 3, 44, 12, 300]  # longer than the tiny Gemmas' window of 8


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(sess, spec, ids, step: bool) -> np.ndarray:
    """Logits of every position: one run over ``ids`` (prefill), or token by token through the KV cache."""
    past = [np.zeros((1, spec.num_kv_heads, 0, spec.head_dim), np.float32) for _ in range(2 * spec.num_layers)]
    names = [f"past_key_values.{i}.{kv}" for i in range(spec.num_layers) for kv in ("key", "value")]
    chunks = [[t] for t in ids] if step else [ids]
    out, pos = [], 0
    for chunk in chunks:
        feeds = {"input_ids": np.array([chunk]), "attention_mask": np.ones((1, pos + len(chunk)), np.int64),
                 **dict(zip(names, past))}
        logits, *past = sess.run(None, feeds)
        out.append(logits[0])
        pos += len(chunk)
    return np.concatenate(out)


def _eager(dec, ids) -> np.ndarray:
    with torch.no_grad():
        dec.full_logits = True
        return dec(torch.tensor([ids]), torch.arange(len(ids)))[0].numpy()


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_written_graph_computes_what_the_eager_decoder_computes(family, tiny_dir, tmp_path):
    """fp32: the graph equals the eager decoder (prefill and cached decode). int4-asym: the decoder the writer
    leaves behind is the graph's eager twin; int8 activation roundings flipped by fp32 ulps (the only difference)
    stay far below the quantization's own change."""
    ckpt = load_checkpoint(resolve(str(tiny_dir(family))))
    dec = build_decoder(ckpt, 64)
    if unsupported(dec):  # the tiny phi3's partial rotary (12 dims): the traced path exports it
        assert family == "phi3" and "rotary width 12" in unsupported(dec)
        return
    fp32 = _eager(dec, IDS)
    write_decoder(dec, tmp_path / "model.onnx", Weights(None, None, False))
    sess = _session(tmp_path / "model.onnx")
    for step in (False, True):
        assert np.abs(_run(sess, dec.spec, IDS, step) - fp32).max() < 1e-4

    (tmp_path / "q").mkdir()
    facts = write_decoder(dec, tmp_path / "q" / "model.onnx", Weights(NBits(4, 32, "asym"), NBits(8, 32), True))
    twin = _eager(dec, IDS)
    got = _run(_session(tmp_path / "q" / "model.onnx"), dec.spec, IDS, step=True)

    def kl(p, q):
        lp, lq = torch.log_softmax(torch.from_numpy(p).double(), -1), torch.log_softmax(torch.from_numpy(q).double(), -1)
        return float((lp.exp() * (lp - lq)).sum(-1).mean())

    assert kl(twin, got) < 1e-3 and (twin.argmax(-1) == got.argmax(-1)).mean() >= 0.9
    assert kl(fp32, twin) > 10 * kl(twin, got)  # the quantization itself is what changed the model
    assert facts["table"]["tied_table"] == bool(ckpt.config.tie_word_embeddings)


def test_nbits_linear_is_matmulnbits():
    """The eager twin's int8 activation rounding is MLAS's: scale max|x|/127, its reciprocal, half to even (inputs
    on a grid land on exact ties: .5 here), for 4- and 8-bit weights."""
    g = torch.Generator().manual_seed(0)
    k, n = 64, 48
    x = torch.randn(3, k, generator=g)
    x[1, :32] = torch.arange(32) * 0.5 - 7.75  # a block on a grid: many products on exact .5 ties
    x[1, 0] = 127 / 8
    for bits in (4, 8):
        packed, scales = quantize(torch.randn(n, k, generator=g) * 0.05, bits, 32)
        bias = torch.randn(n, generator=g)
        vals = [ir.Value(name="x", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["m", k])),
                ir.Value(name="w", const_value=ir.tensor(packed)), ir.Value(name="s", const_value=ir.tensor(scales)),
                ir.Value(name="b", const_value=ir.tensor(bias.numpy()))]
        y = ir.Value(name="y", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["m", n]))
        node = ir.node("MatMulNBits", [*vals[:3], None, None, vals[3]], dict(K=k, N=n, bits=bits, block_size=32,
                       accuracy_level=4), domain="com.microsoft", outputs=[y])
        model = ir.Model(ir.Graph([vals[0]], [y], nodes=[node], initializers=vals[1:],
                                  opset_imports={"": 21, "com.microsoft": 1}), ir_version=10)
        sess = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
        want = sess.run(None, {"x": x.numpy()})[0]
        twin = NBitsLinear(packed, scales, bits, 32, bias)
        with torch.no_grad():
            got = twin(x).numpy()
            plain = torch.nn.functional.linear(x, twin.weight, bias).numpy()
        assert np.abs(got - want).max() < 1e-5
        assert np.abs(plain - want).max() > 1e-3  # without the activation rounding it would not be exact
        # dequantize reads B as the kernel does: fp32 compute (accuracy level 0) on the identity gives it back
        node.attributes["accuracy_level"] = ir.AttrInt64("accuracy_level", 0)
        sess = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
        weights = sess.run(None, {"x": np.eye(k, dtype=np.float32)})[0] - bias.numpy()
        assert np.abs(weights.T - dequantize(packed, scales, bits).numpy()).max() < 1e-6


def test_the_eager_table_reads_what_gather_block_quantized_reads():
    """NBitsEmbedding keeps the table packed and dequantizes the rows looked up: the rows onnxruntime's
    GatherBlockQuantized returns, bit for bit (the eager model of a quantized, tied table)."""
    g = torch.Generator().manual_seed(1)
    n, k = 300, 64
    packed, scales = quantize(torch.randn(n, k, generator=g) * 0.05, 4, 32)
    ids = torch.tensor([[5, 0, 299], [17, 17, 42]])
    vals = [ir.Value(name="data", const_value=ir.tensor(packed.reshape(n, -1))),
            ir.Value(name="ids", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape(["b", "s"])),
            ir.Value(name="scales", const_value=ir.tensor(scales))]
    y = ir.Value(name="y", type=ir.TensorType(ir.DataType.FLOAT), shape=ir.Shape(["b", "s", k]))
    node = ir.node("GatherBlockQuantized", vals, dict(bits=4, block_size=32, gather_axis=0, quantize_axis=1),
                   domain="com.microsoft", outputs=[y])
    model = ir.Model(ir.Graph([vals[1]], [y], nodes=[node], initializers=[vals[0], vals[2]],
                              opset_imports={"": 21, "com.microsoft": 1}), ir_version=10)
    sess = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"ids": ids.numpy()})[0]
    got = NBitsEmbedding(packed, scales, 4)(ids).numpy()
    assert got.shape == want.shape == (2, 3, k)
    assert np.array_equal(got, want)


def test_runtime_parity_prefills_the_prompt_and_decodes_the_rest(tiny_dir, tmp_path):
    """The parity passes in onnxruntime score a prompt in one prefill and its continuation a token at a time (the
    app's path: both kernels scored), held-out chunks in one prefill each; every row equals the token-by-token
    decode path's."""
    from edgeslm.backends.onnx.export import write_genai_config
    from edgeslm.backends.onnx.runtime import OrtModel
    from edgeslm.parity.models import RuntimeStepModel

    ckpt = load_checkpoint(resolve(str(tiny_dir("qwen2"))))
    dec = build_decoder(ckpt, 64)
    write_decoder(dec, tmp_path / "model.onnx", Weights(None, None, False))
    write_genai_config(tmp_path, dec, 1, [2], 0, {}, [], graph_io=True)

    class Counted(OrtModel):
        calls: list = []

        def prefill(self, tokens):
            self.calls.append(("prefill", len(tokens)))
            return super().prefill(tokens)

        def step(self, tokens, start_pos):
            self.calls.append(("step", len(tokens)))
            return super().step(tokens, start_pos)

    rt = Counted(tmp_path)
    m = RuntimeStepModel(rt)
    along = m.logits_along(IDS[:5], IDS[5:])
    assert rt.calls == [("prefill", 5)] + [("step", 1)] * 7
    per_token = torch.from_numpy(_run(rt.sess, dec.spec, IDS, step=True))
    assert along.shape == per_token.shape and (along - per_token).abs().max() < 1e-4
    rt.calls.clear()
    assert (m.logits(IDS) - per_token).abs().max() < 1e-4 and rt.calls == [("prefill", len(IDS))]


def test_chunked_quantize_and_dequantize_equal_the_whole(monkeypatch):
    """A vocabulary-sized table goes through onnxruntime's quantizer and back in chunks of rows: the same bytes
    and values as one whole pass."""
    from edgeslm.backends.onnx import nbits

    w = torch.randn(37, 64, generator=torch.Generator().manual_seed(1))
    for bits in (4, 8):
        whole = quantize(w, bits, 32)
        deq = dequantize(*whole, bits)
        monkeypatch.setattr(nbits, "ROWS", 8)  # 5 chunks, the last one short
        parts = quantize(w, bits, 32)
        assert all(np.array_equal(a, b) for a, b in zip(whole, parts))
        assert torch.equal(dequantize(*parts, bits), deq)
        monkeypatch.undo()


def test_genai_on_every_core_computes_what_its_default_computes(tokenizer, tmp_path):
    """The checks run onnxruntime-genai with one thread per core (bench keeps genai's default, what an app gets):
    at SmolLM2-135M's widths, int4, the greedy tokens and every step's logits are the same bit for bit."""
    import onnxruntime_genai as og

    from edgeslm.backends.onnx.export import write_genai_config
    from edgeslm.backends.onnx.runtime import load_genai_model
    from edgeslm.testing.shapes import make_real_shape

    ckpt = load_checkpoint(resolve(str(make_real_shape("smollm2-135m-8l", tmp_path / "ckpt", tokenizer))))
    dec = build_decoder(ckpt, 64)
    folder = tmp_path / "onnx"
    folder.mkdir()
    write_decoder(dec, folder / "model.onnx", Weights(NBits(4, 32), NBits(4, 32), True))
    write_genai_config(folder, dec, 1, [2], 0, {}, [], graph_io=True)

    def greedy(all_cores: bool):
        model = load_genai_model(folder, all_cores=all_cores)
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(IDS) + 16)
        gen = og.Generator(model, params)
        gen.append_tokens(IDS)
        toks, rows = [], []
        while not gen.is_done():
            rows.append(np.asarray(gen.get_output("logits")).reshape(-1, 49152)[-1].copy())
            gen.generate_next_token()
            toks.append(int(gen.get_next_tokens()[0]))
        return toks, np.stack(rows)

    (t1, l1), (t2, l2) = greedy(False), greedy(True)
    assert len(t1) == 16 and t1 == t2
    assert np.array_equal(l1, l2)


def test_runtime_agreement_fails_a_generator_that_parts_from_onnxruntime(tiny_dir, tmp_path, monkeypatch):
    """onnxruntime-genai is fed onnxruntime's path: a generator whose logits rank another token first at one decode
    step is caught at that very position (and the export fails), the other prompts agree in full."""
    from edgeslm.backends.onnx import work
    from edgeslm.pipeline import export

    class PartsAtStep3(work.GenaiModel):
        prompts = 0

        def prefill(self, tokens):
            type(self).prompts += 1
            self.prompt_len = len(tokens)
            return super().prefill(tokens)

        def step(self, tokens, start_pos):
            row = super().step(tokens, start_pos)
            if type(self).prompts == 1 and start_pos - self.prompt_len == 2:  # the row choosing the 4th token
                row = row.clone()
                row[(int(row.argmax()) + 1) % row.numel()] = row.max() + 5.0
            return row

    monkeypatch.setattr(work, "GenaiModel", PartsAtStep3)
    res = export(str(tiny_dir("llama")), "android", tmp_path / "b", backends=("onnx",), recipe="int4",
                 context_length=64, bench=False)
    (agree,) = [c for c in res.parity["checks"] if c["stage"] == "runtime_agreement"]
    assert agree["status"] == "failed" and not res.passed
    prefixes = [p["greedy_prefix"] for p in agree["per_prompt"]]
    assert prefixes[0] == 3 and all(p == agree["greedy_tokens"] for p in prefixes[1:]), prefixes
    assert agree["metrics"]["max_abs_logit_diff"] == 0.0  # the prompts' own rows: only that decode step parted


def test_runtime_agreement_is_bit_exact_on_a_healthy_folder(tiny_dir, tmp_path, monkeypatch):
    """genai fed onnxruntime's path computes onnxruntime's logits to the bit (the stage's bound is for accumulation
    order only), with its greedy tokens the same at every position; the generator it loaded then makes the golden
    vectors (one load per artifact), and a later request loads the folder afresh."""
    import json

    from edgeslm.backends.onnx import work
    from edgeslm.pipeline import export

    loads = []

    class Counted(work.GenaiModel):
        def __init__(self, folder):
            loads.append(folder)
            super().__init__(folder)

    monkeypatch.setattr(work, "GenaiModel", Counted)
    res = export(str(tiny_dir("qwen3")), "android", tmp_path / "b", backends=("onnx",), recipe="int4",
                 context_length=64, bench=False)
    (agree,) = [c for c in res.parity["checks"] if c["stage"] == "runtime_agreement"]
    assert agree["status"] == "passed" and agree["metrics"]["max_abs_logit_diff"] == 0.0
    assert agree["metrics"]["greedy_exact"] == agree["prompts"] == 8
    (vector,) = json.loads((tmp_path / "b" / "golden.json").read_text())["greedy"]
    assert len(loads) == 1 and vector["tokens"] and not work._kept
    artifact = {"file": "onnx-int4/model.onnx"}
    assert work.step_model(tmp_path / "b", artifact) is not work.step_model(tmp_path / "b", artifact)
    assert len(loads) == 3


@pytest.mark.parametrize("weights", [Weights(NBits(4, 32), NBits(4, 32), True), Weights(NBits(4, 32, "asym"),
                                                                                     NBits(8, 32), True),
                                     Weights(NBits(4, 32), None, False), Weights(None, None, False)],
                         ids=["int4", "int4-asym", "linears-only", "fp32"])
def test_matrices_read_as_stored_write_the_same_graph_and_twin(weights, tiny_dir, tmp_path):
    """A bf16 checkpoint: the writer reading its matrices as stored (bf16, converted as they are quantized: no
    fp32 copy of the model) writes the bytes an fp32-built decoder writes, and leaves the same eager twin, all
    fp32 (the unquantized embedding or linears included)."""
    import shutil

    from safetensors.torch import load_file, save_file

    src = tiny_dir("llama")
    bf16 = tmp_path / "bf16"
    shutil.copytree(src, bf16)
    for f in bf16.glob("*.safetensors"):
        save_file({k: v.to(torch.bfloat16) for k, v in load_file(f).items()}, f, metadata={"format": "pt"})
    ckpt = load_checkpoint(resolve(str(bf16)))
    decs = {stored: build_decoder(ckpt, 64, stored_matrices=stored) for stored in (False, True)}
    assert decs[True].layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    assert decs[False].layers[0].mlp.up_proj.weight.dtype == torch.float32
    graphs = {}
    for stored, dec in decs.items():
        (tmp_path / str(stored)).mkdir()
        write_decoder(dec, tmp_path / str(stored) / "model.onnx", weights)
        assert {p.dtype for p in dec.parameters()} == {torch.float32}
        graphs[stored] = {v.name: v.const_value.numpy().tobytes()
                          for v in ir.load(tmp_path / str(stored) / "model.onnx").graph.initializers.values()}
    assert graphs[True] == graphs[False]
    assert np.array_equal(_eager(decs[True], IDS), _eager(decs[False], IDS))


def test_reused_buffers_give_the_same_outputs_from_one_buffer_per_shape(monkeypatch):
    """Within reused_buffers, linears of one shape dequantize into one buffer (no fresh pages per layer) and
    compute what they compute alone; outside, each forward has its own."""
    import edgeslm.backends.onnx.nbits as nbits

    g = torch.Generator().manual_seed(0)
    mods = [NBitsLinear(*quantize(torch.randn(n, 64, generator=g), 4, 32), 4, 32) for n in (48, 48, 16)]
    x = torch.randn(3, 64, generator=g)
    alone = [m(x) for m in mods]
    seen = []
    real = nbits.dequantize
    monkeypatch.setattr(nbits, "dequantize", lambda *a: seen.append(real(*a)) or seen[-1])
    with nbits.reused_buffers():
        shared = [m(x) for m in mods]
        assert nbits._buffers is not None
    assert all(torch.equal(a, b) for a, b in zip(alone, shared))
    ptrs = [w.data_ptr() for w in seen]
    assert ptrs[0] == ptrs[1] != ptrs[2] and nbits._buffers is None
