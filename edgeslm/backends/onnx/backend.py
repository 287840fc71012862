"""ONNX backend: the decoder's graph written from its weights (GroupQueryAttention, MatMulNBits quantized layer by
layer; :mod:`edgeslm.backends.onnx.graph`) → a folder onnxruntime-genai loads; parity in onnxruntime (CPU EP) and
a greedy check in onnxruntime-genai. The fp16 recipe and rotary widths GroupQueryAttention cannot fuse keep the
traced path (torch.onnx, then onnxruntime's quantizer: :mod:`edgeslm.backends.onnx.export`).

Stages (each in the real runtime): quantization = edgeslm fp32 eager → the eager model of the graph's numerics
(MatMulNBits' grids and its int8 activation rounding, :mod:`edgeslm.backends.onnx.nbits`); lowering = that eager
model → the graph in onnxruntime. On the traced path: lowering = fp32 eager → fp32 ONNX, quantization = fp32 ONNX
→ quantized ONNX, both in onnxruntime."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.genai_options import provider_options
from edgeslm.backends.protocol import (
    AppRuntime,
    ArtifactFormat,
    Backend,
    BareGenerate,
    BareRun,
    LoweringCost,
    deferred,
)
from edgeslm.gates import Thresholds
from edgeslm.toml_kit import bad, reject_unknown

if TYPE_CHECKING:  # this module stays importable without torch (the bare-runtime RSS reference imports it)
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "ONNX Runtime (CPU EP here), onnxruntime-genai"
RECIPES = ("fp32", "fp16", "int4", "int4-asym", "int4-asym-all4", "int8")
APP = AppRuntime(runtime="onnxruntime-genai", package="onnxruntime-genai",
                 honoured=("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"))
# genai's Python API hands back numpy arrays (imported on first use)
RUNTIME_MODULES = ("numpy", "onnxruntime_genai")


FORMAT = ArtifactFormat("onnx", "an ONNX model", deferred("edgeslm.backends.onnx.read", "read_onnx"),
                        reads_weight_bytes=True)


def load_entry(artifact: dict) -> dict:
    """What onnxruntime-genai's Model opens: the folder (genai_config.json, model, its own tokenizer copy)."""
    folder = Path(artifact["file"]).parent.as_posix()
    return {"path": folder, "tokenizer": f"{folder}/tokenizer.json"}
BITS = {"4w": 4, "8w": 8}
# onnxruntime-genai runs the same graph as onnxruntime: its greedy tokens must equal onnxruntime's, except where
# onnxruntime's own top-2 margin is within numerical noise (accumulation order; fp16 graphs included). onnx-qnn
# gates its free-running runtime_agreement stage with it.
RUNTIME_AGREEMENT = Thresholds(min_greedy_prefix=1.0, tie_margin=0.02)
# onnx: genai is fed onnxruntime's path (the same contexts through the same prefill and decode kernels), so its
# logits are onnxruntime's to the bit (0.0 on every model measured); the bound leaves room for accumulation order
# only, and a token chosen apart must be a tie within it.
SAME_PATH_AGREEMENT = Thresholds(max_abs_logit_diff=1e-3, min_greedy_prefix=1.0)


def build_options(target) -> dict:
    """Target options the artifact depends on (part of its reuse key): the execution providers it names."""
    return target.options.get(OPTION_SECTION, {})


def configured_providers(target) -> list[str]:
    """The execution providers ``target``'s genai_config names, in order (the CPU's is implicit)."""
    return [next(iter(p)) for p in build_options(target).get("provider_options", [])]


# Recipes the writer leaves to the traced path wherever they run (fp16 activations and cache: onnxruntime's CPU
# GroupQueryAttention is fp32 only).
TRACED_RECIPES = ("fp16",)


def traced_for(target, recipe: str | None = None) -> str | None:
    """Why ``recipe`` for ``target`` takes the traced graph instead of the written one, or None: a recipe of
    :data:`TRACED_RECIPES`, or the CUDA execution provider (its GroupQueryAttention runs fp16/bf16 only, and the
    written graph is fp32: on CUDA its attention would fall back to the CPU). The export and its forecast both
    ask here."""
    if recipe in TRACED_RECIPES:
        return f"the {recipe} recipe"
    if target is not None and "cuda" in configured_providers(target):
        return "the CUDA execution provider (GroupQueryAttention there is fp16/bf16 only)"
    return None


# The traced path's forecast (torch.onnx, then onnxruntime's quantizer over the traced graph). SmolLM2-135M shape for
# jetson-orin: 88.8 s (tracing 59 s), peak 3419 MiB (4.6 per fp32 byte over the base). Llama-3.2-1B shape: killed
# for memory on a 24 GB host while quantizing the traced graph (24.3 GB resident: 4.7 per fp32 byte or more), after
# tracing 67 s and onnxruntime's fp32 passes 65 s; 4.8 refuses such a machine with the figures instead.
TRACED_COST = LoweringCost(4.8, 0, 2.2, 8e-8)


