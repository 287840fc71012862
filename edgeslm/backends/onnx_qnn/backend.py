"""ONNX for Qualcomm's HTP NPU: static-shape graphs in onnxruntime-genai's windowed layout, QDQ-quantized with
onnxruntime's own QNN tooling, in a folder whose genai_config names the QNN execution provider.

Stages, each in the real runtime on this machine's CPU:
- lowering: edgeslm fp32 eager → the static fp32 graphs (ctx/iter, uint8 KV cache) in onnxruntime;
- quantization: those graphs → their QDQ form (16-bit calibrated activations, 4/8-bit weights), both in
  onnxruntime's CPU EP: the **simulation** of the NPU's fixed-point numerics (the same quantize/dequantize
  arithmetic the HTP computes with);
- runtime_agreement: the QDQ folder in onnxruntime-genai (what the app runs, providers cleared here) vs the same
  graphs in onnxruntime;
- npu: the QNN EP on an HTP — not run here, said so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.onnx.backend import FORMAT, RUNTIME_AGREEMENT
from edgeslm.backends.protocol import AppRuntime, Backend
from edgeslm.backends.qnn_options import SECTION, parse_qnn_options, qnn_options

if TYPE_CHECKING:  # torch and the runtimes are imported where the work runs
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "onnxruntime-genai, QNN EP (HTP) on the phone; CPU EP here (simulated)"
RECIPES = ("16a8w", "16a4w")
APP = AppRuntime(runtime="onnxruntime-genai", package="onnxruntime-genai",
                 honoured=("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"))
WINDOW = 64  # prompt tokens per ctx run (genai's sliding window; needs context >= 2 windows)
DEFAULT_PROVIDERS = [{"qnn": {"backend_path": "libQnnHtp.so"}}]
RUNS_ON = "an Android phone with a Snapdragon HTP (onnxruntime-genai built with the QNN EP)"
CALIBRATION_DECODE = 16  # generated tokens per calibration window (feeds for the iter graph)


def load_entry(artifact: dict) -> dict:
    folder = Path(artifact["file"]).parent.as_posix()
    return {"path": folder, "tokenizer": f"{folder}/tokenizer.json"}


def build_options(target) -> dict:
    q = qnn_options(target)
    return {"calibration_text": str(q.get("calibration_text", "")), "samples": q.get("calibration_samples"),
            "providers": q.get("provider_options")}


def gated_stages(recipe: str) -> dict:
    return {"lowering": None, "quantization": None, "runtime_agreement": RUNTIME_AGREEMENT}


def window_for(context_length: int) -> int:
    """The prompt window: 64 tokens, smaller for short contexts (genai needs two windows in the context)."""
    w = WINDOW
    while 2 * w > context_length - 1 and w > 1:
        w //= 2
    return w


class OnnxQnn(Backend):
    name = "onnx-qnn"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    app = APP
    runs_on = RUNS_ON
    kv_bytes = 2  # a 16-bit quantized cache
    # Preflight: two static graphs exported, then QDQ-quantized one at a time (assumed like ONNX).
    lowering_per_fp32_byte = 3.6
    seconds_per_layer = 8.0
    seconds_per_parameter = 1.8e-8  # not refitted: the shares of the older shared pass constant
    option_section = SECTION

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def build_options(self, target) -> dict:
        return build_options(target)

    def parse_options(self, table, path: Path) -> dict:
        return parse_qnn_options(table, path)

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact:
        return self.work.export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return self.work.generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return self.work.step_model(bundle, artifact)
