"""Lower the decoder to ONNX with past/present KV tensors (the layout onnxruntime-genai reads), via torch.onnx
(dynamo exporter); int4/int8 weights via onnxruntime's own MatMulNBits quantizer.

Prefill and decode share one graph: ``input_ids [1, S]``, ``attention_mask [1, P+S]``, ``position_ids [1, S]``,
``past_key_values.N.key/value [1, Hkv, P, D]`` → ``logits [1, S, V]``, ``present.N.key/value [1, Hkv, P+S, D]``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgeslm.model.decoder import Decoder
from edgeslm.model.generation import generation_defaults

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
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    q.model.save_model_to_file(str(path), use_external_data_format=True)


def write_genai_config(folder: Path, decoder: Decoder, bos_id, eos_ids, pad_id, generation: dict,
                       provider_options: list) -> dict:
    """genai_config.json: what onnxruntime_genai.Model(folder) needs to load and generate; ``search`` holds the
    same defaults as the manifest's ``app.generation`` (one function makes both)."""
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
                    "position_ids": "position_ids",
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
            "past_present_share_buffer": False,
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
