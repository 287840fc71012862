"""``edgeslm inspect``: what is inside each artifact of a bundle, read from the artifact itself (not the manifest).

ONNX: inputs/outputs with symbolic shapes, opset, op counts, weight bytes by dtype (initializers, external data
included). ExecuTorch: methods, forward's inputs/outputs (upper-bound shapes), the runner metadata baked in.
Core ML: the package's spec read without loading it (inputs with shape ranges, states, deployment target,
ops, compressed-weight ops, weight bytes by dtype, metadata).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeslm.bundle.manifest import read_manifest
from edgeslm.errors import InputError
from edgeslm.records import artifact_name, artifact_size


def _onnx(path: Path) -> dict:
    import onnx
    from onnx import helper

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
        "format": "onnx",
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [{"name": v.name, "dtype": dtype(v.type.tensor_type.elem_type), "shape": shape(v)} for v in g.input],
        "outputs": [{"name": v.name, "dtype": dtype(v.type.tensor_type.elem_type), "shape": shape(v)}
                    for v in g.output],
        "ops": dict(Counter(n.op_type for n in g.node).most_common()),
        "weight_bytes_by_dtype": dict(by_dtype),
    }


def _pte(path: Path) -> dict:
    from edgeslm.backends.executorch.runtime import PteModel

    pte = PteModel(path)
    prog, meta = pte.program, pte.program.metadata("forward")

    names = {3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool", 15: "bfloat16"}

    def info(t):  # shapes are the upper bounds the program was planned for
        return {"dtype": names.get(int(t.dtype()), str(t.dtype())), "shape": list(t.sizes())}

    constants = {}
    for name in sorted(prog.method_names - {"forward"}):
        value = pte.metadata(name)
        constants[name] = value.tolist() if hasattr(value, "tolist") else value
    return {
        "format": "executorch",
        "methods": sorted(prog.method_names),
        "inputs": [info(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
        "outputs": [info(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
        "runner_metadata": constants,
    }


def _mlpackage(path: Path) -> dict:
    from edgeslm.backends.coreml.package import read_package

    return read_package(path)


READERS = {"onnx": _onnx, "executorch": _pte, "coreml": _mlpackage}  # by file format (a backend's FORMAT)
WHAT = {"onnx": "an ONNX model", "executorch": "an ExecuTorch program", "coreml": "a Core ML package"}


def read_artifact(bundle: Path, backend: str, path: str) -> dict:
    """One artifact read by the reader of its backend's file format; any failure of the reader (garbage bytes, a
    truncated file, a reader library's own error) is the file's problem, said in one line."""
    from edgeslm.backends import get_backend

    try:
        fmt = get_backend(backend).FORMAT
    except InputError as e:
        raise InputError(f"{bundle / path}: {e.problem} in the manifest", e.hint) from None
    try:
        return READERS[fmt](bundle / path)
    except Exception as e:  # noqa: BLE001 — readers raise anything (DecodeError, RuntimeError, ValueError...)
        detail = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(detail) > 200:
            detail = detail[:200] + "…"
        raise InputError(f"{bundle / path} cannot be read as {WHAT[fmt]} ({detail})",
                         f"run `edgeslm verify {bundle}`; re-export the bundle") from None


def inspect_bundle(bundle: Path) -> list[dict]:
    m = read_manifest(bundle)
    out = []
    for a in m["artifacts"]:
        total = artifact_size(a)
        path = artifact_name(a)  # a Core ML package is a folder
        out.append({"file": path, "backend": a["backend"], "recipe": a["recipe"], "bytes": total,
                    "parity": a["parity"], **read_artifact(bundle, a["backend"], path)})
    return out
