"""The ExecuTorch backend's work (see :mod:`edgeslm.backends.executorch.backend` for its facts): torchao recipe,
lowering to a .pte, parity in the ExecuTorch runtime, generation. Reached through ``Backend.work``.
"""

from __future__ import annotations

import time
from pathlib import Path

from edgeslm.backends.base import ExportJob
from edgeslm.backends.executorch.backend import RUNTIME
from edgeslm.backends.executorch.export import lower_to_pte, runner_metadata
from edgeslm.backends.executorch.runtime import PteModel
from edgeslm.backends.executorch.runtime import generate as run
from edgeslm.filefacts import file_entry
from edgeslm.manifest import read_manifest
from edgeslm.memory import release_memory
from edgeslm.model.build import build_decoder
from edgeslm.parity.models import EagerDecoder, RuntimeStepModel
from edgeslm.quant.recipes import get_recipe
from edgeslm.records import Artifact


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    ckpt, name = job.ckpt, f"model-{recipe_name}{job.tag}.pte"
    rec = get_recipe(recipe_name, job.group_size)
    job.stage(f"executorch: quantizing ({recipe_name})", "pass")
    t = time.perf_counter()
    dec = build_decoder(ckpt, job.context_length, use_custom_ops=True, recipe=rec, fuse=True,
                        on_quantized=job.counter("modules quantized")).use_delegate_forms()
    applied = dec.quant_plan
    release_memory()  # the fp32 weights the quantized ones replaced
    obs_q = job.obs_fp32
    if applied:
        obs_q = job.observe(EagerDecoder(dec))
        job.check("quantization", recipe_name, "edgeslm fp32 eager", f"{recipe_name} eager", job.obs_fp32, obs_q,
                  name)
    job.stage(f"executorch: lowering to {name}", "executorch")
    meta = runner_metadata(dec, ckpt.special.bos_id, ckpt.special.eos_ids)
    facts = lower_to_pte(dec, meta, tmp / name)
    job.timings["executorch_export_s"] = time.perf_counter() - t
    del dec
    release_memory()
    job.stage(f"executorch: parity in {RUNTIME}", "pass")
    obs_rt = job.observe(RuntimeStepModel(PteModel(tmp / name)))
    job.check("lowering", recipe_name, f"{recipe_name} eager", f"{name} in executorch", obs_q, obs_rt, name)
    job.check("end_to_end", recipe_name, "transformers fp32", f"{name} in executorch", job.obs_ref, obs_rt, name,
              gated=False)
    return Artifact(**file_entry(tmp, name), backend="executorch", runtime=RUNTIME, recipe=recipe_name,
                    quantization=[r.describe() for r in rec.rules] if applied else [],
                    facts={**facts, "metadata": meta})


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    """The .pte's forward in the ExecuTorch runtime, streamed as whole characters (see runtime.generate)."""
    m = read_manifest(bundle)
    context = int(artifact.get("metadata", {}).get("get_max_seq_len", m["context_length"]))
    return run(bundle / artifact["file"], bundle / "tokenizer.json", m["special_tokens"]["eos_ids"], context, prompt,
               max_new_tokens, temperature, on_token)


def step_model(bundle: Path, artifact: dict):
    """The artifact loaded in its runtime: ``step(tokens, start_pos) -> logits`` (bench, parity)."""
    return PteModel(bundle / artifact["file"])


def verifier(bundle: Path, artifact: dict):
    """For speculative decoding: the .pte in the ExecuTorch runtime, verifying one token per call."""
    return PteModel(bundle / artifact["file"])
