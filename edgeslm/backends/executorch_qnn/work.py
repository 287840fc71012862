"""The executorch-qnn backend's work (see :mod:`edgeslm.backends.executorch_qnn.backend` for its facts):
QnnQuantizer through PT2E, parity of the quantized program, lowering with Qualcomm's SDK where it is installed.
Reached through ``Backend.work``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch

from edgeslm.backends.base import ExportJob
from edgeslm.backends.executorch.export import runner_metadata
from edgeslm.backends.executorch_qnn.backend import CALIBRATION_WINDOW, HOW, RUNS_ON, RUNTIME, unavailable_here
from edgeslm.backends.executorch_qnn.quantize import lower, lowering_unavailable, quantize
from edgeslm.backends.qnn_options import qnn_options
from edgeslm.filefacts import file_entry
from edgeslm.model.build import build_decoder
from edgeslm.parity.models import RuntimeStepModel
from edgeslm.quant.calibration import DEFAULT_SAMPLES, calibration_windows
from edgeslm.quant.recipes import get_recipe, plan
from edgeslm.records import Artifact, NotBuilt


class _DecodeGraph:
    """``step(tokens, start_pos) -> last logits`` over the one-token quantized graph (the decode path), feeding a
    prompt one token per call; the graph's KV cache buffers carry the context."""

    def __init__(self, graph):
        self.graph = graph

    def step(self, tokens: list[int], start_pos: int):
        with torch.no_grad():
            for i, t in enumerate(tokens):
                out = self.graph(torch.tensor([[t]]), torch.tensor([start_pos + i]))
        return out.reshape(-1, out.shape[-1])[-1].float()


def _schemes(dec, recipe) -> tuple[str, int, list[str]]:
    """The recipe's rules as the Qualcomm quantizer takes them: one scheme for the linears (``16a4w_block`` when
    its rule has a group size: LPBQ blocks of that many input channels), the block size (32 when unused), and the
    linears (lm_head, first and last blocks...) that keep another one. The embedding is quantized by the
    quantizer's own rule (16-bit activations, per tensor)."""
    chosen = plan(dec, recipe)
    linears = {n: r for n, r in chosen.items() if isinstance(dec.get_submodule(n), torch.nn.Linear)}
    catch_all = recipe.rule_for("*")  # the recipe's default (its last, catch-all rule)
    schemes = [r.scheme for r in linears.values()]
    main = catch_all.scheme if catch_all and catch_all.scheme in schemes else max(set(schemes), key=schemes.count)
    sensitive = sorted(n for n, r in linears.items() if r.scheme != main)
    block = next((r.group_size for r in linears.values() if r.scheme == main and r.group_size), 0)
    return (f"{main}_block" if block else main), block or 32, sensitive


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact | NotBuilt:
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
    graph = quantize(dec, [list(w) for w in cal.windows], scheme=main, sensitive=sensitive,
                       sensitive_scheme="16a8w", block_size=block, seq_len=1, soc=soc)
    job.timings["executorch_qnn_quantize_s"] = time.perf_counter() - t
    job.stage("executorch-qnn: parity of the quantized program (simulated HTP numerics, one token per call)",
              "pass")
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

    why = lowering_unavailable()
    if why:
        job.not_run("lowering", name, why, "a machine with Qualcomm's QNN SDK (QNN_SDK_ROOT)")
        return NotBuilt(name, "executorch-qnn", recipe_name, why, HOW, quantization, facts=facts)

    job.stage(f"executorch-qnn: lowering to {name} with the QNN SDK ({soc})", "executorch-qnn")
    meta = runner_metadata(dec, ckpt.special.bos_id, ckpt.special.eos_ids)
    lowered = lower(graph, tmp / name, seq_len=1, soc=soc, metadata=meta)
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
