"""The one typed contract every backend implements: everything backend-specific lives behind it.

A backend is a subclass of :class:`Backend` in ``edgeslm/backends/<name>/backend.py`` plus one registry line in
``edgeslm/backends/__init__.py``. The rest of edgeslm (pipeline, target files, latency model, preflight, inspect,
reports, CLI help) asks it through these members only: no attribute is probed, none falls back to a default
elsewhere. Its class attributes are checked when the class is defined (:meth:`Backend.__init_subclass__`), so a
missing or misspelled member fails at import, not as a silently different figure.

Backend modules stay importable without torch or any runtime: the registry imports them for their facts (CLI
help, target files, predictions, ``gate``/``report``, the bare-runtime RSS reference). So ``backend.py`` holds the
light facts, and a backend's heavy work (export, runtime glue) lives in sibling modules that import torch, the
runtime and edgeslm's model code at their tops. The backend reaches them through the one lazy import point of
every backend, defined here: :attr:`Backend.work` (its ``<package>.work`` module, imported on first use), and
:func:`deferred` for an artifact format's reader (``inspect``/``report`` read a file without the export tooling).
"""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, ClassVar


if TYPE_CHECKING:
    from edgeslm.backends.base import ExportJob
    from edgeslm.gates import Thresholds
    from edgeslm.quant.recipes import Recipe
    from edgeslm.records import Artifact, NotBuilt
    from edgeslm.target import Target


def deferred(module: str, name: str) -> Callable:
    """``module.name``, imported when first called: how a backend names heavy code (an artifact reader importing
    onnx, the ExecuTorch runtime or coremltools) without importing it with its facts."""

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first call"
    return call


@dataclass(frozen=True)
class ArtifactFormat:
    """A file format backends write: its id (``inspect``'s ``format``), what a file of it is ("an ONNX model"),
    the reader ``edgeslm inspect`` uses (path → facts), and whether that reader reports the weights'
    ``weight_bytes_by_dtype`` (reports read it from the file when the manifest has none)."""

    name: str
    what: str
    reader: Callable[[Path], dict]
    reads_weight_bytes: bool = False

    def read(self, path: Path) -> dict:
        return self.reader(path)


@dataclass(frozen=True)
class AppRuntime:
    """For apps (manifest ``load`` / ``app.honoured``): the runtime's id, the Python package whose version ran
    parity here, and the generation settings that runtime applies."""

    runtime: str
    package: str
    honoured: tuple[str, ...]


@dataclass(frozen=True)
class BareRun:
    """One generation in a bare runtime: the prompt's prefill with the first token picked (time to first token),
    then ``steps`` decode steps, each feeding back the token picked."""

    ttft_s: float
    decode_s: float
    steps: int


# ``generate(prompt ids, new tokens)``: the app's own loop over a loaded artifact (Backend.open_bare)
BareGenerate = Callable[[list[int], int], BareRun]


@dataclass(frozen=True)
class LoweringCost:
    """What preflight forecasts for one artifact's lowering besides the shared parity phase: bytes per fp32 model
    byte and per decoder layer, seconds per decoder layer and per parameter (edgeslm/preflight.py)."""

    per_fp32_byte: float
    bytes_per_layer: int
    seconds_per_layer: float
    seconds_per_parameter: float


# Class attributes every backend sets, with the type each must have (checked at class definition).
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str,  # the registry key, as written in target files, manifests and --backend
    "runtime": str,  # what runs the artifact here (reports, bench)
    "artifact_format": ArtifactFormat,
    "recipes": tuple,  # names in edgeslm.quant.recipes.RECIPES it implements (its own quantizer applies them)
    "app": AppRuntime,
    "runs_on": str,  # where a stage that cannot run here does run
    "runtime_modules": tuple,  # Python modules an app-like process imports before loading (RSS baseline)
    "kv_bytes": int,  # KV-cache element bytes (a 16-bit float recipe keeps a 2-byte cache whatever this says)
    "lowering_per_fp32_byte": (int, float),  # preflight: lowering-phase bytes per fp32 model byte
    "lowering_bytes_per_layer": int,  # preflight: ...plus bytes per decoder layer
    "seconds_per_layer": (int, float),  # preflight: lowering seconds per decoder layer
    "seconds_per_parameter": (int, float),  # preflight: ...plus seconds per parameter
    "host_cpu": bool,  # runs on a CPU like this machine's (the host device profile models it)
    "option_section": (str, type(None)),  # the target file's [section] of its options, or None
    "has_verifier": bool,  # verifier() works: speculative decoding can be measured
    "has_native_speculative": bool,  # native_speculative() works: the runtime's own draft support
    "has_bare_runtime": bool,  # open_bare() works: bench times the app's own loop, the RSS reference
    "search": tuple,  # recipes --recipe auto tries (ordered by predicted bytes at run time); () = no search
}


