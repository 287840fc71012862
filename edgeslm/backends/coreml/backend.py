"""Core ML backend: the decoder → a stateful .mlpackage (fp16, iOS 18), weights compressed by coremltools.

Core ML cannot execute on Linux, so validation is split honestly into three stages:

1. quantization: the fp32 decoder vs the same decoder carrying the package's own weights (read back from the
   saved blob and decompressed as Core ML does) run in fp16 in PyTorch: measured everywhere, gated;
2. structure: the saved package re-read without executing it (interface, KV states, deployment target,
   compressed-weight ops and their dtype, metadata): checked everywhere;
3. lowering: the package run in Core ML against stage 1's model; only where Core ML can predict (macOS 15+),
   otherwise recorded as not run, with the reason, and never counted as passed.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.protocol import AppRuntime, ArtifactFormat, Backend, deferred
from edgeslm.toml_kit import bad, flag, reject_unknown

if TYPE_CHECKING:  # torch and coremltools are imported where the work runs
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "Core ML (macOS 15+ / iOS 18+)"
RECIPES = ("fp16", "int8", "int4", "int4-asym", "palettize4")
# Core ML runs one forward per call; the app's own loop samples (ios_demo: temperature and a token budget).
APP = AppRuntime(runtime="coreml", package="coremltools", honoured=("temperature", "max_new_tokens"))


# the package's spec read without loading it (inputs with shape ranges, states, deployment target, ops,
# compressed-weight ops, weight bytes by dtype, metadata)
FORMAT = ArtifactFormat("coreml", "a Core ML package", deferred("edgeslm.backends.coreml.package", "read_package"))
OPTION_SECTION = "coreml"


def load_entry(artifact: dict) -> dict:
    """What MLModel opens: the .mlpackage folder; the tokenizer is the bundle's tokenizer.json."""
    return {"path": artifact["package"], "tokenizer": "tokenizer.json"}


def gated_stages(recipe: str) -> dict:
    """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one). Stage 3
    (lowering) runs on macOS only, but its gate must exist: there it runs."""
    return {"quantization": None, "lowering": None}


def build_options(target) -> dict:
    """Target options the package depends on (part of its reuse key): the Neural Engine form."""
    return target.options.get(OPTION_SECTION, {})


def parse_options(table, path: Path) -> dict:
    """``[coreml]``: ``neural_engine = true`` converts for the Apple Neural Engine (fixed one-token inputs; the
    package's ANE readiness becomes a gated stage). Default: flexible 1..context tokens per prediction (GPU/CPU)."""
    where = f"target file {path}"
    if not isinstance(table, dict):
        raise bad("coreml", where, "a table ([coreml])", table, "[coreml] with neural_engine = true")
    reject_unknown(table, {"neural_engine"}, f"coreml of {where}")
    if "neural_engine" in table:
        flag(table["neural_engine"], "coreml.neural_engine", where, "neural_engine = true")
    return dict(table)


def tokens_per_call(target) -> int | None:
    """One token per prediction for the Neural Engine (fixed shapes); else a flexible 1..context."""
    return 1 if build_options(target).get("neural_engine") else None


RUNS_ON = "macOS 15+ with coremltools (see .github/workflows/coreml-macos.yml)"
def unavailable_here() -> str | None:
    """None where Core ML can predict; otherwise the reason it cannot."""
    system = platform.system()
    if system != "Darwin":
        return f"Core ML runs only on Apple platforms (macOS 15+ / iOS 18+); this machine runs {system}"
    major = int(platform.mac_ver()[0].split(".")[0] or 0)
    if major < 15:
        return f"stateful Core ML models need macOS 15 or later; this Mac runs {platform.mac_ver()[0]}"
    try:
        import coremltools.libcoremlpython  # noqa: F401  (only macOS wheels have it: an optional platform runtime)
    except ImportError:
        return "this coremltools build has no native Core ML runtime (libcoremlpython)"
    return None


class CoreML(Backend):
    name = "coreml"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    search = ("palettize4", "int4", "int4-asym", "int8")
    app = APP
    runs_on = RUNS_ON
    runtime_modules = ("coremltools",)
    kv_bytes = 2  # the package computes in fp16
    # Preflight: Core ML converts an fp16 copy.
    lowering_per_fp32_byte = 1.5
    seconds_per_layer = 2.0
    seconds_per_parameter = 1.8e-8  # not refitted: the shares of the older shared pass constant
    option_section = OPTION_SECTION

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def build_options(self, target) -> dict:
        return build_options(target)

    def parse_options(self, table, path: Path) -> dict:
        return parse_options(table, path)

    def unavailable_here(self) -> str | None:
        return unavailable_here()

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact:
        return self.work.export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return self.work.generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return self.work.step_model(bundle, artifact)
