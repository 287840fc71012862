"""Write the decoder's ONNX graph directly from its weights (onnx_ir), in the form onnxruntime-genai's own builder
writes: no tracing, no whole-model quantization pass.

Per layer: SimplifiedLayerNormalization / SkipSimplifiedLayerNormalization (the residual add absorbed), one
MatMulNBits over q, k and v together, GroupQueryAttention with the rotary embedding fused (cos/sin caches per
rope type), past and present sharing one buffer in onnxruntime-genai, and the MLP's MatMulNBits. Each linear is
quantized as the writer reaches it (onnxruntime's own C++ quantizer, :mod:`edgeslm.backends.onnx.nbits`) and the
decoder's module is swapped for its exact eager twin, so the decoder left behind is the lowering stage's
reference. A tied embedding is stored once: GatherBlockQuantized reads lm_head's quantized table.

Everything a family differs in comes from its :class:`~edgeslm.model.decoder.DecoderSpec` (the family table):
q/k norms, sandwich norms and Gemma's (1 + w) norm weights, scaled embeddings, attention scale and soft-capping,
per-layer sliding windows and rope types, partial rotary, biases, the final soft-cap. Not written here: fp16
graphs (onnxruntime's CPU GroupQueryAttention runs fp32 only), which keep the traced path
(:func:`edgeslm.backends.onnx.export.export_onnx`).

I/O (onnxruntime-genai's builder convention): ``input_ids [B, S]``, ``attention_mask [B, T]`` (T = past + S;
positions follow from it) and ``past_key_values.N.key/value [B, Hkv, P, D]`` → ``logits [B, S, V]``,
``present.N.key/value [B, Hkv, T, D]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir
import torch
from torch import nn

from edgeslm.backends.onnx.nbits import ACCURACY_LEVEL, NBits, NBitsEmbedding, NBitsLinear, pack4, quantize
from edgeslm.model.decoder import Decoder
from edgeslm.quant import offset_linear

OPSETS = {"": 21, "com.microsoft": 1}
IR_VERSION = 10  # onnxruntime 1.31 reads up to 13
INPUTS = ("input_ids", "attention_mask")
# how each activation is written (ONNX Gelu-20 has the tanh form)
ACTIVATION_OPS = {"silu": ("Sigmoid", {}), "gelu_pytorch_tanh": ("Gelu", {"approximate": "tanh"}),
                  "gelu_tanh": ("Gelu", {"approximate": "tanh"}), "gelu": ("Gelu", {})}


@dataclass(frozen=True)
class Weights:
    """How the writer stores weights: the linears' MatMulNBits scheme and lm_head's (None: fp32 MatMul), and
    whether the embedding Gather reads a quantized table (lm_head's, when the checkpoint ties them)."""

    linear: NBits | None
    table: NBits | None
    quantized_embedding: bool


class _Graph:
    """Nodes and initializers in the order they are made (topological: each node's inputs exist already)."""

    def __init__(self):
        self.nodes: list[ir.Node] = []
        self.initializers: list[ir.Value] = []
        self._sums: dict[tuple[str, int], ir.Value] = {}

    def const(self, name: str, array: np.ndarray) -> ir.Value:
        array = np.ascontiguousarray(array)
        v = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
        self.initializers.append(v)
        return v

    def op(self, op_type: str, inputs, name: str, outputs: int = 1, domain: str = "", **attrs):
        outs = [ir.Value(name=f"{name}/output_{i}") for i in range(outputs)]
        self.nodes.append(ir.node(op_type, inputs, attrs, domain=domain, outputs=outs, name=name))
        return outs[0] if outputs == 1 else tuple(outs)

    def block_sums(self, x: ir.Value, block: int, width: int) -> ir.Value:
        """Σ over each block of ``block`` inputs of ``x [B, S, width]`` (made once per input)."""
        key = (x.name, block)
        if key not in self._sums:
            p = f"{x.name}/block_sums"
            shape = self.const(f"{p}/shape", np.array([0, 0, width // block, block], np.int64))
            blocks = self.op("Reshape", [x, shape], f"{p}/Reshape")
            self._sums[key] = self.op("ReduceSum", [blocks, self.const(f"{p}/axes", np.array([-1], np.int64))],
                                      f"{p}/ReduceSum", keepdims=0)
        return self._sums[key]


def _tensor_type(dtype: ir.DataType, shape: list) -> dict:
    return {"type": ir.TensorType(dtype), "shape": ir.Shape(shape)}


class _Writer:
    def __init__(self, dec: Decoder, weights: Weights):
        self.dec, self.spec, self.w = dec, dec.spec, weights
        self.g = _Graph()

    # ---------------------------------------------------------------- weights

    def linear(self, x: ir.Value, owners: list[tuple[nn.Module, str]], name: str, scheme: NBits | None) -> ir.Value:
        """One MatMul(NBits) computing every linear in ``owners`` (their outputs concatenated); each module is
        swapped for its eager twin."""
        mods = [getattr(o, a) for o, a in owners]
        w = torch.cat([m.weight.detach() for m in mods]) if len(mods) > 1 else mods[0].weight.detach()
        bias = torch.cat([m.bias.detach() for m in mods]) if mods[0].bias is not None else None
        sizes = [m.weight.shape[0] for m in mods]
        g = self.g
        n, k = w.shape
        if scheme is None:
            y = g.op("MatMul", [x, g.const(f"{name}.weight", w.float().T.numpy())], f"/{name}/MatMul")
            if bias is not None:
                y = g.op("Add", [y, g.const(f"{name}.bias", bias.numpy())], f"/{name}/Add")
            return y
        offsets = None
        if scheme.method == "asym":  # the fitted grid is already symmetric int4: packed as it is
            q, scale, offsets = offset_linear.fit(w, scheme.block, torch.float32)
            packed, scales = pack4(q + 8, scheme.block), scale.numpy()
        else:
            packed, scales = quantize(w, scheme.bits, scheme.block)
        del w
        inputs = [x, g.const(f"{name}.weight_Q{scheme.bits}", packed), g.const(f"{name}.weight_scales", scales)]
        if bias is not None:
            inputs += [None, None, g.const(f"{name}.bias", bias.numpy())]
        y = g.op("MatMulNBits", inputs, f"/{name}/MatMulNBits", domain="com.microsoft", K=k, N=n,
                 bits=scheme.bits, block_size=scheme.block, accuracy_level=ACCURACY_LEVEL)
        if offsets is not None:
            sums = g.block_sums(x, scheme.block, k)
            off = g.op("MatMul", [sums, g.const(f"{name}.offsets", offsets.T.numpy())], f"/{name}/offsets/MatMul")
            y = g.op("Add", [y, off], f"/{name}/offsets/Add")
        cuts = np.cumsum(sizes)[:-1]  # each part's rows of B and scales (views: the graph's own arrays)
        parts = zip(owners, np.split(packed, cuts), np.split(scales, cuts),
                    bias.split(sizes) if bias is not None else [None] * len(sizes),
                    offsets.split(sizes) if offsets is not None else [None] * len(sizes))
        for (owner, attr), p, sc, b, off in parts:
            setattr(owner, attr, NBitsLinear(p, sc, scheme.bits, scheme.block, b, off))
        return y

    def norm_weight(self, norm: nn.Module, name: str) -> ir.Value:
        return self.g.const(name, (norm.weight.detach().float() + norm.offset).numpy())

    def norm(self, x: ir.Value, norm: nn.Module, name: str) -> ir.Value:
        return self.g.op("SimplifiedLayerNormalization", [x, self.norm_weight(norm, f"{name}.weight")],
                         f"/{name}/SimplifiedLayerNorm", axis=-1, epsilon=float(norm.eps), stash_type=1)

    def skip_norm(self, residual: ir.Value, delta: ir.Value, norm: nn.Module, name: str) -> tuple:
        """(norm(residual + delta), residual + delta)."""
        out = self.g.op("SkipSimplifiedLayerNormalization", [residual, delta, self.norm_weight(norm, f"{name}.weight")],
                        f"/{name}/SkipSimplifiedLayerNorm", outputs=4, domain="com.microsoft",
                        epsilon=float(norm.eps))
        return out[0], out[3]

    # ---------------------------------------------------------------- graph

    def rope_caches(self) -> dict:
        """cos/sin [context, rotary/2] per rope type, computed as the decoder computes them (attention scaling
        folded in)."""
        dec, out = self.dec, {}
        positions = torch.arange(self.spec.max_seq_len)
        for key in dec.rope_keys:
            freqs = positions[:, None].float() * getattr(dec, f"rope_inv_freq_{key}")[None, :]
            scale = dec.rope_scaling[key]
            cos, sin = (freqs.cos() * scale, freqs.sin() * scale) if scale != 1.0 else (freqs.cos(), freqs.sin())
            out[key] = (self.g.const(f"cos_cache.{key}", cos.numpy()), self.g.const(f"sin_cache.{key}", sin.numpy()))
        return out

    def attention(self, x, i: int, layer, pasts, mask, caches) -> ir.Value:
        s, g, attn = self.spec, self.g, layer.self_attn
        p = f"model.layers.{i}.attn"
        qkv = self.linear(x, [(attn, "q_proj"), (attn, "k_proj"), (attn, "v_proj")], f"{p}.qkv_proj", self.w.linear)
        q_key_value = [qkv, None, None]
        if s.qk_norm:  # per-head RMSNorm on q and k before the (fused) rotary embedding
            sizes = g.const(f"{p}.qkv_sizes", np.array([s.num_heads * s.head_dim, s.num_kv_heads * s.head_dim,
                                                        s.num_kv_heads * s.head_dim], np.int64))
            q, k, v = g.op("Split", [qkv, sizes], f"/{p}/Split", outputs=3, axis=-1)
            heads = g.const(f"{p}.head_shape", np.array([0, 0, -1, s.head_dim], np.int64))
            flat = g.const(f"{p}.flat_shape", np.array([0, 0, -1], np.int64))
            normed = []
            for t, norm, tag in ((q, attn.q_norm, "q_norm"), (k, attn.k_norm, "k_norm")):
                t = g.op("Reshape", [t, heads], f"/{p}/{tag}/Reshape")
                t = self.norm(t, norm, f"{p}.{tag}")
                normed.append(g.op("Reshape", [t, flat], f"/{p}/{tag}/Flatten"))
            q_key_value = [*normed, v]
        cos, sin = caches[layer.rope_key]
        window = attn.window
        out, pk, pv = g.op(
            "GroupQueryAttention", [*q_key_value, *pasts, *mask, cos, sin], f"/{p}/GroupQueryAttention", outputs=3,
            domain="com.microsoft", num_heads=s.num_heads, kv_num_heads=s.num_kv_heads, scale=float(attn.scale),
            local_window_size=window if window is not None else -1, softcap=float(attn.softcap or 0.0),
            do_rotary=1, rotary_interleaved=0)
        pk.name, pv.name = f"present.{i}.key", f"present.{i}.value"
        self.presents += [pk, pv]
        return self.linear(out, [(attn, "o_proj")], f"{p}.o_proj", self.w.linear)

    def mlp(self, x, i: int, layer) -> ir.Value:
        g, mlp, p = self.g, layer.mlp, f"model.layers.{i}.mlp"
        both = self.linear(x, [(mlp, "gate_proj"), (mlp, "up_proj")], f"{p}.gate_up_proj", self.w.linear)
        half = g.const(f"{p}.gate_up_sizes", np.array([self.spec.intermediate_size] * 2, dtype=np.int64))
        gate, up = g.op("Split", [both, half], f"/{p}/Split", outputs=2, axis=-1)
        op, attrs = ACTIVATION_OPS[self.spec.activation]
        act = g.op(op, [gate], f"/{p}/act/{op}", **attrs)
        if op == "Sigmoid":  # silu = x · sigmoid(x)
            act = g.op("Mul", [gate, act], f"/{p}/act/Mul")
        return self.linear(g.op("Mul", [act, up], f"/{p}/Mul"), [(mlp, "down_proj")], f"{p}.down_proj",
                           self.w.linear)

    def embedding(self, ids: ir.Value, lm_head: tuple | None) -> ir.Value:
        """The token embeddings: a Gather over the fp32 table, or GatherBlockQuantized over lm_head's quantized
        table (tied) or the table's own quantized copy; the decoder's table becomes what the graph reads."""
        g, dec, w = self.g, self.dec, self.w
        table = dec.embed_tokens.weight.detach()
        if not w.quantized_embedding:
            h = g.op("Gather", [g.const("model.embed_tokens.weight", table.float().numpy()), ids],
                     "/model/embed_tokens/Gather")
        else:
            scheme = w.table
            packed, scales = lm_head if lm_head is not None else quantize(table, scheme.bits, scheme.block)
            names = ("lm_head.weight", "lm_head.weight_scales") if lm_head is not None else \
                ("model.embed_tokens.weight", "model.embed_tokens.weight_scales")
            data = next((v for v in g.initializers if v.name == f"{names[0]}_Q{scheme.bits}"), None)
            data = data if data is not None else g.const(f"{names[0]}_Q{scheme.bits}", packed)
            scale = next((v for v in g.initializers if v.name == names[1]), None) or g.const(names[1], scales)
            rows = g.op("Reshape", [data, g.const("model.embed_tokens.table_shape",
                                                  np.array([packed.shape[0], -1], np.int64))],
                        "/model/embed_tokens/Reshape")
            h = g.op("GatherBlockQuantized", [rows, ids, scale], "/model/embed_tokens/GatherBlockQuantized",
                     domain="com.microsoft", bits=scheme.bits, block_size=scheme.block, gather_axis=0,
                     quantize_axis=1)
            dec.embed_tokens = NBitsEmbedding(packed, scales, scheme.bits)
        if self.spec.embed_scale != 1.0:
            h = g.op("Mul", [h, g.const("model.embed_scale", np.array(self.spec.embed_scale, np.float32))],
                     "/model/embed_tokens/Mul")
        return h

    def write(self) -> ir.Model:
        s, g, dec = self.spec, self.g, self.dec
        f, i64 = ir.DataType.FLOAT, ir.DataType.INT64
        ids = ir.Value(name="input_ids", **_tensor_type(i64, ["batch_size", "sequence_length"]))
        mask_in = ir.Value(name="attention_mask", **_tensor_type(i64, ["batch_size", "total_sequence_length"]))
        kv_shape = ["batch_size", s.num_kv_heads, "past_sequence_length", s.head_dim]
        pasts = [ir.Value(name=f"past_key_values.{i}.{kv}", **_tensor_type(f, kv_shape))
                 for i in range(s.num_layers) for kv in ("key", "value")]
        self.presents: list[ir.Value] = []

        # lm_head first: a tied embedding reads its quantized table
        tied = torch.equal(dec.lm_head.weight, dec.embed_tokens.weight)
        head_table = None
        if self.w.table is not None:
            packed, scales = quantize(dec.lm_head.weight.detach(), self.w.table.bits, self.w.table.block)
            head_table = (packed, scales)
            g.const(f"lm_head.weight_Q{self.w.table.bits}", packed)
            g.const("lm_head.weight_scales", scales)
            dec.lm_head = NBitsLinear(packed, scales, self.w.table.bits, self.w.table.block)

        # positions come from the mask: seqlens_k = Σ mask − 1 and the total length, as GQA takes them
        one = g.const("one_i64", np.array([1], np.int64))
        total_len = g.op("ReduceSum", [mask_in, one], "/model/attn_mask/ReduceSum", keepdims=0)
        seqlens = g.op("Cast", [g.op("Sub", [total_len, one], "/model/attn_mask/Sub")], "/model/attn_mask/Cast",
                       to=ir.DataType.INT32)
        width = g.op("Gather", [g.op("Shape", [mask_in], "/model/attn_mask/Shape"),
                                g.const("index_1", np.array(1, np.int64))], "/model/attn_mask/Gather", axis=0)
        total = g.op("Cast", [width], "/model/attn_mask/Gather/Cast", to=ir.DataType.INT32)
        caches = self.rope_caches()

        h = self.embedding(ids, head_table if tied else None)
        layers = list(dec.layers)
        residual, x = h, self.norm(h, layers[0].input_layernorm, "model.layers.0.input_layernorm")
        for i, layer in enumerate(layers):
            a = self.attention(x, i, layer, pasts[2 * i:2 * i + 2], (seqlens, total), caches)
            if layer.sandwich:
                a = self.norm(a, layer.post_attention_layernorm, f"model.layers.{i}.post_attention_layernorm")
                nxt, name = layer.pre_feedforward_layernorm, f"model.layers.{i}.pre_feedforward_layernorm"
            else:
                nxt, name = layer.post_attention_layernorm, f"model.layers.{i}.post_attention_layernorm"
            x, residual = self.skip_norm(residual, a, nxt, name)
            m = self.mlp(x, i, layer)
            if layer.sandwich:
                m = self.norm(m, layer.post_feedforward_layernorm, f"model.layers.{i}.post_feedforward_layernorm")
            last = i + 1 == len(layers)
            nxt, name = (dec.norm, "model.norm") if last else \
                (layers[i + 1].input_layernorm, f"model.layers.{i + 1}.input_layernorm")
            x, residual = self.skip_norm(residual, m, nxt, name)

        logits = self.lm_head(x, head_table)
        if s.final_softcap is not None:
            cap = g.const("final_softcap", np.array(s.final_softcap, np.float32))
            logits = g.op("Mul", [g.op("Tanh", [g.op("Div", [logits, cap], "/lm_head/softcap/Div")],
                                       "/lm_head/softcap/Tanh"), cap], "/lm_head/softcap/Mul")
        logits.name = "logits"
        logits.type, logits.shape = ir.TensorType(f), ir.Shape(["batch_size", "sequence_length", s.vocab_size])
        present_shape = ["batch_size", s.num_kv_heads, "total_sequence_length", s.head_dim]
        for v in self.presents:
            v.type, v.shape = ir.TensorType(f), ir.Shape(present_shape)
        graph = ir.Graph([ids, mask_in, *pasts], [logits, *self.presents], nodes=g.nodes,
                         initializers=g.initializers, opset_imports=OPSETS, name="edgeslm_decoder")
        return ir.Model(graph, ir_version=IR_VERSION, producer_name="edgeslm")

    def lm_head(self, x: ir.Value, table: tuple | None) -> ir.Value:
        g, dec, scheme = self.g, self.dec, self.w.table
        if scheme is None:
            return self.linear(x, [(dec, "lm_head")], "lm_head", None)
        packed = table[0]
        by_name = {v.name: v for v in g.initializers}
        return g.op("MatMulNBits", [x, by_name[f"lm_head.weight_Q{scheme.bits}"], by_name["lm_head.weight_scales"]],
                    "/lm_head/MatMulNBits", domain="com.microsoft", K=packed.shape[1] * scheme.block,
                    N=packed.shape[0], bits=scheme.bits, block_size=scheme.block, accuracy_level=ACCURACY_LEVEL)


def unsupported(dec: Decoder) -> str | None:
    """Why this writer cannot write ``dec`` (the traced path then does), or None. GroupQueryAttention's fused
    rotary takes cos/sin caches whose width (rotary dims / 2) is a multiple of 8."""
    for key in dec.rope_keys:
        half = getattr(dec, f"rope_inv_freq_{key}").shape[0]
        if half % 8 or 2 * half > dec.spec.head_dim:
            return f"rotary width {2 * half} (GroupQueryAttention's fused rotary needs a multiple of 16)"
    return None


def fp32_parameters(dec: Decoder) -> None:
    """Every weight of ``dec`` in fp32 (those read as stored, bf16, converted in place): what the writer left
    unquantized (an embedding, a linear), as the graph holds it, so the eager model computes what the graph
    does; or the whole decoder before the traced path."""
    for name, p in list(dec.named_parameters()):
        if p.dtype != torch.float32:
            owner, _, attr = name.rpartition(".")
            setattr(dec.get_submodule(owner), attr, nn.Parameter(p.detach().float(), requires_grad=False))


def write_decoder(dec: Decoder, path: Path, weights: Weights) -> dict:
    """Write ``path`` (+ ``path.data``) from ``dec``'s weights (fp32, or its matrices as stored: bf16); ``dec``
    becomes the eager model of the same numerics (its linears :class:`NBitsLinear`, a quantized table
    :class:`NBitsEmbedding`). Returns facts for the manifest."""
    writer = _Writer(dec, weights)
    tied = torch.equal(dec.lm_head.weight, dec.embed_tokens.weight)
    with torch.no_grad():
        model = writer.write()
        fp32_parameters(dec)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    ir.save(model, path, external_data=data.name)
    facts = {"opset": OPSETS[""], "written_by": "edgeslm graph writer (onnx_ir)", "attention": "GroupQueryAttention",
             "inputs": [*INPUTS, "past_key_values.*"], "outputs": ["logits", "present.*"]}
    if weights.table is not None and weights.quantized_embedding:
        facts["table"] = {"tied_table": tied, "table_shared_with": "/lm_head/MatMulNBits" if tied else None,
                          "gather": "GatherBlockQuantized"}
    return facts
