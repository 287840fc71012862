"""The decoder → a stateful Core ML ML Program (.mlpackage), weights compressed with coremltools' optimize APIs.

- torch.export of the decoder (static KV cache buffers, index-assignment update) with one dynamic sequence axis,
  so one function serves prefill (L tokens) and decode (1 token): Core ML sees flexible input shapes
  ``tokens [1, 1..S]`` and ``input_pos [1..S]``.
- The cache buffers become Core ML states (iOS 18 / macOS 15), fp16 like the rest of the compute; the rope
  angles (position × inverse frequency, then cos/sin) stay in fp32, because fp16 cannot hold position × freq
  precisely enough past a few hundred positions.
- Recipe rules map onto ``op_name_configs`` of ``coremltools.optimize.coreml``: ``4w`` → int4 with offset,
  ``8w`` → symmetric int8 (per block of ``group_size`` input channels, or per output channel), ``pal4`` → 4-bit
  k-means palettization with one 16-entry table per ``group_size`` output channels.
- ``4w`` with method ``asym`` → uint4 blocks with an fp16 scale and an fp16 (float) offset each, fitted min–max
  (:func:`fit_asym`). coremltools' own ``linear`` mode rounds the offset to an integer and widens each block's
  range to contain zero, so a weight already on an asymmetric 4-bit grid (GGUF Q4_1) is rounded a second time;
  ``constexpr_blockwise_shift_scale`` takes a float offset (iOS 18), so its quantization pass is reused with
  only the fit replaced (:func:`_float_offset_pass`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from edgeslm.errors import InputError, InternalError
from edgeslm.quant.recipes import Recipe, Rule, plan

DEPLOYMENT = "iOS18"  # = macOS 15: the first with Core ML states
_WEIGHT_CONST = re.compile(r"^p_(.+)_weight_to_fp16$")


def export_program(dec: torch.nn.Module, max_seq_len: int, tokens_per_call: int | None = None) \
        -> torch.export.ExportedProgram:
    """One dynamic sequence axis (1..max_seq_len tokens per prediction), or exactly ``tokens_per_call`` tokens
    (fixed shapes: what the Neural Engine needs; the app feeds a prompt that many tokens at a time)."""
    with torch.no_grad():
        if tokens_per_call:
            n = tokens_per_call
            ep = torch.export.export(dec, (torch.zeros(1, n, dtype=torch.long), torch.arange(n)), strict=False)
        else:
            seq = torch.export.Dim("seq", min=1, max=max_seq_len)
            example = (torch.zeros(1, 2, dtype=torch.long), torch.arange(2))
            ep = torch.export.export(dec, example, dynamic_shapes=({1: seq}, {0: seq}), strict=False)
    return ep.run_decompositions({})


def _feeds_trig(op, depth: int = 4) -> bool:
    """True for cos/sin and the few ops that only compute their argument (the rope angles)."""
    if op.op_type in ("cos", "sin"):
        return True
    children = [c for v in op.outputs for c in v.child_ops]
    return depth > 0 and bool(children) and all(_feeds_trig(c, depth - 1) for c in children)


def convert(dec: torch.nn.Module, max_seq_len: int, tokens_per_call: int | None = None):
    """Convert the fp32 eager decoder to an fp16 Core ML model with the KV cache as states (not yet saved); the
    cache is written with slice writes (``slice_update``, not ``scatter_nd``: see ane.py)."""
    import coremltools as ct

    ep = export_program(dec.use_slice_writes(), max_seq_len, tokens_per_call)
    return ct.convert(
        ep,
        minimum_deployment_target=getattr(ct.target, DEPLOYMENT),
        compute_precision=ct.transform.FP16ComputePrecision(op_selector=lambda op: not _feeds_trig(op)),
        outputs=[ct.TensorType(name="logits", dtype=np.float32)],
        skip_model_load=True,
    )


def weight_ops(mlmodel) -> dict[str, str]:
    """Module name (``layers.0.mlp.up_proj``) → name of the const op holding its weight in the converted program."""
    out = {}
    for op in mlmodel._mil_program.functions["main"].operations:
        m = _WEIGHT_CONST.match(op.name) if op.op_type == "const" else None
        if m:
            out[m.group(1)] = op.name
    return out


def tied_to(dec: torch.nn.Module) -> dict[str, str]:
    """Modules whose weight equals an earlier module's (tied lm_head / embeddings): coremltools stores such
    weights once, under the first module's name, so ``{lm_head: embed_tokens}``."""
    seen: list[tuple[str, torch.Tensor]] = []
    out = {}
    for fqn, mod in dec.named_modules():
        w = getattr(mod, "weight", None)
        if not isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)) or w is None:
            continue
        twin = next((f for f, t in seen if t.shape == w.shape and torch.equal(t, w)), None)
        if twin is None:
            seen.append((fqn, w))
        else:
            out[fqn] = twin
    return out


