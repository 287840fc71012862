"""Backend registry: each backend lowers the decoder to its artifact and checks it in its real runtime.

A backend is a :class:`~edgeslm.backends.protocol.Backend` subclass in ``edgeslm/backends/<name>/backend.py``;
adding one means that folder and one line in :data:`REGISTRY`. Nothing else in edgeslm names a backend: the
pipeline, target files, the latency model, preflight, ``inspect``, reports and the CLI's help ask the registry.

:func:`get_backend` hands out the backend instance; its ``generate`` first checks the artifact's files against the
manifest (:func:`edgeslm.integrity.check_artifact`): one check for every backend, so no runtime ever loads
bytes the manifest does not vouch for. This module and the backend modules import nothing heavy (the bare-runtime
RSS reference imports them before its baseline).
"""

from __future__ import annotations

import importlib
from functools import cache

from edgeslm.backends.protocol import Backend
from edgeslm.errors import InputError
from edgeslm.quant.recipes import ALIASES

# name → "module:Class", in the order help texts and reports list them
REGISTRY: dict[str, str] = {
    "executorch": "edgeslm.backends.executorch.backend:ExecuTorch",
    "onnx": "edgeslm.backends.onnx.backend:Onnx",
    "coreml": "edgeslm.backends.coreml.backend:CoreML",
    "onnx-qnn": "edgeslm.backends.onnx_qnn.backend:OnnxQnn",  # QDQ ONNX for the QNN EP (Qualcomm NPU)
    "executorch-qnn": "edgeslm.backends.executorch_qnn.backend:ExecuTorchQnn",  # ExecuTorch Qualcomm (QNN SDK)
}


def backend_names() -> tuple[str, ...]:
    """Every registered backend's name."""
    return tuple(REGISTRY)


@cache
def _load(spec: str) -> Backend:
    # The registry's lazy point: a backend class is imported by name, only when asked for.
    module, _, cls_name = spec.partition(":")
    cls = vars(importlib.import_module(module))[cls_name]
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise TypeError(f"{spec} is not a Backend subclass")
    return cls()


def get_backend(name: str) -> Backend:
    if name not in REGISTRY:
        raise InputError(f"unknown backend {name!r}", f"this edgeslm knows {', '.join(backend_names())}; a bundle "
                         "written by a newer edgeslm may need an upgrade (pip install -U edgeslm)")
    backend = _load(REGISTRY[name])
    if backend.name != name:
        raise TypeError(f"registry entry {name!r} names a backend called {backend.name!r}")
    return backend


def all_backends() -> list[Backend]:
    return [get_backend(n) for n in REGISTRY]


def unavailable_here(name: str) -> str | None:
    """Why backend ``name``'s runtime cannot run on this machine, or None if it can."""
    return get_backend(name).unavailable_here()


def not_built_here(name: str) -> str | None:
    """Why backend ``name`` cannot write its artifact on this machine (it then reports its stages and lists the
    artifact as not built), or None if it can."""
    return get_backend(name).not_built_here()


def option_sections() -> dict[str, Backend]:
    """Target-file option sections → the backend whose parser reads it (backends sharing a section share its
    parser: the first registered one parses)."""
    out: dict[str, Backend] = {}
    for b in all_backends():
        if b.option_section is not None:
            out.setdefault(b.option_section, b)
    return out


def format_of(name: str):
    """The artifact format (reader, description) of backend ``name``'s artifacts."""
    return get_backend(name).artifact_format


def recipes_help() -> str:
    """``fp32, 8da4w, int8w (executorch); ...``: each backend's recipes, aliases named (CLI help)."""
    def show(r: str) -> str:
        aliases = [a for a, n in ALIASES.items() if n == r]
        return f"{r} (alias {', '.join(aliases)})" if aliases else r

    return "; ".join(f"{', '.join(map(show, b.recipes))} ({b.name})" for b in all_backends())