class Backend(abc.ABC):
    """One backend: lowering to its artifact, its runtime, and every fact about it the rest of edgeslm needs."""

    name: ClassVar[str]
    runtime: ClassVar[str]
    artifact_format: ClassVar[ArtifactFormat]
    recipes: ClassVar[tuple[str, ...]]
    app: ClassVar[AppRuntime]
    runs_on: ClassVar[str] = "the artifacts' own runtime"
    runtime_modules: ClassVar[tuple[str, ...]] = ()
    kv_bytes: ClassVar[int]
    lowering_per_fp32_byte: ClassVar[float]
    lowering_bytes_per_layer: ClassVar[int] = 0
    seconds_per_layer: ClassVar[float]
    seconds_per_parameter: ClassVar[float] = 0.0
    host_cpu: ClassVar[bool] = False
    option_section: ClassVar[str | None] = None
    has_verifier: ClassVar[bool] = False
    has_native_speculative: ClassVar[bool] = False
    has_bare_runtime: ClassVar[bool] = False
    search: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        missing = [k for k in REQUIRED if _inherited(cls, k) is _MISSING]
        wrong = [k for k, t in REQUIRED.items() if k not in missing and not isinstance(_inherited(cls, k), t)]
        if missing or wrong:
            raise TypeError(f"backend class {cls.__qualname__}: missing {missing}, mistyped {wrong}")
        if cls.has_verifier != (cls.verifier is not Backend.verifier):
            raise TypeError(f"backend class {cls.__qualname__}: has_verifier must say whether it defines verifier()")
        if cls.has_native_speculative != (cls.native_speculative is not Backend.native_speculative):
            raise TypeError(f"backend class {cls.__qualname__}: has_native_speculative must say whether it defines "
                            "native_speculative()")
        if cls.has_bare_runtime != (cls.open_bare is not Backend.open_bare):
            raise TypeError(f"backend class {cls.__qualname__}: has_bare_runtime must say whether it defines "
                            "open_bare()")
        if not set(cls.search) <= set(cls.recipes):
            raise TypeError(f"backend class {cls.__qualname__}: search names recipes it lacks "
                            f"({', '.join(sorted(set(cls.search) - set(cls.recipes)))})")
        if (cls.option_section is None) != (cls.parse_options is Backend.parse_options):
            raise TypeError(f"backend class {cls.__qualname__}: option_section and parse_options() go together")

    @property
    def work(self) -> ModuleType:
        """This backend's heavy module, ``<its package>.work``: the export and runtime work its methods hand over
        to, with torch, the runtime and the model code imported at its top. Imported on first use: the one lazy
        import of a backend, so that its facts stay importable without any of that."""
        return importlib.import_module(type(self).__module__.rsplit(".", 1)[0] + ".work")

    # -- export -------------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def gated_stages(self, recipe: str) -> dict[str, Thresholds | None]:
        """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one)."""

    def build_options(self, target: Target) -> dict:
        """Target options the artifact depends on besides the recipe (part of its reuse key); none by default."""
        return {}

    def parse_options(self, table: Any, path: Path) -> dict:
        """The target file's ``[option_section]`` table, validated (unknown keys rejected). Only for backends
        with an ``option_section``."""
        raise NotImplementedError(f"the {self.name} backend takes no target options")

    def options(self, target: Target) -> dict:
        """This backend's parsed options of ``target`` (empty without a section)."""
        return target.options.get(self.option_section, {}) if self.option_section else {}

    def lowering_cost(self, target: Target | None, recipe: str | None = None) -> LoweringCost:
        """The forecast's figures for lowering ``recipe`` for ``target`` (None: the usual path): the class's own,
        unless the target or the recipe sends the backend down another path."""
        return LoweringCost(self.lowering_per_fp32_byte, self.lowering_bytes_per_layer, self.seconds_per_layer,
                            self.seconds_per_parameter)

    def not_built_here(self) -> str | None:
        """Why this backend cannot write its artifact on this machine, or None if it can."""
        return None

    @abc.abstractmethod
    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact | NotBuilt:
        """Lower the job's checkpoint with ``recipe`` into ``tmp``, recording its stages on ``job``."""

    # -- runtime ------------------------------------------------------------------------------------------------

    def unavailable_here(self) -> str | None:
        """Why this backend's runtime cannot run on this machine, or None if it can."""
        return None

    @abc.abstractmethod
    def load_entry(self, artifact: dict) -> dict:
        """What the app's runtime opens (``path``, ``tokenizer``), for the manifest's ``load``."""

    def generate(self, bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float,
                 on_token: Callable[[str], None]):
        """Stream a response: every file of ``artifact`` (and the tokenizer) is first checked against the manifest
        (one check for every backend, so no runtime loads bytes the manifest does not vouch for); a runtime that
        cannot run here says so itself, without hashing first."""
        if not self.unavailable_here():
            # Lazy on purpose: the bare-runtime RSS reference imports every backend module (and so this one)
            # before its baseline, and must not carry the manifest validator (jsonschema) into it.
            from edgeslm.integrity import check_artifact

            check_artifact(Path(bundle), artifact)
        return self._generate(Path(bundle), artifact, prompt, max_new_tokens, temperature, on_token)

    @abc.abstractmethod
    def _generate(self, bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float,
                  on_token: Callable[[str], None]):
        """The runtime's own generation (called by :meth:`generate` after the integrity check)."""

    @abc.abstractmethod
    def step_model(self, bundle: Path, artifact: dict):
        """The artifact loaded in its runtime: ``step(tokens, start_pos) -> logits`` (bench, golden vectors)."""

    def verifier(self, bundle: Path, artifact: dict):
        """For speculative decoding: ``score(tokens, start) -> logits`` (only where ``has_verifier``)."""
        raise NotImplementedError(f"the {self.name} backend has no multi-token verifier")

    def native_speculative(self, bundle: Path, target: dict, draft: dict, k: int, prompt_ids: list[list[int]],
                           n: int) -> dict:
        """The runtime's own speculative decoding, checked here (only where ``has_native_speculative``)."""
        raise NotImplementedError(f"the {self.name} runtime has no speculative decoding of its own")

    def preload_runtime(self) -> None:
        """Import the runtime's modules and this backend's work module (its step models live there, torch and the
        model code imported at its top), so that no import lands inside a measured stretch: a bench's ``load_s``
        is the artifact's load alone."""
        for module in self.runtime_modules:
            importlib.import_module(module)
        self.work  # noqa: B018 (imported for its side effect)

    def open_bare(self, bundle: Path, artifact: dict, manifest: dict) -> BareGenerate:
        """Load ``artifact`` the way an app does, importing nothing but the runtime, and return its generation
        loop (only where ``has_bare_runtime``): bench times it and the bare-runtime RSS reference runs it."""
        raise NotImplementedError(f"no bare-runtime loop for {self.name} artifacts")

    # -- latency model ------------------------------------------------------------------------------------------

    def kv_element_bytes(self, recipe: Recipe) -> int:
        """Bytes per KV-cache element for an artifact of ``recipe``: a 16-bit float recipe keeps a 16-bit cache."""
        return 2 if recipe.kind == "float" and recipe.bits == 16 else self.kv_bytes


_MISSING = object()


def _inherited(cls: type, key: str):
    """``key``'s value as the class defines or inherits it (class attributes only), or ``_MISSING``."""
    for base in cls.__mro__:
        if key in base.__dict__:
            return base.__dict__[key]
    return _MISSING
