"""The traced ONNX path (the fallback for what :mod:`edgeslm.backends.onnx.graph` does not write: the fp16 recipe,
rotary widths GroupQueryAttention cannot fuse): the decoder lowered with past/present KV tensors via torch.onnx
(dynamo exporter); int4/int8 weights via onnxruntime's own MatMulNBits quantizer. Also genai_config.json, for both.

Prefill and decode share one graph: ``input_ids [1, S]``, ``attention_mask [1, P+S]``, ``position_ids [1, S]``,
``past_key_values.N.key/value [1, Hkv, P, D]`` → ``logits [1, S, V]``, ``present.N.key/value [1, Hkv, P+S, D]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgeslm.backends.onnx.nbits import NBits
from edgeslm.errors import InputError
from edgeslm.model.decoder import Decoder
from edgeslm.model.generation import generation_defaults
from edgeslm.quant import offset_linear

def io_names(n_layers: int, leading=("input_ids", "attention_mask", "position_ids")) -> tuple[list[str], list[str]]:
    """A decoder graph's input and output names as onnxruntime-genai reads them: the ``leading`` inputs in the
    order the graph's ``forward`` takes them, then every layer's past key and value; logits, then the presents."""
    past = [f"past_key_values.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    present = [f"present.{i}.{kv}" for i in range(n_layers) for kv in ("key", "value")]
    return [*leading, *past], ["logits", *present]


class _WithPast(torch.nn.Module):
    def __init__(self, decoder: Decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids, attention_mask, position_ids, *past):
        logits, presents = self.decoder.forward_with_past(input_ids, position_ids[0], list(past),
                                                          key_mask=attention_mask[0] > 0)
        return (logits, *presents)


MODEL_FILE = "model.onnx"


def export_onnx(decoder: Decoder, path: Path) -> dict:
    """Write ``path`` (+ ``path.data`` external weights); returns facts for the manifest."""
    from torch.export import Dim

    s = decoder.spec
    inputs, outputs = io_names(s.num_layers)
    seq = Dim("sequence_length", min=1, max=s.max_seq_len)
    past_len = Dim("past_sequence_length", min=0, max=s.max_seq_len - 1)
    past = tuple(torch.zeros(1, s.num_kv_heads, 2, s.head_dim) for _ in range(2 * s.num_layers))
    example = (torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 5, dtype=torch.long),
               torch.arange(2, 5)[None], *past)
    dynamic = ({1: seq}, {1: Dim.AUTO}, {1: seq}, tuple({2: past_len} for _ in past))
    with torch.no_grad():
        prog = torch.onnx.export(_WithPast(decoder).eval(), example, dynamo=True, input_names=inputs,
                                 output_names=outputs, dynamic_shapes=dynamic, opset_version=21)
    prog.save(str(path), external_data=True)
    _name_mask_axis(path)
    return {"opset": 21, "inputs": inputs[:3] + ["past_key_values.*"], "outputs": outputs[:1] + ["present.*"]}


def _name_mask_axis(path: Path) -> None:
    """Give attention_mask's length the name onnxruntime-genai's docs use (the exporter invents one)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    mask = next(v for v in model.graph.input if v.name == "attention_mask")
    mask.type.tensor_type.shape.dim[1].dim_param = "total_sequence_length"
    onnx.save(model, str(path))


