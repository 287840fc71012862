"""The onnx-qnn backend's work (see :mod:`edgeslm.backends.onnx_qnn.backend` for its facts): static graphs,
QDQ quantization with onnxruntime's QNN tooling, parity on the CPU EP. Reached through ``Backend.work``; its
generation is the ONNX backend's (the same onnxruntime-genai folder layout).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edgeslm.backends.base import ExportJob
from edgeslm.backends.onnx.runtime import genai_greedy_tokens
from edgeslm.backends.onnx.work import generate  # noqa: F401  (one genai generation for both ONNX backends)
from edgeslm.backends.onnx_qnn.backend import (
    CALIBRATION_DECODE,
    DEFAULT_PROVIDERS,
    RUNS_ON,
    RUNTIME,
    RUNTIME_AGREEMENT,
    window_for,
)
from edgeslm.backends.onnx_qnn.qdq import quantize_graphs
from edgeslm.backends.onnx_qnn.runtime import WindowedModel
from edgeslm.backends.onnx_qnn.static import export_static, kv_scales, write_pipeline_config
from edgeslm.backends.qnn_options import qnn_options
from edgeslm.errors import InputError
from edgeslm.filefacts import file_entry
from edgeslm.model.build import build_decoder, meta_decoder
from edgeslm.model.checkpoint import TOKENIZER_FILES
from edgeslm.quant.calibration import DEFAULT_SAMPLES, calibration_windows
from edgeslm.quant.recipes import get_recipe, plan
from edgeslm.records import Artifact


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
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
    job.stage(f"onnx-qnn: exporting static graphs (prompt window {window}, context {ctx})", "onnx-qnn")
    scales = kv_scales(dec, [list(w) for w in cal.windows])
    del dec
    facts = export_static(lambda: build_decoder(ckpt, ctx), fp32_dir, window, ctx, scales)
    providers = qnn_options(job.target).get("provider_options", DEFAULT_PROVIDERS)
    for d in (fp32_dir, folder):
        write_pipeline_config(d, _spec(ckpt, ctx), ckpt.special, ctx, window, ckpt.generation, providers)
    job.stage("onnx-qnn: lowering parity (static fp32 graphs in onnxruntime)", "pass")
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
    job.stage("onnx-qnn: quantization parity (QDQ on the CPU EP: the simulated NPU)", "pass")
    qdq = WindowedModel(folder)
    obs_q = job.observe(qdq)
    simulated = f"{recipe_name} QDQ graphs on onnxruntime's CPU EP (simulated HTP)"
    job.check("quantization", recipe_name, "static fp32 graphs in onnxruntime", simulated, obs, obs_q, name)
    job.check("end_to_end", recipe_name, "transformers fp32", simulated, job.obs_ref, obs_q, name, gated=False)
    job.status("onnx-qnn: greedy in onnxruntime-genai (decoder-pipeline, sliding window)")
    free = job.observe_free(qdq)
    genai = genai_greedy_tokens(folder, job.prompt_ids, [len(g) for g in free.greedy])
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
    return meta_decoder(ckpt, ctx).spec


def step_model(bundle: Path, artifact: dict):
    """The QDQ graphs in onnxruntime, driven exactly as onnxruntime-genai drives them (prompt windows through ctx,
    then iter): genai 0.18's Python API cannot feed a chosen token into a windowed pipeline outside its own
    generation loop, and the export's runtime_agreement stage checks that genai's greedy tokens equal these."""
    return WindowedModel((bundle / artifact["file"]).parent)
