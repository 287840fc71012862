"""Read a saved .mlpackage back without executing it (works on Linux): interface, states, metadata, ops, weight
bits, and the dense weights Core ML will compute with.

Everything here comes from the files on disk (the package's spec and weight blob), not from the in-memory model
that wrote them, so it checks what an app will actually load.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgeslm.backends.coreml.convert import DEPLOYMENT

# Core ML specification version of each minimum deployment target (coremltools' _SPECIFICATION_VERSION_*).
SPEC_VERSIONS = {"iOS16": 7, "iOS17": 8, "iOS18": 9}
_BITS = {"INT4": 4, "UINT4": 4, "INT8": 8, "UINT8": 8, "FLOAT16": 16, "FLOAT32": 32, "INT32": 32, "UINT1": 1,
         "UINT2": 2, "UINT3": 3, "UINT6": 6, "BOOL": 8, "INT16": 16, "UINT16": 16}


def load_spec(package: Path):
    import coremltools as ct

    model = ct.models.MLModel(str(package), skip_model_load=True)
    return model, model.get_spec()


def _array(t) -> dict:
    from coremltools.proto import FeatureTypes_pb2 as ft

    a = t.multiArrayType if t.HasField("multiArrayType") else t.stateType.arrayType
    dtype = ft.ArrayFeatureType.ArrayDataType.Name(a.dataType).lower()
    out = {"dtype": dtype, "shape": list(a.shape)}
    if t.HasField("multiArrayType") and a.shapeRange.sizeRanges:
        out["range"] = [[r.lowerBound, r.upperBound] for r in a.shapeRange.sizeRanges]
    return out


def _tensor_bytes(vtype) -> tuple[str, int]:
    from coremltools.proto import MIL_pb2

    tt = vtype.tensorType
    name = MIL_pb2.DataType.Name(tt.dataType)
    n = 1
    for d in tt.dimensions:
        n *= d.constant.size
    return name, n * _BITS.get(name, 32) // 8


def read_package(package: Path) -> dict:
    """The package's interface and contents, as ``edgeslm inspect`` and the structure check see them."""
    _, spec = load_spec(package)
    d = spec.description
    from coremltools.proto import MIL_pb2

    ops: Counter = Counter()
    fp32_ops: Counter = Counter()
    weights: Counter = Counter()
    compressed: Counter = Counter()
    functions = list(spec.mlProgram.functions)
    for fname in functions:
        f = spec.mlProgram.functions[fname]
        for op in f.block_specializations[f.opset].operations:
            ops[op.type] += 1
            if op.type not in ("const", "cast") and any(
                    o.type.tensorType.dataType == MIL_pb2.FLOAT32 for o in op.outputs):
                fp32_ops[op.type] += 1
            if op.type.startswith("constexpr_"):
                compressed[op.type] += 1
            # weights live in the blob file, either as a const's value or as a constexpr op's inputs
            values = [op.attributes["val"]] if op.type == "const" and "val" in op.attributes else []
            values += [a.value for arg in op.inputs.values() for a in arg.arguments if a.HasField("value")]
            for v in values:
                if v.HasField("blobFileValue"):
                    dtype, nbytes = _tensor_bytes(v.type)
                    weights[dtype.lower()] += nbytes
    return {
        "format": "coreml-mlprogram",
        "specification_version": spec.specificationVersion,
        "minimum_deployment_target": next((k for k, v in SPEC_VERSIONS.items() if v == spec.specificationVersion),
                                          f"spec {spec.specificationVersion}"),
        "functions": functions,
        "inputs": [{"name": i.name, **_array(i.type)} for i in d.input],
        "outputs": [{"name": o.name, **_array(o.type)} for o in d.output],
        "states": [{"name": s.name, **_array(s.type)} for s in d.state],
        "metadata": dict(d.metadata.userDefined),
        "ops": dict(ops.most_common()),
        "compressed_weight_ops": dict(compressed),
        "fp32_compute_ops": dict(fp32_ops),  # everything else computes in fp16
        # heaviest first: the blob values are gathered through protobuf maps, whose order differs between runs
        "weight_bytes_by_dtype": dict(sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def package_weights(package: Path) -> dict[str, np.ndarray]:
    """Dense weights by const name (``p_layers_0_mlp_up_proj_weight``), decompressed from the saved blob exactly
    as Core ML does at load time (int4/int8 scale, lookup tables)."""
    from coremltools.converters.mil.frontend.milproto.load import load as milproto_load
    from coremltools.models.utils import _convert_model_spec_to_pymil_prog

    model, spec = load_spec(package)
    prog = _convert_model_spec_to_pymil_prog(model, spec.specificationVersion, milproto_load)
    out = {}
    for op in prog.functions["main"].operations:
        if op.op_type == "const" and op.outputs[0].val is not None:
            val = op.outputs[0].val
        elif op.op_type.startswith("constexpr_"):
            val = op.materialized_val_inference()
        else:
            continue
        name = op.outputs[0].name
        for suffix in ("_quantized", "_palettized"):
            name = name.removesuffix(suffix)
        out[name.removesuffix("_to_fp16")] = np.asarray(val)
    return out


def structure_checks(facts: dict, expected: dict) -> list[dict]:
    """Compare what the saved package declares with what the export intended; one entry per fact."""

    def check(name, want, found, ok=None):
        return {"check": name, "expected": want, "found": found, "passed": bool(want == found if ok is None else ok)}

    inputs = {i["name"]: i for i in facts["inputs"]}
    ctx, layers = expected["context_length"], expected["num_layers"]
    states = facts["states"]
    cache_shape = [1, ctx, expected["num_kv_heads"], expected["head_dim"]]
    by_dtype = facts["weight_bytes_by_dtype"]
    heaviest = max(by_dtype, key=by_dtype.get) if by_dtype else None
    return [
        check("minimum deployment target", DEPLOYMENT, facts["minimum_deployment_target"]),
        check("inputs", ["tokens", "input_pos"], list(inputs)),
        *([check("tokens shape range (prefill and decode)", [[1, 1], [1, ctx]], inputs.get("tokens", {}).get("range")),
           check("input_pos shape range", [[1, ctx]], inputs.get("input_pos", {}).get("range"))]
          if not expected.get("tokens_per_call") else
          [check("tokens shape (fixed, tokens per prediction)", [1, expected["tokens_per_call"]],
                 inputs.get("tokens", {}).get("shape"), ok=inputs.get("tokens", {}).get("range") is None
                 and inputs.get("tokens", {}).get("shape") == [1, expected["tokens_per_call"]]),
           check("input_pos shape (fixed)", [expected["tokens_per_call"]], inputs.get("input_pos", {}).get("shape"),
                 ok=inputs.get("input_pos", {}).get("range") is None
                 and inputs.get("input_pos", {}).get("shape") == [expected["tokens_per_call"]])]),
        check("outputs", [{"name": "logits", "dtype": "float32", "shape": [1, expected["vocab_size"]]}],
              [{k: o[k] for k in ("name", "dtype", "shape")} for o in facts["outputs"]]),
        check("KV cache states (2 per layer)", 2 * layers, len(states)),
        check("state shape and dtype", [cache_shape, "float16"],
              [states[0]["shape"], states[0]["dtype"]] if states else None,
              ok=bool(states) and all(s["shape"] == cache_shape and s["dtype"] == "float16" for s in states)),
        check("compressed weight ops", expected["compressed_ops"], facts["compressed_weight_ops"]),
        check("dtype holding most weight bytes", expected["weight_dtype"], heaviest),
        check("rope angles computed in fp32 (cos, sin)", ["cos", "sin"],
              sorted(t for t in facts["fp32_compute_ops"] if t in ("cos", "sin"))),
        check("metadata", sorted(expected["metadata"]),
              sorted(k for k in facts["metadata"] if k in expected["metadata"]
                     and facts["metadata"][k] == expected["metadata"][k])),
    ]
