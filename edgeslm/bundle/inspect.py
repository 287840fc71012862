"""``edgeslm inspect``: what is inside each artifact of a bundle, read from the artifact itself (not the manifest).

Each backend's artifact format brings its reader (``Backend.artifact_format``, in edgeslm/backends/<name>/backend.py):
e.g. ONNX: inputs/outputs with symbolic shapes, opset, op counts, weight bytes by dtype; ExecuTorch: methods,
forward's inputs/outputs, the runner metadata baked in; Core ML: the package's spec read without loading it.
"""

from __future__ import annotations

from pathlib import Path

from edgeslm.manifest import read_manifest
from edgeslm.errors import InputError
from edgeslm.records import artifact_name, artifact_size
from edgeslm.backends import get_backend


def read_artifact(bundle: Path, backend: str, path: str) -> dict:
    """One artifact read by the reader of its backend's file format; any failure of the reader (garbage bytes, a
    truncated file, a reader library's own error) is the file's problem, said in one line."""
    try:
        fmt = get_backend(backend).artifact_format
    except InputError as e:
        raise InputError(f"{bundle / path}: {e.problem} in the manifest", e.hint) from None
    try:
        return fmt.read(bundle / path)
    except Exception as e:  # noqa: BLE001 — readers raise anything (DecodeError, RuntimeError, ValueError...)
        detail = f"{type(e).__name__}: {e}".strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(detail) > 200:
            detail = detail[:200] + "…"
        raise InputError(f"{bundle / path} cannot be read as {fmt.what} ({detail})",
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