def _quantizer(model, scheme: NBits, **kw):
    """onnxruntime's MatMulNBits quantizer, symmetric RTN (an ``asym`` scheme's linears are rewritten by
    :func:`_offset_branches` first, so the same fast kernel runs them)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    return MatMulNBitsQuantizer(model, bits=scheme.bits, block_size=scheme.block, is_symmetric=True,
                                accuracy_level=4, **kw)


def _offset_branches(graph, skip: set[str], block: int) -> list[str]:
    """Rewrite each MatMul with a constant weight (but ``skip``) for asymmetric blocks, in place: its weight
    becomes the fitted symmetric grid s·(q − 8) (:func:`edgeslm.quant.offset_linear.fit`, fp32 scales, which
    onnxruntime's RTN quantizer then finds again exactly), and an fp32 branch adds Σ_blocks offset · block sum
    (Reshape, ReduceSum, a MatMul of 1/block the size). Onnxruntime's MatMulNBits also takes float zero points,
    but runs them on a slow path (~60× slower on CPU, 1.31); this keeps the int4 kernel. Returns the names of
    the offset MatMuls (left in fp32)."""
    import numpy as np
    import torch
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in graph.initializer}
    nodes, added = [], []
    for node in graph.node:
        w = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        if w is None or node.name in skip or len(w.dims) != 2 or w.dims[0] % block:
            nodes.append(node)
            continue
        b = numpy_helper.to_array(w)  # [K, N]: x @ b
        q, scale, offset = offset_linear.fit(torch.from_numpy(np.ascontiguousarray(b.T)), block, torch.float32)
        symmetric = offset_linear.grid(q, scale)
        w.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(symmetric.numpy().T), w.name))
        k, p = w.dims[0], f"{node.name or node.output[0]}/asym_"
        graph.initializer.extend([numpy_helper.from_array(np.array([0, 0, k // block, block], np.int64), p + "shape"),
                                  numpy_helper.from_array(np.array([-1], np.int64), p + "axes"),
                                  numpy_helper.from_array(np.ascontiguousarray(offset.numpy().T), p + "offsets")])
        main_out = p + "main"
        out = node.output[0]
        node.output[0] = main_out
        nodes += [node,
                  helper.make_node("Reshape", [node.input[0], p + "shape"], [p + "blocks"], name=p + "reshape"),
                  helper.make_node("ReduceSum", [p + "blocks", p + "axes"], [p + "sums"], name=p + "sum", keepdims=0),
                  helper.make_node("MatMul", [p + "sums", p + "offsets"], [p + "offset"], name=p + "matmul"),
                  helper.make_node("Add", [main_out, p + "offset"], [out], name=p + "add")]
        added.append(p + "matmul")
    graph.ClearField("node")
    graph.node.extend(nodes)
    return added


def _save(model, path: Path) -> None:
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    model.save_model_to_file(str(path), use_external_data_format=True)


def quantize_matmul_nbits(path: Path, bits: int, block_size: int, embeddings: bool = False) -> None:
    """Replace MatMul weights in place with MatMulNBits (symmetric, block-wise RTN), as ORT's tool does; with
    ``embeddings`` the embedding Gather becomes GatherBlockQuantized too."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load(str(path))
    extra = {"op_types_to_quantize": ("MatMul", "Gather"), "quant_axes": (("MatMul", 0), ("Gather", 1))}
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=block_size, is_symmetric=True, accuracy_level=4,
                             **(extra if embeddings else {}))
    q.process()
    _save(q.model, path)


def _table_nodes(graph) -> tuple:
    """The embedding Gather (a constant [V, H] table) and the lm_head MatMul (a constant [H, V] weight)."""
    shapes = {i.name: tuple(i.dims) for i in graph.initializer}
    gather = next((n for n in graph.node if n.op_type == "Gather" and len(shapes.get(n.input[0], ())) == 2), None)
    if gather is None:
        return None, None
    v, h = shapes[gather.input[0]]
    head = [n for n in graph.node if n.op_type == "MatMul" and shapes.get(n.input[1]) == (h, v)]
    return gather, head[-1] if head else None


