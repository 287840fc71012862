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

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.onnx.backend import FORMAT
from edgeslm.backends.protocol import AppRuntime, Backend
from edgeslm.backends.qnn_options import SECTION, parse_qnn_options, qnn_options
from edgeslm.errors import InputError
from edgeslm.gates import Thresholds

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
# genai runs the same graphs as onnxruntime: its greedy tokens must match, except at near-ties.
RUNTIME_AGREEMENT = Thresholds(min_greedy_prefix=1.0, tie_margin=0.02)
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


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    from edgeslm.backends.onnx.runtime import genai_greedy_tokens
    from edgeslm.backends.onnx_qnn.qdq import quantize_graphs
    from edgeslm.backends.onnx_qnn.runtime import WindowedModel
    from edgeslm.backends.onnx_qnn.static import (
        export_static,
        kv_scales,
        write_pipeline_config,
    )
    from edgeslm.bundle.files import file_entry
    from edgeslm.model.build import build_decoder
    from edgeslm.model.checkpoint import TOKENIZER_FILES
    from edgeslm.quant.calibration import DEFAULT_SAMPLES, calibration_windows
    from edgeslm.quant.recipes import get_recipe, plan
    from edgeslm.records import Artifact

    ckpt, rec, ctx = job.ckpt, get_recipe(recipe_name, job.group_size), job.context_length
    dec = build_decoder(ckpt, ctx)
    if any(dec.spec.window(i) for i in range(dec.spec.num_layers)):
        raise InputError(f"{ckpt.source.model_id} has sliding-window attention layers, which the static QNN graphs "
                         "do not implement yet", "export it for android (CPU) instead, or drop onnx-qnn from backends")
    chosen = plan(dec, rec)
    window = window_for(ctx)
    folder_name = f"onnx-qnn-{recipe_name}{job.tag}"
    fp32_dir, folder = tmp / f".{folder_name}-fp32", tmp / folder_name
    fp32_dir.mkdir()
    folder.mkdir()
    name = f"{folder_name}/ctx.onnx"
    cal = calibration_windows(ckpt.tokenizer, qnn_options(job.target).get("calibration_text"),
                              qnn_options(job.target).get("calibration_samples", DEFAULT_SAMPLES),
                              min(window * 2, ctx - 1 - CALIBRATION_DECODE), ckpt.special.bos_id)
    t = time.perf_counter()
    job.status(f"onnx-qnn: exporting static graphs (prompt window {window}, context {ctx})")
    scales = kv_scales(dec, [list(w) for w in cal.windows])
    del dec
    facts = export_static(lambda: build_decoder(ckpt, ctx), fp32_dir, window, ctx, scales)
    providers = qnn_options(job.target).get("provider_options", DEFAULT_PROVIDERS)
    for d in (fp32_dir, folder):
        write_pipeline_config(d, _spec(ckpt, ctx), ckpt.special, ctx, window, ckpt.generation, providers)
    job.status("onnx-qnn: lowering parity (static fp32 graphs in onnxruntime)")
    record: tuple[list, list] = ([], [])
    fp32_model = WindowedModel(fp32_dir)
    obs = job.observe(fp32_model)
    job.check("lowering", recipe_name, "edgeslm fp32 eager", "static fp32 graphs (uint8 KV cache) in onnxruntime",
              job.obs_fp32, obs, name)
    job.status(f"onnx-qnn: calibrating on {len(cal.windows)} windows of text ({cal.source})")
    fp32_model.record = record
    for w in cal.windows:
        fp32_model.greedy(list(w), CALIBRATION_DECODE)
    del fp32_model
    job.status(f"onnx-qnn: QDQ {recipe_name} with onnxruntime's QNN quantizer")
    facts["qdq"] = quantize_graphs(fp32_dir, folder, record, chosen)
    shutil.rmtree(fp32_dir)
    for f in TOKENIZER_FILES:  # onnxruntime-genai reads the tokenizer from the model folder
        if (tmp / f).is_file():
            shutil.copyfile(tmp / f, folder / f)
    shutil.copyfile(cal.path, folder / "calibration.txt")
    job.timings["onnx_qnn_export_s"] = time.perf_counter() - t
    job.status("onnx-qnn: quantization parity (QDQ on the CPU EP: the simulated NPU)")
    qdq = WindowedModel(folder)
    obs_q = job.observe(qdq)
    simulated = f"{recipe_name} QDQ graphs on onnxruntime's CPU EP (simulated HTP)"
    job.check("quantization", recipe_name, "static fp32 graphs in onnxruntime", simulated, obs, obs_q, name)
    job.check("end_to_end", recipe_name, "transformers fp32", simulated, job.obs_ref, obs_q, name, gated=False)
    job.status("onnx-qnn: greedy in onnxruntime-genai (decoder-pipeline, sliding window)")
    free = job.observe_free(qdq)
    genai = [genai_greedy_tokens(folder, ids, len(g)) for ids, g in zip(job.prompt_ids, free.greedy)]
    agree = job.check_greedy("runtime_agreement", recipe_name, f"{recipe_name} QDQ in onnxruntime",
                             f"{recipe_name} QDQ in onnxruntime-genai", free, genai, name, RUNTIME_AGREEMENT)
    job.not_run("npu", name, "no Qualcomm HTP here: the QDQ graphs were simulated on onnxruntime's CPU EP, not run "
                "on the NPU", RUNS_ON)
    configured = [next(iter(p)) for p in providers]
    quantization = [f"{n} → {r.scheme} (int{4 if r.scheme == '16a4w' else 8} weights per output channel, symmetric)"
                    for n, r in sorted(chosen.items()) if n != "embed_tokens"]
    quantization += ["activations → uint16, static ranges calibrated on the recorded text (MinMax)",
                     "embedding table → uint8 per tensor (the QNN quantizer's default)",
                     "KV cache → uint8 (zero point 128, one scale per layer and key/value)"]
    return Artifact(
        **file_entry(tmp, name),
        files=[file_entry(tmp, f"{folder_name}/{p.name}") for p in sorted(folder.iterdir()) if p.name != "ctx.onnx"],
        backend="onnx-qnn", runtime=RUNTIME, recipe=recipe_name, quantization=quantization,
        facts={"static_shapes": facts, "calibration": cal.facts(),
               "execution_providers": {"configured": configured, "parity_run_on": "CPUExecutionProvider",
                                       "not_run_here": configured},
               "onnxruntime_genai": {"loaded": True, "greedy_exact": agree.metrics["greedy_exact"],
                                     "greedy_ties": agree.metrics["greedy_ties"], "prompts": len(genai)}})


def _spec(ckpt, ctx: int):
    from edgeslm.model.build import meta_decoder

    return meta_decoder(ckpt, ctx).spec


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    """The folder in onnxruntime-genai (CPU EP here), streamed as whole characters."""
    from edgeslm.backends.onnx.runtime import generate_with_genai
    from edgeslm.bundle.manifest import read_manifest

    eos_ids = read_manifest(bundle)["special_tokens"]["eos_ids"]
    return generate_with_genai((bundle / artifact["file"]).parent, prompt, max_new_tokens, temperature, on_token,
                               eos_ids)


def step_model(bundle: Path, artifact: dict):
    """The QDQ graphs in onnxruntime, driven exactly as onnxruntime-genai drives them (prompt windows through ctx,
    then iter): genai 0.18's Python API cannot feed a chosen token into a windowed pipeline outside its own
    generation loop, and the export's runtime_agreement stage checks that genai's greedy tokens equal these."""
    from edgeslm.backends.onnx_qnn.runtime import WindowedModel

    return WindowedModel((bundle / artifact["file"]).parent)


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
        return export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return step_model(bundle, artifact)
