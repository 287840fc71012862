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

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.executorch.backend import FORMAT
from edgeslm.backends.protocol import AppRuntime, Backend
from edgeslm.backends.qnn_options import SECTION, parse_qnn_options, qnn_options

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


def not_built_here() -> str | None:
    """Without Qualcomm's SDK the .pte is not written (its quantization stage still runs and is gated)."""
    from edgeslm.backends.executorch_qnn.quantize import lowering_unavailable

    return lowering_unavailable()


class _DecodeGraph:
    """``step(tokens, start_pos) -> last logits`` over the one-token quantized graph (the decode path), feeding a
    prompt one token per call; the graph's KV cache buffers carry the context."""

    def __init__(self, graph):
        self.graph = graph

    def step(self, tokens: list[int], start_pos: int):
        import torch

        with torch.no_grad():
            for i, t in enumerate(tokens):
                out = self.graph(torch.tensor([[t]]), torch.tensor([start_pos + i]))
        return out.reshape(-1, out.shape[-1])[-1].float()


def _schemes(dec, recipe) -> tuple[str, int, list[str]]:
    """The recipe's rules as the Qualcomm quantizer takes them: one scheme for the linears (``16a4w_block`` when
    its rule has a group size: LPBQ blocks of that many input channels), the block size (32 when unused), and the
    linears (lm_head, first and last blocks...) that keep another one. The embedding is quantized by the
    quantizer's own rule (16-bit activations, per tensor)."""
    import torch

    from edgeslm.quant.recipes import plan

    chosen = plan(dec, recipe)
    linears = {n: r for n, r in chosen.items() if isinstance(dec.get_submodule(n), torch.nn.Linear)}
    catch_all = recipe.rule_for("*")  # the recipe's default (its last, catch-all rule)
    schemes = [r.scheme for r in linears.values()]
    main = catch_all.scheme if catch_all and catch_all.scheme in schemes else max(set(schemes), key=schemes.count)
    sensitive = sorted(n for n, r in linears.items() if r.scheme != main)
    block = next((r.group_size for r in linears.values() if r.scheme == main and r.group_size), 0)
    return (f"{main}_block" if block else main), block or 32, sensitive


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact | NotBuilt:
    from edgeslm.backends.executorch.export import runner_metadata
    from edgeslm.backends.executorch_qnn import quantize as Q
    from edgeslm.bundle.files import file_entry
    from edgeslm.model.build import build_decoder
    from edgeslm.parity.models import RuntimeStepModel
    from edgeslm.quant.calibration import DEFAULT_SAMPLES, calibration_windows
    from edgeslm.quant.recipes import get_recipe
    from edgeslm.records import Artifact, NotBuilt

    ckpt, rec = job.ckpt, get_recipe(recipe_name, job.group_size)
    name = f"model-{recipe_name}-qnn{job.tag}.pte"
    soc = qnn_options(job.target).get("soc", "SM8650")
    t = time.perf_counter()
    dec = build_decoder(ckpt, job.context_length)
    main, block, sensitive = _schemes(dec, rec)
    cal = calibration_windows(ckpt.tokenizer, qnn_options(job.target).get("calibration_text"),
                              qnn_options(job.target).get("calibration_samples", DEFAULT_SAMPLES),
                              min(CALIBRATION_WINDOW, job.context_length), ckpt.special.bos_id)
    job.status(f"executorch-qnn: QnnQuantizer {main} ({len(sensitive)} sensitive linears at 16a8w), calibrating "
               f"on {len(cal.windows)} windows")
    graph = Q.quantize(dec, [list(w) for w in cal.windows], scheme=main, sensitive=sensitive,
                       sensitive_scheme="16a8w", block_size=block, seq_len=1, soc=soc)
    job.timings["executorch_qnn_quantize_s"] = time.perf_counter() - t
    job.status("executorch-qnn: parity of the quantized program (simulated HTP numerics, one token per call)")
    obs_q = job.observe(RuntimeStepModel(_DecodeGraph(graph)))
    sim = f"{recipe_name} QnnQuantizer program, quant-dequant in PyTorch (simulated HTP)"
    job.check("quantization", recipe_name, "edgeslm fp32 eager", sim, job.obs_fp32, obs_q, name)
    job.check("end_to_end", recipe_name, "transformers fp32", sim, job.obs_ref, obs_q, name, gated=False)
    weights = f"int4 weights in blocks of {block} input channels (LPBQ)" if main.endswith("_block") else \
        "weights per channel"
    quantization = [f"linears → {main} (16-bit activations with calibrated static ranges, {weights})"]
    quantization += [f"{n} → 16a8w" for n in sensitive]
    quantization += ["attention scores masked with a finite floor (-inf would stretch the 16-bit range)"]
    facts = {"calibration": cal.facts(), "soc": soc, "simulated": "quant-dequant PyTorch graph on this CPU; not run "
             "on an HTP here", "quantize_timings_s": {k: round(v, 2) for k, v in graph.qnn_timings.items()}}
    calibration_file = f"{Path(name).stem}.calibration.txt"

    why = Q.lowering_unavailable()
    if why:
        job.not_run("lowering", name, why, "a machine with Qualcomm's QNN SDK (QNN_SDK_ROOT)")
        return NotBuilt(name, "executorch-qnn", recipe_name, why, HOW, quantization, facts=facts)

    job.status(f"executorch-qnn: lowering to {name} with the QNN SDK ({soc})")
    meta = runner_metadata(dec, ckpt.special.bos_id, ckpt.special.eos_ids)
    lowered = Q.lower(graph, tmp / name, seq_len=1, soc=soc, metadata=meta)
    job.validate("lowering", name, [
        {"check": "every op delegated to QNN", "expected": [], "found": lowered["cpu_ops"],
         "passed": not lowered["cpu_ops"]},
        {"check": "QNN partitions", "expected": ">= 1", "found": lowered["qnn_partitions"],
         "passed": lowered["qnn_partitions"] >= 1}])
    job.not_run("runtime", name, unavailable_here(), RUNS_ON)
    shutil.copyfile(cal.path, tmp / calibration_file)
    return Artifact(**file_entry(tmp, name), files=[file_entry(tmp, calibration_file)], backend="executorch-qnn",
                    runtime=RUNTIME, recipe=recipe_name, quantization=quantization,
                    facts={**facts, **lowered, "metadata": meta})


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    from edgeslm.errors import InputError

    raise InputError(f"cannot run {artifact['file']} here: {unavailable_here()}",
                     "run it on the phone (android_demo), or pick another artifact with --artifact")


def step_model(bundle: Path, artifact: dict):
    from edgeslm.errors import InputError

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
        return not_built_here()

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact | NotBuilt:
        return export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return step_model(bundle, artifact)
