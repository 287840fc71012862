"""Backend registry: each backend lowers the decoder to its artifact and checks it in its real runtime.

A backend module has ``RECIPES`` (names it supports), ``RUNTIME`` (what runs the artifact here),
``export(job, recipe, tmp) -> manifest entry`` and ``generate(bundle, entry, prompt, ...)``. Adding a backend
means one module and one line here; the pipeline never branches on backend names.

:func:`get_backend` hands out the module behind a thin :class:`Backend` wrapper whose ``generate`` first checks
the artifact's files against the manifest (:func:`edgeslm.bundle.integrity.check_artifact`): one check for
every backend, so no runtime ever loads bytes the manifest does not vouch for.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

from edgeslm.errors import InputError

_MODULES = {
    "executorch": "edgeslm.backends.executorch.backend",
    "onnx": "edgeslm.backends.onnx.backend",
    "coreml": "edgeslm.backends.coreml.backend",
    "onnx-qnn": "edgeslm.backends.onnx_qnn.backend",  # QDQ ONNX for the QNN EP (Qualcomm NPU)
    "executorch-qnn": "edgeslm.backends.executorch_qnn.backend",  # ExecuTorch Qualcomm backend (needs QNN SDK)
}
BACKEND_NAMES = tuple(_MODULES)


class Backend:
    """A backend module (every attribute is the module's), with ``generate`` going through the integrity check."""

    def __init__(self, module: ModuleType):
        self.module = module

    def __getattr__(self, name: str):
        if name == "module":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.module, name)

    @property
    def __name__(self) -> str:  # the module's (the timing worker imports its sibling runtime module by it)
        return self.module.__name__

    def generate(self, bundle: Path, artifact: dict, *args, **kwargs):
        """The module's ``generate``, after checking every file of ``artifact`` (and the tokenizer) against the
        manifest. A runtime that cannot run here says so itself, without hashing first."""
        check = getattr(self.module, "unavailable_here", None)
        if not (check and check()):
            from edgeslm.bundle.integrity import check_artifact

            check_artifact(Path(bundle), artifact)
        return self.module.generate(bundle, artifact, *args, **kwargs)


def get_backend(name: str) -> Backend:
    if name not in _MODULES:
        raise InputError(f"unknown backend {name!r}", f"this edgeslm knows {', '.join(BACKEND_NAMES)}; a bundle "
                         "written by a newer edgeslm may need an upgrade (pip install -U edgeslm)")
    return Backend(importlib.import_module(_MODULES[name]))


def unavailable_here(name: str) -> str | None:
    """Why backend ``name``'s runtime cannot run on this machine, or None if it can (backends whose runtime
    runs everywhere define no ``unavailable_here``)."""
    check = getattr(get_backend(name), "unavailable_here", None)
    return check() if check else None


def not_built_here(name: str) -> str | None:
    """Why backend ``name`` cannot write its artifact on this machine (it then reports its stages and lists the
    artifact as not built), or None if it can (backends that always build define no ``not_built_here``)."""
    check = getattr(get_backend(name), "not_built_here", None)
    return check() if check else None
