"""Backend registry: each backend lowers the decoder to its artifact and checks it in its real runtime.

A backend module has ``RECIPES`` (names it supports), ``RUNTIME`` (what runs the artifact here),
``export(job, recipe, tmp) -> manifest entry`` and ``generate(bundle, entry, prompt, ...)``. Adding a backend
means one module and one line here; the pipeline never branches on backend names.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_MODULES = {
    "executorch": "edgeslm.backends.executorch.backend",
    "onnx": "edgeslm.backends.onnx.backend",
    "coreml": "edgeslm.backends.coreml.backend",
}
BACKEND_NAMES = tuple(_MODULES)


def get_backend(name: str) -> ModuleType:
    return importlib.import_module(_MODULES[name])


def unavailable_here(name: str) -> str | None:
    """Why backend ``name``'s runtime cannot run on this machine, or None if it can (backends whose runtime
    runs everywhere define no ``unavailable_here``)."""
    check = getattr(get_backend(name), "unavailable_here", None)
    return check() if check else None
