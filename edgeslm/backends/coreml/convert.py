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


def _op_config(rule: Rule):
    import coremltools.optimize.coreml as cto

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
    what = {
        "4w": f"int4 with offset, per block of {group} input channels" if group else "int4 with offset, per channel",
        "8w": f"int8 symmetric, per block of {group} input channels" if group else "int8 symmetric, per channel",
        "pal4": f"4-bit palettization (k-means), a 16-entry table per {group} output channels" if group
        else "4-bit palettization (k-means), one table per tensor",
        "fp16": "fp16", "fp32": "fp16 (Core ML computes in fp16)",
    }[rule.scheme]
    return f"{rule.pattern} → {what}"


def compress(mlmodel, dec: torch.nn.Module, recipe: Recipe):
    """Apply the recipe's rules (first match wins) with coremltools; returns (model, {module: rule})."""
    import coremltools.optimize.coreml as cto

    chosen = {fqn: r for fqn, r in plan(dec, recipe).items() if r.scheme != "fp16"}
    if not chosen:
        return mlmodel, {}
    names = weight_ops(mlmodel)
    for fqn, twin in tied_to(dec).items():
        if fqn in chosen:
            if chosen.get(twin) != chosen[fqn]:
                raise InputError(
                    f"recipe {recipe.name} quantizes {fqn} and {twin} differently, but their weights are tied "
                    "and Core ML stores them once", f"give {fqn} and {twin} the same rule for the coreml backend")
            del chosen[fqn]  # compressed once, through its twin
    by_key = {fqn.replace(".", "_"): fqn for fqn in chosen}
    missing = sorted(set(by_key) - set(names))
    if missing:
        raise InternalError(f"no Core ML weight found for {missing[:3]}",
                            "coremltools named the weights differently than expected; please report it")
    linear = {names[k]: _op_config(chosen[f]) for k, f in by_key.items() if chosen[f].scheme != "pal4"}
    pal = {names[k]: _op_config(chosen[f]) for k, f in by_key.items() if chosen[f].scheme == "pal4"}
    if linear:
        mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(op_name_configs=linear))
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