OPTION_SECTION = "onnx"


def parse_options(table, path: Path) -> dict:
    """``[onnx]``: ``provider_options`` written into genai_config.json."""
    if not isinstance(table, dict):
        raise bad("onnx", f"target file {path}", "a table ([onnx])", table,
                  '[onnx] with provider_options = [{ xnnpack = {} }]')
    reject_unknown(table, {"provider_options"}, f"onnx of target file {path}")
    if "provider_options" in table:
        return {"provider_options": provider_options(
            table["provider_options"], path, f"{OPTION_SECTION}.provider_options",
            'provider_options = [{ cuda = { enable_cuda_graph = "0" } }]')}
    return {}


def gated_stages(recipe: str) -> dict:
    """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one)."""
    stages = {"lowering": None, "runtime_agreement": SAME_PATH_AGREEMENT}
    return {**stages, "quantization": None} if recipe != "fp32" else stages


def open_bare(folder: Path, context_length: int) -> BareGenerate:
    """The folder in bare onnxruntime-genai on the CPU provider, and its generation loop: ``append_tokens(prompt)``
    and the first ``generate_next_token()`` (which picks from the prefill's logits), then one
    ``generate_next_token()`` per decode step. ``max_length`` = the bundle's context length (genai sizes its KV
    cache by it), so a run that reaches it stops early and says how many steps it ran."""
    import onnxruntime_genai as og  # the bare runtime: nothing else is imported

    config = og.Config(str(folder))
    config.clear_providers()  # the CPU here; the folder's configured EPs are the device's
    model = og.Model(config)

    def generate(ids: list[int], gen_len: int) -> BareRun:
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=context_length)
        gen = og.Generator(model, params)
        t0 = time.perf_counter()
        gen.append_tokens(ids)
        gen.generate_next_token()
        gen.get_next_tokens()
        t1 = time.perf_counter()
        steps = 0
        while steps < gen_len and not gen.is_done():
            gen.generate_next_token()
            gen.get_next_tokens()
            steps += 1
        return BareRun(t1 - t0, time.perf_counter() - t1, steps)

    return generate


class Onnx(Backend):
    name = "onnx"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    search = ("int4", "int4-asym-all4", "int4-asym", "int8")
    app = APP
    runtime_modules = RUNTIME_MODULES
    kv_bytes = 4  # the fp16 recipe's cache is 2 bytes (Backend.kv_element_bytes)
    # Preflight: the graph written from the (untied) fp32 decoder, its MatMulNBits weights quantized layer by layer
    # (the eager twin keeps them packed), then an onnxruntime session (edgeslm/preflight.py, with the logits term).
    # Fitted on android exports, where this phase follows ExecuTorch's and sits on what that left on the heap: the
    # Qwen2.5-0.5B and Llama-3.2-1B shapes peak here; ONNX alone it forecasts 1.2-1.4x above the measured peak.
    # The traced path (CUDA targets such as jetson-orin) is forecast apart: TRACED_COST.
    lowering_per_fp32_byte = 1.45
    # Time: the graph written and quantized (per parameter: onnxruntime's quantizer, one thread), sessions loaded
    # (per layer), and the onnxruntime-genai pass, which the shared two passes of preflight do not count; fitted
    # to ONNX-only exports of the SmolLM2-135M and Llama-3.2-1B shapes (16.3 and 96 s measured, reference
    # included).
    seconds_per_layer = 0.18
    seconds_per_parameter = 1.4e-8
    host_cpu = True
    option_section = OPTION_SECTION
    has_verifier = True
    has_native_speculative = True
    has_bare_runtime = True

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def build_options(self, target) -> dict:
        return build_options(target)

    def lowering_cost(self, target, recipe: str | None = None) -> LoweringCost:
        return TRACED_COST if traced_for(target, recipe) else super().lowering_cost(target, recipe)

    def parse_options(self, table, path: Path) -> dict:
        return parse_options(table, path)

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact:
        return self.work.export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return self.work.generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return self.work.step_model(bundle, artifact)

    def verifier(self, bundle: Path, artifact: dict):
        return self.work.verifier(bundle, artifact)

    def native_speculative(self, bundle: Path, target: dict, draft: dict, k: int, prompt_ids: list[list[int]],
                           n: int) -> dict:
        return self.work.native_speculative(bundle, target, draft, k, prompt_ids, n)

    def open_bare(self, bundle: Path, artifact: dict, manifest: dict) -> BareGenerate:
        return open_bare((bundle / artifact["file"]).parent, manifest["context_length"])