def fit_asym(weight: np.ndarray, block_sizes: list[int], nbits: int = 4):
    """Min–max asymmetric blocks with a float offset, as Core ML stores them: ``(data, scale, offset)`` with
    ``weight ≈ scale · (data − offset)`` (``constexpr_blockwise_shift_scale``), ``data`` unsigned ``nbits``-bit,
    ``scale`` and ``offset`` fp16 (the values the package holds: ``data`` is rounded against the fp16 ones).
    ``block_sizes`` per axis as coremltools gives them (0: the whole axis); None if a dimension is not a multiple
    of its block. A block whose values lie within a few percent of their magnitude gets a wider scale, so that
    its offset stays small enough for fp16 to hold within an eighth of a step."""
    from coremltools.converters.mil.mil import types

    qmax = 2**nbits - 1
    new_shape, scale_shape, kept = [], [], []
    for dim, block in zip(weight.shape, block_sizes):
        if block > 0:
            if dim % block:
                return None
            kept.append(len(new_shape))
            new_shape += [dim // block, block]
            scale_shape.append(dim // block)
        else:
            new_shape.append(dim)
            scale_shape.append(1)
    axes = tuple(i for i in range(len(new_shape)) if i not in kept)
    w = weight.astype(np.float32).reshape(new_shape)
    lo, hi = w.min(axis=axes, keepdims=True), w.max(axis=axes, keepdims=True)
    mag = np.maximum(np.abs(lo), np.abs(hi))
    scale = np.maximum((hi - lo) / qmax, mag / 256).astype(np.float16)  # |offset| <= 256: fp16 spacing 1/4
    scale[scale == 0] = 1  # an all-zero block (or one below fp16's range): data 0, offset 0
    s = scale.astype(np.float32)
    offset = (-lo / s).astype(np.float16)
    data = np.clip(np.round(w / s + offset.astype(np.float32)), 0, qmax)
    np_dtype = types.nptype_from_builtin(types.get_nbits_int_builtin_type(nbits, False))
    return (data.reshape(weight.shape).astype(np_dtype), scale.reshape(scale_shape),
            offset.reshape(scale_shape))


def _float_offset_pass(config):
    """coremltools' ``linear_quantize_weights`` pass (the const selection, block sizes and
    ``constexpr_blockwise_shift_scale`` rewrite are its own) with the fit replaced by :func:`fit_asym`."""
    from coremltools.optimize import _utils as optimize_utils
    from coremltools.optimize.coreml._quantization_passes import linear_quantize_weights

    class float_offset_quantize_weights(linear_quantize_weights):
        @classmethod
        def blockwise_compress_by_dtype(cls, original_data, dtype, mode, block_sizes):
            from coremltools.converters.mil.mil import types

            bits = (types.string_to_builtin(dtype) if isinstance(dtype, str) else dtype).get_bitwidth()
            fit = fit_asym(original_data, block_sizes, bits)
            if fit is None:
                return None
            data, scale, offset = fit
            return optimize_utils.QuantParams(data=data, scale=scale, offset=offset, nbits=np.uint8(bits))

    return float_offset_quantize_weights(config=config)


def _op_config(rule: Rule):
    import coremltools.optimize.coreml as cto

    if rule.scheme == "4w" and rule.method == "asym":  # fitted by _float_offset_pass; uint4 data
        return cto.OpLinearQuantizerConfig(mode="linear", dtype="uint4", granularity="per_block",
                                           block_size=rule.group_size, weight_threshold=0)
    if rule.method != "rtn":
        raise InputError(f"method {rule.method} has no Core ML form for scheme {rule.scheme}",
                         "use method rtn, or asym on a block-wise 4w rule, for the coreml backend")
    if rule.scheme in ("4w", "8w"):
        dtype = "int4" if rule.scheme == "4w" else "int8"
        # int4 with a per-block offset (Core ML stores it as int4 too): on the demo model mean KL 0.068 against
        # 0.099 for symmetric int4, for 2% more bytes. int8 is symmetric: its rounding error is already small.
        mode = "linear" if dtype == "int4" else "linear_symmetric"
        if rule.group_size:
            return cto.OpLinearQuantizerConfig(mode=mode, dtype=dtype, granularity="per_block",
                                               block_size=rule.group_size, weight_threshold=0)
        return cto.OpLinearQuantizerConfig(mode=mode, dtype=dtype, granularity="per_channel", weight_threshold=0)
    if rule.scheme == "pal4":
        if rule.group_size:
            return cto.OpPalettizerConfig(nbits=4, mode="kmeans", granularity="per_grouped_channel",
                                          group_size=rule.group_size, weight_threshold=0)
        return cto.OpPalettizerConfig(nbits=4, mode="kmeans", granularity="per_tensor", weight_threshold=0)
    raise InternalError(f"scheme {rule.scheme} has no Core ML compression", "this is a bug in the recipe table")


def describe_rule(rule: Rule) -> str:
    """What a rule becomes in the package, for the manifest."""
    group = rule.group_size
    if rule.scheme == "4w" and rule.method == "asym":
        return (f"{rule.pattern} → uint4 with an fp16 scale and an fp16 offset (min–max), per block of {group} "
                "input channels")
    what = {
        "4w": f"int4 with offset, per block of {group} input channels" if group else "int4 with offset, per channel",
        "8w": f"int8 symmetric, per block of {group} input channels" if group else "int8 symmetric, per channel",
        "pal4": f"4-bit palettization (k-means), a 16-entry table per {group} output channels" if group
        else "4-bit palettization (k-means), one table per tensor",
        "fp16": "fp16", "fp32": "fp16 (Core ML computes in fp16)",
    }[rule.scheme]
    return f"{rule.pattern} → {what}"


def _form(rule: Rule | None):
    """What a rule stores (its pattern aside): two rules of the same form may cover one tied table."""
    return rule and (rule.scheme, rule.group_size, rule.method)


def _kind(rule: Rule) -> str:
    """Which coremltools pass compresses a rule's weights."""
    if rule.scheme == "pal4":
        return "pal"
    return "asym" if rule.method == "asym" else "linear"


def compress(mlmodel, dec: torch.nn.Module, recipe: Recipe):
    """Apply the recipe's rules (first match wins) with coremltools; returns (model, {module: rule})."""
    import coremltools.optimize.coreml as cto

    chosen = {fqn: r for fqn, r in plan(dec, recipe).items() if r.scheme != "fp16"}
    if not chosen:
        return mlmodel, {}
    names = weight_ops(mlmodel)
    for fqn, twin in tied_to(dec).items():
        if fqn in chosen:
            if _form(chosen.get(twin)) != _form(chosen[fqn]):
                raise InputError(
                    f"recipe {recipe.name} quantizes {fqn} and {twin} differently, but their weights are tied "
                    "and Core ML stores them once", f"give {fqn} and {twin} the same rule for the coreml backend")
            del chosen[fqn]  # compressed once, through its twin
    by_key = {fqn.replace(".", "_"): fqn for fqn in chosen}
    missing = sorted(set(by_key) - set(names))
    if missing:
        raise InternalError(f"no Core ML weight found for {missing[:3]}",
                            "coremltools named the weights differently than expected; please report it")
    def configs(kind):
        return {names[k]: _op_config(chosen[f]) for k, f in by_key.items() if _kind(chosen[f]) == kind}

    linear, asym, pal = configs("linear"), configs("asym"), configs("pal")
    if linear:
        mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=linear))
    if asym:
        from coremltools.models.utils import _apply_graph_pass

        mlmodel = _apply_graph_pass(mlmodel, _float_offset_pass(cto.OptimizationConfig(op_name_configs=asym)))
    if pal:
        mlmodel = cto.palettize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=pal))
    return mlmodel, chosen


def describe(mlmodel, metadata: dict[str, str], summary: str) -> None:
    """Metadata an app reads without edgeslm: bos/eos, context length, tokenizer kind, versions."""
    mlmodel.short_description = summary
    mlmodel.author = "edgeslm"
    for key, value in metadata.items():
        mlmodel.user_defined_metadata[key] = value
    spec_in = {i.name: i for i in mlmodel._spec.description.input}
    docs = {"tokens": "token ids [1, L]; L tokens of prefill, or 1 to decode",
            "input_pos": "positions of those tokens in the KV cache [L] (0-based, contiguous)"}
    for name, doc in docs.items():
        if name in spec_in:
            mlmodel.input_description[name] = doc
    mlmodel.output_description["logits"] = "float32 logits [1, vocab] for the last input position"


def save(mlmodel, path: Path) -> None:
    mlmodel.save(str(path))
    # coremltools drops a debug-handle map for ExecuTorch beside the package contents; the package manifest
    # does not reference it and apps never read it.
    (path / "executorch_debug_handle_mapping.json").unlink(missing_ok=True)
