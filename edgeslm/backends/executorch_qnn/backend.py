"""ExecuTorch for Qualcomm's HTP NPU: ExecuTorch's QnnQuantizer through PT2E, then (with Qualcomm's SDK) lowering
to a QNN-delegated .pte.

Stages: quantization = edgeslm fp32 eager vs the quantized program run here as a quant-dequant PyTorch graph (the
HTP's fixed-point scales, zero points and ranges, one token per call as the static decode graph runs), gated;
lowering = the QNN .pte, which needs the Qualcomm AI Engine Direct SDK (``QNN_SDK_ROOT``). Without the SDK the
lowering stage is recorded as not run with the reason, and the manifest lists the artifact under ``not_built``:
the bundle never holds a file that only looks like the artifact. With the SDK the .pte is written and its
delegation checked; running it needs the phone (no QNN runtime here), so its runtime stage is not run either.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.executorch.backend import FORMAT
from edgeslm.backends.protocol import AppRuntime, Backend
from edgeslm.backends.qnn_options import SECTION, parse_qnn_options, qnn_options
from edgeslm.errors import InputError

if TYPE_CHECKING:  # torch and the quantizer are imported where the work runs
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact, NotBuilt

RUNTIME = "ExecuTorch, Qualcomm backend (QNN HTP)"
RECIPES = ("16a4w", "16a8w", "16a4w-block")
APP = AppRuntime(runtime="executorch", package="executorch", honoured=("temperature", "max_new_tokens"))
RUNS_ON = "an Android phone with a Snapdragon HTP (ExecuTorch built with the Qualcomm backend)"
HOW = ("install Qualcomm's AI Engine Direct (QNN) SDK, export QNN_SDK_ROOT and "
       "LD_LIBRARY_PATH=$QNN_SDK_ROOT/lib/x86_64-linux-clang, and run the same edgeslm export command (docs/npu.md)")
CALIBRATION_WINDOW = 64  # tokens per calibration window (run one token per call, as the decode graph does)


def load_entry(artifact: dict) -> dict:
    return {"path": artifact["file"], "tokenizer": "tokenizer.json"}


def build_options(target) -> dict:
    """What the quantized program depends on besides the recipe: the calibration text and the SoC."""
    q = qnn_options(target)
    return {"calibration_text": str(q.get("calibration_text", "")), "samples": q.get("calibration_samples"),
            "soc": q.get("soc")}


def gated_stages(recipe: str) -> dict:
    return {"quantization": None}


def unavailable_here() -> str | None:
    """The HTP runtime is never here; a QNN .pte runs on the phone only."""
    return f"a QNN .pte runs on {RUNS_ON}, not on this machine"


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    raise InputError(f"cannot run {artifact['file']} here: {unavailable_here()}",
                     "run it on the phone (android_demo), or pick another artifact with --artifact")


def step_model(bundle: Path, artifact: dict):
    raise InputError(f"cannot run {artifact['file']} here: {unavailable_here()}", "run it on the phone")


class ExecuTorchQnn(Backend):
    name = "executorch-qnn"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    app = APP
    runs_on = RUNS_ON
    kv_bytes = 2  # a 16-bit quantized cache
    # Preflight: PT2E keeps the fp32 model and its quant-dequant copy (assumed 2x ExecuTorch's).
    lowering_per_fp32_byte = 1.7
    seconds_per_layer = 8.0
    seconds_per_parameter = 1.8e-8  # not refitted: the shares of the older shared pass constant
    option_section = SECTION

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def build_options(self, target) -> dict:
        return build_options(target)

    def parse_options(self, table, path: Path) -> dict:
        return parse_qnn_options(table, path)

    def unavailable_here(self) -> str | None:
        return unavailable_here()

    def not_built_here(self) -> str | None:
        """Without Qualcomm's SDK the .pte is not written (its quantization stage still runs and is gated)."""
        return self.work.lowering_unavailable()

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact | NotBuilt:
        return self.work.export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return step_model(bundle, artifact)