def quantize_nbits_with_table(path: Path, linear: NBits, table: NBits) -> dict:
    """Every MatMul → MatMulNBits with ``linear``'s scheme except lm_head, which gets ``table``'s; the embedding
    Gather then reads lm_head's quantized table (tied embeddings: one table in the file, as onnxruntime-genai's
    shared-embeddings models do), dequantized with standard ops (GatherBlockQuantized takes no float zero
    points). An untied model's table is quantized apart with the same scheme. Returns facts for the manifest."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(path))
    gather, head = _table_nodes(model.graph)
    if gather is None or head is None:
        raise InputError("the ONNX graph has no embedding Gather and lm_head MatMul to quantize as a table",
                         "use a recipe whose embedding and lm_head rules match the linear layers'")
    inits = {i.name: i for i in model.graph.initializer}
    emb = numpy_helper.to_array(inits[gather.input[0]])
    tied = bool(np.array_equal(numpy_helper.to_array(inits[head.input[1]]).T, emb))
    vocab, hidden = emb.shape
    if hidden % table.block:
        raise InputError(f"hidden size {hidden} is not a multiple of the table's block size {table.block}",
                         "pick a group size that divides the hidden size")
    offsets = _offset_branches(model.graph, {head.name}, linear.block) if linear.method == "asym" else []
    q = _quantizer(model, linear, nodes_to_exclude=[head.name, *offsets])
    q.process()
    q = _quantizer(q.model.model, table, nodes_to_exclude=offsets)  # lm_head: the only other constant MatMul
    q.process()
    model = q.model.model
    graph = model.graph
    qhead = next(n for n in graph.node if n.op_type == "MatMulNBits" and n.output[0] == head.output[0])
    names = list(qhead.input[1:4])
    if not tied:  # the table's own copy, through the same quantizer (a one-MatMul graph)
        x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, hidden])
        y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, vocab])
        w = numpy_helper.from_array(np.ascontiguousarray(emb.T), "embed_table")
        one = helper.make_model(helper.make_graph([helper.make_node("MatMul", ["x", "embed_table"], ["y"])],
                                                  "t", [x], [y], [w]))
        qt = _quantizer(one, table)
        qt.process()
        node = qt.model.model.graph.node[0]
        kept = {i.name: i for i in qt.model.model.graph.initializer}
        names = [f"embed_tokens_q/{n}" for n in node.input[1:4]]
        for old, new in zip(node.input[1:4], names):
            t = kept[old]
            t.name = new
            graph.initializer.append(t)
    nodes = list(graph.node)
    at = next(i for i, n in enumerate(nodes) if n.output[0] == gather.output[0])
    nodes[at:at + 1] = _dequant_gather(graph, names, gather.input[1], gather.output[0], vocab, hidden, table)
    graph.ClearField("node")
    graph.node.extend(nodes)  # in topological order, where the Gather was
    q.model.clean_initializers()
    _save(q.model, path)
    return {"tied_table": tied, "table_shared_with": qhead.name if tied else None}


def _dequant_gather(graph, names: list[str], ids: str, out: str, vocab: int, hidden: int, table: NBits) -> list:
    """Nodes computing ``out`` = rows ``ids`` of a MatMulNBits table (B [V, blocks, blob] uint8, scales and
    optional zero points [V * blocks]), dequantized: (q - zero) * scale, q unpacked low nibble first."""
    import numpy as np
    from onnx import helper, numpy_helper

    p, blocks = "embed_tokens_q/", hidden // table.block
    consts = {"blocks2d": np.array([vocab, blocks], np.int64), "hidden": np.array([hidden], np.int64),
              "blockshape": np.array([blocks, table.block], np.int64), "last": np.array([-1], np.int64),
              "sixteen": np.array(16, np.float32), "zero_default": np.array(2 ** (table.bits - 1), np.float32)}
    graph.initializer.extend(numpy_helper.from_array(v, p + k) for k, v in consts.items())
    c = {k: p + k for k in consts}
    n = helper.make_node
    nodes = [n("Shape", [ids], [p + "ids_shape"]),
             n("Gather", [names[0], ids], [p + "q_packed"], axis=0),
             n("Cast", [p + "q_packed"], [p + "q_f"], to=1)]
    q = p + "q_f"
    if table.bits == 4:  # two codes a byte, the even element in the low nibble
        nodes += [n("Div", [q, c["sixteen"]], [p + "hi_div"]), n("Floor", [p + "hi_div"], [p + "hi"]),
                  n("Mul", [p + "hi", c["sixteen"]], [p + "hi16"]), n("Sub", [q, p + "hi16"], [p + "lo"]),
                  n("Unsqueeze", [p + "lo", c["last"]], [p + "lo1"]), n("Unsqueeze", [p + "hi", c["last"]], [p + "hi1"]),
                  n("Concat", [p + "lo1", p + "hi1"], [p + "pairs"], axis=-1),
                  n("Concat", [p + "ids_shape", c["blockshape"]], [p + "q_shape"], axis=0),
                  n("Reshape", [p + "pairs", p + "q_shape"], [p + "q"])]
        q = p + "q"
    elif table.bits != 8:
        raise InputError(f"a {table.bits}-bit embedding table", "use 4 or 8 bits for the embedding table")

    def per_block(name: str, tag: str) -> str:
        nodes.extend([n("Reshape", [name, c["blocks2d"]], [p + tag + "_2d"]),
                      n("Gather", [p + tag + "_2d", ids], [p + tag + "_rows"], axis=0),
                      n("Unsqueeze", [p + tag + "_rows", c["last"]], [p + tag]),])
        return p + tag

    scale = per_block(names[1], "scale")
    zero = c["zero_default"]
    if len(names) > 2 and names[2]:
        zp = next(i for i in graph.initializer if i.name == names[2])
        if zp.data_type != 1:  # packed integer zero points: only the symmetric or float-zero-point schemes here
            raise InputError("an embedding table with packed integer zero points",
                             "use a symmetric (rtn) or asym rule for embed_tokens and lm_head")
        zero = per_block(names[2], "zero")
    nodes += [n("Sub", [q, zero], [p + "centred"]), n("Mul", [p + "centred", scale], [p + "rows"]),
              n("Concat", [p + "ids_shape", c["hidden"]], [p + "out_shape"], axis=0),
              n("Reshape", [p + "rows", p + "out_shape"], [out])]
    return nodes


def write_genai_config(folder: Path, decoder: Decoder, bos_id, eos_ids, pad_id, generation: dict,
                       provider_options: list, graph_io: bool = False) -> dict:
    """genai_config.json: what onnxruntime_genai.Model(folder) needs to load and generate; ``search`` holds the
    same defaults as the manifest's ``app.generation`` (one function makes both). ``graph_io``: the written graph's
    I/O (GroupQueryAttention: no position_ids, past and present sharing one max_length buffer)."""
    gen = generation_defaults(generation)
    s = decoder.spec
    eos = list(eos_ids)
    config = {
        "model": {
            "bos_token_id": bos_id,
            "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": pad_id if pad_id is not None else eos[0],
            "context_length": s.max_seq_len,
            "vocab_size": s.vocab_size,
            "type": "decoder",
            "decoder": {
                "filename": MODEL_FILE,
                "session_options": {"log_id": "edgeslm", "provider_options": provider_options},
                "head_size": s.head_dim,
                "hidden_size": s.hidden_size,
                "num_attention_heads": s.num_heads,
                "num_hidden_layers": s.num_layers,
                "num_key_value_heads": s.num_kv_heads,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    **({} if graph_io else {"position_ids": "position_ids"}),
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {
                    "logits": "logits",
                    "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value",
                },
            },
        },
        "search": {
            "do_sample": gen["do_sample"],
            "max_length": s.max_seq_len,
            "min_length": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": graph_io,
            "repetition_penalty": gen["repetition_penalty"],
            "temperature": gen["temperature"],
            "top_k": gen["top_k"],
            "top_p": gen["top_p"],
        },
    }
    (folder / "genai_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config


def convert_fp16(path: Path) -> None:
    """fp16 weights, activations and KV cache (onnxruntime's float16 converter), in place."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(path)), keep_io_types=False, disable_shape_infer=True)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    onnx.save(model, str(path), save_as_external_data=True, location=data.name)
