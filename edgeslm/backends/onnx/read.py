"""``edgeslm inspect`` of an ONNX model (and ``report``'s weight bytes when a manifest has none): onnx only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
from onnx import helper

FORMAT_NAME = "onnx"


def read_onnx(path: Path) -> dict:
    """``edgeslm inspect``: inputs/outputs with symbolic shapes, opset, op counts, weight bytes by dtype
    (initializers, external data included)."""
    model = onnx.load(str(path), load_external_data=False)
    g = model.graph

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    def dtype(elem: int) -> str:
        return helper.tensor_dtype_to_np_dtype(elem).name if elem != onnx.TensorProto.BFLOAT16 else "bfloat16"

    by_dtype: Counter = Counter()
    for init in g.initializer:
        n = 1
        for d in init.dims:
            n *= d
        np_dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        by_dtype[dtype(init.data_type)] += n * np_dtype.itemsize
    return {
        "format": FORMAT_NAME,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [{"name": v.name, "dtype": dtype(v.type.tensor_type.elem_type), "shape": shape(v)} for v in g.input],
        "outputs": [{"name": v.name, "dtype": dtype(v.type.tensor_type.elem_type), "shape": shape(v)}
                    for v in g.output],
        "ops": dict(Counter(n.op_type for n in g.node).most_common()),
        "weight_bytes_by_dtype": dict(by_dtype),
    }
