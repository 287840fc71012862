"""The decoder as two static-shape ONNX graphs in onnxruntime-genai's windowed (QNN) layout.

The QNN execution provider compiles fixed shapes only, so onnxruntime-genai runs such models as a
``decoder-pipeline`` with a ``sliding_window``: a ``ctx`` graph takes the prompt W tokens at a time (front-padded
with the pad id to a multiple of W) and an ``iter`` graph one token at a time. What onnxruntime-genai 0.18 does,
measured with probe graphs (its source for 0.18 was not available; docs/npu.md):

- both graphs: ``input_ids`` int32 [1, S], ``position_ids`` int32 [1, S] (0 for pads, then 0, 1, 2... over real
  tokens), ``attention_mask`` int32 [1, C] (a right-aligned block of ones, one per real token so far, the current
  token in the last slot), ``past_key_values.N.key/value`` uint8 [1, Hkv, D, K] → ``logits`` [1, S, V] and
  ``present.N.*`` with the past's shape. The cache is uint8 (filled with ``pad_value``, here the zero point 128);
  genai takes the value cache's shape from the key's, and hands present back as the next past untouched: the
  graph itself slides its cache (``present = concat(past, new)[..., S:]``). K = C - 1 slots: nothing is evicted.
- uint8 ↔ float is DequantizeLinear / QuantizeLinear with one scale per layer and key/value, from the fp32 model
  on the calibration text.

Masked attention scores use a finite floor (see ``Decoder.use_finite_mask``): -inf would give the QDQ calibrator
an infinite range.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from edgeslm.backends.onnx.export import io_names
from edgeslm.errors import InternalError
from edgeslm.model.generation import generation_defaults

ZERO_POINT = 128  # of the uint8 KV cache; also genai's sliding_window pad_value
# The static graphs' leading inputs, in StaticStep.forward's order (genai_config.json's pipeline lists them so):
# not the ONNX backend's order, where attention_mask comes second.
STATIC_INPUTS = ("input_ids", "position_ids", "attention_mask")


class StaticStep(torch.nn.Module):
    """One fixed-size step (S tokens) over a fixed-size uint8 cache of K slots (oldest first, newest last)."""

    def __init__(self, decoder, S: int, K: int, context: int, scales: list[float]):
        super().__init__()
        import torch.ao.quantization.fx._decomposed

        self.decoder = decoder.use_finite_mask().use_rope_tables()  # ranges independent of position
        self.S, self.K, self.scales = S, K, [float(s) for s in scales]
        T = K + S
        i, j = torch.arange(S)[:, None], torch.arange(T)[None, :]
        # key slot t < K is past slot t, t >= K is current token t - K; slot order is causal order
        self.register_buffer("causal", (j < K) | ((j - K) <= i), persistent=False)
        self.register_buffer("diag", (j - K) == i, persistent=False)  # a padded row still attends to itself
        self.register_buffer("lead", torch.zeros(T - context, dtype=torch.bool), persistent=False)

    def forward(self, input_ids, position_ids, attention_mask, *past_u8):
        keep = torch.cat([self.lead, attention_mask[0] > 0])
        allowed = (self.causal & keep[None, :]) | self.diag  # [S, T]: the whole mask (slots are not positions)
        dq = torch.ops.quantized_decomposed.dequantize_per_tensor
        qz = torch.ops.quantized_decomposed.quantize_per_tensor
        past = [dq(t, self.scales[n], ZERO_POINT, 0, 255, torch.uint8).permute(0, 1, 3, 2)
                for n, t in enumerate(past_u8)]
        logits, presents = self.decoder.forward_with_past(input_ids.to(torch.int64), position_ids[0].to(torch.int64),
                                                          past, key_mask=allowed)
        out = []
        for n, p in enumerate(presents):
            new = qz(p[:, :, self.K:, :], self.scales[n], ZERO_POINT, 0, 255, torch.uint8).permute(0, 1, 3, 2)
            out.append(torch.cat([past_u8[n], new], dim=3)[..., self.S:])
        return (logits, *out)


def kv_scales(decoder, windows: list[list[int]]) -> list[float]:
    """One symmetric uint8 scale per layer and key/value (zero point 128), from the fp32 decoder on ``windows``."""
    s = decoder.spec
    amax = torch.zeros(2 * s.num_layers)
    with torch.no_grad():
        for ids in windows:
            past = [torch.zeros(1, s.num_kv_heads, 0, s.head_dim) for _ in range(2 * s.num_layers)]
            _, presents = decoder.forward_with_past(torch.tensor([list(ids)]), torch.arange(len(ids)), past)
            for n, p in enumerate(presents):
                amax[n] = max(amax[n], p.abs().max())
    return [max(float(a), 1e-6) / 127.0 for a in amax]


def export_static(make_decoder, folder: Path, window: int, context: int, scales: list[float]) -> dict:
    """Write ctx.onnx (S = window) and iter.onnx (S = 1), fully static, with external weights beside each;
    ``make_decoder()`` gives a fresh decoder per graph. Returns facts for the manifest."""
    K = context - 1
    for name, S in (("ctx", window), ("iter", 1)):
        dec = make_decoder()
        spec = dec.spec
        ins, outs = io_names(spec.num_layers, STATIC_INPUTS)
        example = [torch.zeros(1, S, dtype=torch.int32), torch.arange(S, dtype=torch.int32)[None],
                   torch.ones(1, context, dtype=torch.int32)]
        # distinct tensors: torch.export merges one tensor object passed twice into one graph input
        example += [torch.full((1, spec.num_kv_heads, spec.head_dim, K), ZERO_POINT, dtype=torch.uint8)
                    for _ in range(2 * spec.num_layers)]
        with torch.no_grad():
            prog = torch.onnx.export(StaticStep(dec, S, K, context, scales).eval(), tuple(example), dynamo=True,
                                     input_names=ins, output_names=outs, opset_version=21)
        used = {i for node in prog.model_proto.graph.node for i in node.input}
        unused = [i.name for i in prog.model_proto.graph.input if i.name not in used]
        if unused:
            raise InternalError(f"static ONNX export left inputs unused: {unused[:3]}")
        prog.save(str(folder / f"{name}.onnx"), external_data=True)
        del dec, prog
    return {"window": window, "context_length": context, "cache_slots": K, "kv_cache": "uint8, zero point 128, "
            "one scale per layer and key/value", "graphs": {"ctx": f"[1, {window}] tokens per run (prompt)",
                                                           "iter": "[1, 1] (generation)"}}


def pad_token(special) -> int:
    """The pad id genai front-fills prompts with; genai treats any token with this id as padding, so it must not
    be one a prompt holds (BOS, EOS)."""
    taken = {special.bos_id, *special.eos_ids}
    if special.pad_id is not None and special.pad_id not in taken:
        return special.pad_id
    return special.eos_ids[0]


def write_pipeline_config(folder: Path, spec, special, context: int, window: int, generation: dict,
                          provider_options: list) -> dict:
    """genai_config.json: a decoder-pipeline (ctx on the prompt, iter on generation) with the sliding window."""
    gen = generation_defaults(generation)
    ins, outs = io_names(spec.num_layers, STATIC_INPUTS)
    eos = list(special.eos_ids)
    graph = {"inputs": ins, "outputs": outs}
    config = {
        "model": {
            "bos_token_id": special.bos_id, "eos_token_id": eos if len(eos) > 1 else eos[0],
            "pad_token_id": pad_token(special), "context_length": context, "vocab_size": spec.vocab_size,
            "type": "decoder-pipeline",
            "decoder": {
                "session_options": {"log_id": "edgeslm", "provider_options": provider_options},
                "head_size": spec.head_dim, "hidden_size": spec.hidden_size,
                "num_attention_heads": spec.num_heads, "num_hidden_layers": spec.num_layers,
                "num_key_value_heads": spec.num_kv_heads,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                           "position_ids": "position_ids", "past_key_names": "past_key_values.%d.key",
                           "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "sliding_window": {"window_size": window, "pad_value": ZERO_POINT, "alignment": "right",
                                   "slide_inputs": True, "slide_key_value_cache": True},
                "pipeline": [{
                    "ctx": {"filename": "ctx.onnx", **graph, "run_on_prompt": True, "run_on_token_gen": False},
                    "iter": {"filename": "iter.onnx", **graph, "run_on_prompt": False, "run_on_token_gen": True},
                }],
            },
        },
        "search": {"do_sample": gen["do_sample"], "max_length": context, "min_length": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False,
                   "repetition_penalty": gen["repetition_penalty"], "temperature": gen["temperature"],
                   "top_k": gen["top_k"], "top_p": gen["top_p"]},
    }
    (folder / "genai_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return config
