"""Apple Neural Engine (ANE) readiness of a saved Core ML package, judged from its structure alone.

Core ML cannot run (or plan) a model on Linux, so this reads the package's spec (the ML Program's ops, the
interface, the states) and applies what is known to keep work off the ANE. Each check records what it found and
why it matters, with a source; ``documented`` says whether Apple documents the rule or it is observed by the
community (issues, reference code). What the check cannot see: Apple publishes no per-op list of what the ANE
runs, so the real placement is only known on a Mac, from ``MLComputePlan`` (scripts/coreml-compute-plan.py, run
by the macOS workflow).

``ready`` is False when a *blocking* check fails: something that puts the model's main compute (the decoder
layers) off the ANE or keeps Core ML from compiling it for the ANE. Non-blocking findings (a small fp32 island,
integer index arithmetic, weight-compression choices) are reported with ``ok=True`` and ``blocking=False``: they
split the plan or cost speed, but do not by themselves keep the layers off the ANE.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Sources (cited per check).
SRC_TYPED = "https://apple.github.io/coremltools/docs-guides/source/typed-execution.html"
SRC_FLEX = "https://apple.github.io/coremltools/docs-guides/source/flexible-inputs.html"
SRC_FAQ_FLEX = "https://apple.github.io/coremltools/docs-guides/source/faqs.html#neural-engine-with-flexible-input-shapes"
SRC_STATEFUL = "https://apple.github.io/coremltools/docs-guides/source/stateful-models.html"
SRC_LLAMA = "https://machinelearning.apple.com/research/core-ml-on-device-llama"
SRC_ANE_TRANSFORMERS = "https://machinelearning.apple.com/research/neural-engine-transformers"
SRC_QUANT_PERF = "https://apple.github.io/coremltools/docs-guides/source/opt-quantization-perf.html"
SRC_OPT_OVERVIEW = "https://apple.github.io/coremltools/docs-guides/source/opt-overview.html"
SRC_STATE_32 = "https://github.com/apple/coremltools/issues/2631"
SRC_SLICE_UPDATE_ANE = "https://github.com/Anemll/Anemll/issues/27"
SRC_ET_STATIC_LLAMA = "https://github.com/pytorch/executorch/pull/8436"

SCATTER_OPS = frozenset({"scatter", "scatter_nd", "scatter_along_axis"})
# Ops with no ANE path that a decoder could plausibly contain: community-observed (Apple publishes no list).
# Control flow and dynamic-shape ops force CPU; top-k / sorting and non-maximum suppression run on CPU/GPU.
OFF_ANE_OPS = {
    "while_loop": "control flow", "cond": "control flow", "non_zero": "data-dependent output shape",
    "non_maximum_suppression": "runs on CPU", "argsort": "sorting", "topk": "sorting",
    "random_bernoulli": "random", "random_categorical": "random", "random_normal": "random",
    "random_uniform": "random", "band_part": "dynamic mask op",
}
COMPRESSION_OPS = {
    "constexpr_blockwise_shift_scale": "linear quantization (iOS18)",
    "constexpr_lut_to_dense": "palettization",
    "constexpr_sparse_to_dense": "pruning (sparse)",
    "constexpr_affine_dequantize": "linear quantization (iOS16/17)",
    "constexpr_cast": "fp16 storage of fp32 const",
}
SHAPE_OPS = frozenset({"shape", "const", "read_state", "write_state", "coreml_update_state"})
MAX_RANK = 5
MAX_DIM = 16384  # community-observed ANE limit on a single dimension; larger tensors are tiled or rejected


@dataclass(frozen=True)
class Check:
    check: str
    ok: bool
    found: str
    why: str
    source: str
    blocking: bool = True
    documented: bool = True


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reasons: tuple[Check, ...] = field(default_factory=tuple)
    op_counts: dict = field(default_factory=dict)

    def failed(self) -> list[Check]:
        return [c for c in self.reasons if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"ready": self.ready, "reasons": [asdict(c) for c in self.reasons], "op_counts": self.op_counts}

    def summary(self) -> str:
        head = "ANE-ready: yes" if self.ready else "ANE-ready: no"
        lines = [head] + [f"  [{'ok' if c.ok else 'FAIL'}{'' if c.blocking else ', note'}] {c.check}: {c.found}"
                          for c in self.reasons]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- spec reading

def _load_spec(spec_or_package):
    if hasattr(spec_or_package, "mlProgram") and hasattr(spec_or_package, "description"):
        return spec_or_package
    if hasattr(spec_or_package, "get_spec"):
        return spec_or_package.get_spec()
    import coremltools as ct

    return ct.models.MLModel(str(Path(spec_or_package)), skip_model_load=True).get_spec()


def _dtype(vtype) -> str | None:
    from coremltools.proto import MIL_pb2

    if vtype.HasField("tensorType"):
        name = MIL_pb2.DataType.Name(vtype.tensorType.dataType).lower()
        return {"float32": "fp32", "float16": "fp16"}.get(name, name)
    if vtype.HasField("stateType"):
        return _dtype(vtype.stateType.wrappedType)
    return None


def _shape(vtype) -> list[int | None]:
    t = vtype.stateType.wrappedType.tensorType if vtype.HasField("stateType") else vtype.tensorType
    return [d.constant.size if d.HasField("constant") else None for d in t.dimensions]


@dataclass
class _Op:
    type: str
    name: str
    inputs: dict[str, list[str]]  # argument → names of the values it binds (consts inline are skipped)
    outputs: list[tuple[str, str | None, list[int | None]]]  # (name, dtype, shape)
    function: str
    raw: Any


def _ops(spec) -> list[_Op]:
    out = []

    def walk(block, fn):
        for op in block.operations:
            ins = {k: [b.name for b in arg.arguments if b.name] for k, arg in op.inputs.items()}
            outs = [(o.name, _dtype(o.type), _shape(o.type) if _dtype(o.type) else []) for o in op.outputs]
            name = outs[0][0] if outs else op.type
            out.append(_Op(op.type, name, ins, outs, fn, op))
            for b in op.blocks:
                walk(b, fn)

    for fn_name, fn in spec.mlProgram.functions.items():
        block = fn.block_specializations[fn.opset] if fn.opset in fn.block_specializations \
            else next(iter(fn.block_specializations.values()))
        walk(block, fn_name)
    return out


def _trig_island(ops: list[_Op]) -> set[str]:
    """Names of the fp32 ops that only exist to compute rope angles: cos/sin and the ops whose every consumer,
    within 4 steps, ends in cos/sin (edgeslm's convert keeps exactly these in fp32, see ``_feeds_trig``)."""
    consumers: dict[str, list[_Op]] = {}
    for op in ops:
        for names in op.inputs.values():
            for n in names:
                consumers.setdefault(n, []).append(op)

    def feeds_trig(op: _Op, depth: int) -> bool:
        if op.type in ("cos", "sin"):
            return True
        kids = [c for o in op.outputs for c in consumers.get(o[0], [])]
        return depth > 0 and bool(kids) and all(feeds_trig(c, depth - 1) for c in kids)

    return {op.name for op in ops if feeds_trig(op, 4)}


# ----------------------------------------------------------------------------------------------- the checks

def ane_readiness(spec_or_package) -> Readiness:
    """ANE readiness of a Core ML package (path to the .mlpackage, an ``MLModel``, or its ``Model_pb2`` spec)."""
    spec = _load_spec(spec_or_package)
    if not spec.HasField("mlProgram"):
        return Readiness(False, (Check("model_type", False, f"not an ML Program ({spec.WhichOneof('Type')})",
                                       "this check reads ML Programs only", SRC_TYPED),))
    ops = _ops(spec)
    counts = Counter(op.type for op in ops)
    compute = [op for op in ops if op.type not in SHAPE_OPS and not op.type.startswith("constexpr_")]
    reasons: list[Check] = []

    # 1. KV-cache writes: slice_update (ok) vs scatter family (not ok).
    scatters = [op for op in ops if op.type in SCATTER_OPS]
    updates = counts.get("slice_update", 0)
    state_writes = counts.get("write_state", 0) + counts.get("coreml_update_state", 0)
    if scatters:
        kinds = ", ".join(f"{k} ×{v}" for k, v in sorted(Counter(o.type for o in scatters).items()))
        reasons.append(Check(
            "kv_cache_write", False, f"{kinds} (e.g. {scatters[0].name}); slice_update ×{updates}",
            "scatter writes index a runtime tensor of positions; they are not placed on the ANE (each scatter and "
            "the state update it feeds falls back to CPU/GPU, splitting every layer). Apple's stateful LLM recipe "
            "writes the cache with a slice assignment, which coremltools lowers to slice_update.",
            f"{SRC_LLAMA} ; {SRC_STATEFUL} ; {SRC_SLICE_UPDATE_ANE}", documented=False))
    else:
        reasons.append(Check(
            "kv_cache_write", True,
            f"slice_update ×{updates}, state writes ×{state_writes}, no scatter ops",
            "cache writes are contiguous slice updates (the form Apple's stateful Llama recipe uses)",
            f"{SRC_LLAMA} ; {SRC_STATEFUL}", documented=False))

    # 2. Compute dtype: fp16 everywhere except (non-blocking) the rope-angle island.
    island = _trig_island(ops)
    fp32 = [op for op in compute if any(o[1] == "fp32" for o in op.outputs)]
    fp32_main = [op for op in fp32 if op.name not in island and op.type != "cast"]
    fp32_island = [op for op in fp32 if op.name in island]
    fp32_casts = [op for op in fp32 if op.type == "cast" and op.name not in island]
    if fp32_main:
        kinds = ", ".join(f"{k} ×{v}" for k, v in sorted(Counter(o.type for o in fp32_main).items()))
        reasons.append(Check(
            "compute_dtype", False, f"fp32 compute outside the rope angles: {kinds} (e.g. {fp32_main[0].name})",
            "an ML Program's types are the minimum precision: fp32 ops never run on the Neural Engine (\"Only the "
            "NE is barred ... when a model is typed with float 32 precision\"); they run on CPU/GPU",
            SRC_TYPED))
    else:
        reasons.append(Check(
            "compute_dtype", True, f"fp16 compute; fp32 only in the rope angles ({len(fp32_island)} ops: "
            f"{', '.join(sorted({o.type for o in fp32_island})) or 'none'}) and {len(fp32_casts)} casts",
            "all layer compute is fp16, which the ANE runs", SRC_TYPED))
    if fp32_island:
        reasons.append(Check(
            "rope_fp32_island", True,
            f"{len(fp32_island)} fp32 ops compute the rope angles (position × inv_freq, cos, sin)",
            "these cannot run on the ANE (fp32 is barred from it), so Core ML places this small island, which "
            "depends only on input_pos, on CPU/GPU and hands cos/sin to the ANE partition as fp16: one extra "
            "partition boundary per prediction, not the layers leaving the ANE. Kept deliberately: fp16 cannot "
            "hold position × frequency precisely past a few hundred positions. Confirm the split with "
            "MLComputePlan on a Mac.",
            SRC_TYPED, blocking=False))

    # 3. States: fp16, rank, last-axis size.
    states = list(spec.description.state)
    bad_states = []
    for s in states:
        a = s.type.stateType.arrayType
        shape = list(a.shape)
        from coremltools.proto import FeatureTypes_pb2 as ft

        dt = ft.ArrayFeatureType.ArrayDataType.Name(a.dataType)
        if dt != "FLOAT16" or (shape and shape[-1] % 32) or len(shape) > MAX_RANK or max(shape or [0]) > MAX_DIM:
            bad_states.append(f"{s.name} {dt.lower()} {shape}")
    if states:
        a0 = states[0].type.stateType.arrayType
        reasons.append(Check(
            "state_shapes", not bad_states,
            (f"{len(states)} states, e.g. {states[0].name} {list(a0.shape)}" if not bad_states
             else f"{len(bad_states)} of {len(states)} states off-rule: {'; '.join(bad_states[:3])}"),
            "states must be fp16 (Core ML only supports fp16 states); stateful models have been observed to fail "
            "on the ANE when a state's last dimension is not a multiple of 32 (256 works, 270 fails); the ANE "
            "pads the last axis to 64 bytes (32 fp16 values), so other sizes also waste memory",
            f"{SRC_STATEFUL} ; {SRC_STATE_32} ; {SRC_ANE_TRANSFORMERS}", documented=False))

    # 4. Flexible input shapes: range vs enumerated vs fixed.
    ranged, enumerated = [], []
    for i in spec.description.input:
        if not i.type.HasField("multiArrayType"):
            continue
        m = i.type.multiArrayType
        if m.HasField("shapeRange") and any(r.lowerBound != r.upperBound for r in m.shapeRange.sizeRanges):
            ranged.append(f"{i.name} " + "×".join(
                f"{r.lowerBound}..{r.upperBound}" if r.lowerBound != r.upperBound else str(r.lowerBound)
                for r in m.shapeRange.sizeRanges))
        elif m.HasField("enumeratedShapes") and len(m.enumeratedShapes.shapes) > 1:
            enumerated.append(f"{i.name} ({len(m.enumeratedShapes.shapes)} shapes)")
    dynamic_ops = counts.get("shape", 0)
    if ranged:
        reasons.append(Check(
            "input_shapes", False, f"range-flexible inputs: {', '.join(ranged)}; {dynamic_ops} runtime shape ops",
            "a range-flexible (RangeDim) model is specialized for the ANE only if the app loads it with the "
            "reshapeFrequency=Infrequent hint (iOS 17.4+), and dynamic reshapes derived from the runtime length "
            "are not supported on the ANE; for ANE use EnumeratedShapes (≤128 shapes) or fixed shapes (e.g. one "
            "function per shape: prefill length N and decode length 1), as ANE-targeted LLM exports do",
            f"{SRC_FLEX} ; {SRC_FAQ_FLEX} ; {SRC_ET_STATIC_LLAMA}"))
    else:
        reasons.append(Check(
            "input_shapes", True,
            f"{'enumerated: ' + ', '.join(enumerated) if enumerated else 'fixed shapes'}",
            "fixed or enumerated shapes can be compiled for the ANE ahead of time", f"{SRC_FLEX} ; {SRC_FAQ_FLEX}"))

    # 5. Ops with no ANE path (community-observed; Apple publishes no per-op ANE list).
    off = sorted({op.type for op in ops if op.type in OFF_ANE_OPS})
    reasons.append(Check(
        "unsupported_ops", not off,
        ", ".join(f"{t} ({OFF_ANE_OPS[t]}) ×{counts[t]}" for t in off) if off else "none of the known CPU-only ops",
        "control flow, data-dependent shapes, sorting and random ops are not run by the ANE; Apple documents no "
        "per-op list, so the real placement is MLComputePlan's on a Mac",
        f"{SRC_FAQ_FLEX} ; {SRC_ANE_TRANSFORMERS}", documented=False))

    # 6. Tensor rank and dimension size.
    too_high = [op for op in compute for o in op.outputs if len(o[2]) > MAX_RANK]
    too_big = [op for op in compute for o in op.outputs if any(d is not None and d > MAX_DIM for d in o[2])]
    reasons.append(Check(
        "tensor_rank", not too_high,
        f"max rank {max((len(o[2]) for op in compute for o in op.outputs), default=0)}"
        + (f"; rank > {MAX_RANK}: {', '.join(sorted({o.type for o in too_high}))}" if too_high else ""),
        "the ANE works on tensors of rank ≤ 5 (its native layout is 4-D channels-first, (B, C, 1, S))",
        SRC_ANE_TRANSFORMERS, documented=False))
    reasons.append(Check(
        "dimension_size", True,
        (f"{len(too_big)} ops with a dimension > {MAX_DIM}: "
         + ", ".join(sorted({f'{o.type} {o.outputs[0][2]}' for o in too_big})[:3])) if too_big
        else f"no dimension > {MAX_DIM}",
        "a dimension over 16384 (typically the vocabulary axis of the lm_head/logits) is reported by the "
        "community to be split or placed off the ANE; Core ML tiles large matmuls, so this is a speed note",
        SRC_ANE_TRANSFORMERS, blocking=False, documented=False))

    # 7. Integer index arithmetic (masks, positions): not ANE work.
    int_ops = [op for op in compute if op.type not in ("gather", "cast")
               and op.outputs and all(o[1] in ("int32", "int16", "bool", "uint16") for o in op.outputs)]
    if int_ops:
        reasons.append(Check(
            "integer_ops", True,
            f"{len(int_ops)} integer/bool ops ({', '.join(sorted({o.type for o in int_ops}))})",
            "the ANE computes in fp16/int8: position and mask arithmetic in int32/bool is placed on CPU. Small, "
            "but each is a partition boundary; the ANE-oriented recipe passes the causal mask as an fp16 input",
            f"{SRC_TYPED} ; {SRC_ET_STATIC_LLAMA}", blocking=False, documented=False))

    # 8. Weight compression: kinds and granularity.
    comp = Counter(op.type for op in ops if op.type in COMPRESSION_OPS)
    per_block = 0
    for op in ops:
        if op.type == "constexpr_blockwise_shift_scale":
            scale = next((o for o in ops if o.outputs and o.outputs[0][0] in op.inputs.get("scale", [])), None)
            shape = scale.outputs[0][2] if scale else []
            if len(shape) >= 2 and (shape[-1] or 0) > 1:
                per_block += 1
    found = ", ".join(f"{COMPRESSION_OPS[k]} ({k}) ×{v}" for k, v in sorted(comp.items())) or "uncompressed (fp16)"
    if per_block:
        found += f"; {per_block} per-block scaled"
    reasons.append(Check(
        "weight_compression", True, found,
        "compressed weights are decompressed to fp16 for compute (just in time on the ANE from iOS17 for "
        "palettized weights); palettization typically works best on the ANE, and for linear quantization on the "
        "ANE per-channel scales are recommended over per-block (per-block int4 targets the GPU)",
        f"{SRC_OPT_OVERVIEW} ; {SRC_QUANT_PERF}", blocking=False))

    ready = all(c.ok for c in reasons if c.blocking)
    return Readiness(ready, tuple(reasons), dict(sorted(counts.items())))
