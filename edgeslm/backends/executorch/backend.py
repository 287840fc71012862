"""ExecuTorch backend: torchao recipe on the decoder → .pte (XNNPACK), parity in the ExecuTorch runtime."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.protocol import AppRuntime, ArtifactFormat, Backend

if TYPE_CHECKING:  # this module stays importable without torch (the bare-runtime RSS reference imports it)
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "ExecuTorch (XNNPACK delegate)"
RECIPES = ("fp32", "8da4w", "int8w")
# For apps (manifest ``load`` / ``app.honoured``): the runtime's id, the package whose version ran parity here,
# and which generation defaults LlmModule applies (it samples with a temperature only).
APP = AppRuntime(runtime="executorch", package="executorch", honoured=("temperature", "max_new_tokens"))
# The runtime plus the kernel libraries our .pte files use (llama:: custom ops, quantized kernels; both register
# into the runtime and pull in torch), imported before an RSS baseline as an app links them before loading.
RUNTIME_MODULES = ("executorch.extension.llm.custom_ops.custom_ops", "executorch.kernels.quantized",
                   "executorch.runtime")


def read_pte(path: Path) -> dict:
    """``edgeslm inspect``: methods, forward's inputs/outputs (upper-bound shapes), the runner metadata baked in."""
    from edgeslm.backends.executorch.runtime import PteModel

    pte = PteModel(path)
    prog, meta = pte.program, pte.program.metadata("forward")

    names = {3: "int32", 4: "int64", 5: "float16", 6: "float32", 11: "bool", 15: "bfloat16"}

    def info(t):  # shapes are the upper bounds the program was planned for
        return {"dtype": names.get(int(t.dtype()), str(t.dtype())), "shape": list(t.sizes())}

    constants = {}
    for name in sorted(prog.method_names - {"forward"}):
        value = pte.metadata(name)
        constants[name] = value.tolist() if hasattr(value, "tolist") else value
    return {
        "format": FORMAT.name,
        "methods": sorted(prog.method_names),
        "inputs": [info(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
        "outputs": [info(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
        "runner_metadata": constants,
    }


FORMAT = ArtifactFormat("executorch", "an ExecuTorch program", read_pte)


def load_entry(artifact: dict) -> dict:
    """What LlmModule opens: the .pte and the bundle's tokenizer.json."""
    return {"path": artifact["file"], "tokenizer": "tokenizer.json"}


def gated_stages(recipe: str) -> dict:
    """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one)."""
    return {"quantization": None, "lowering": None} if recipe != "fp32" else {"lowering": None}


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    from edgeslm.backends.executorch.export import lower_to_pte, runner_metadata
    from edgeslm.backends.executorch.runtime import PteModel
    from edgeslm.bundle.files import file_entry
    from edgeslm.model.build import build_decoder
    from edgeslm.parity.models import EagerDecoder, RuntimeStepModel
    from edgeslm.preflight import release_memory
    from edgeslm.quant.recipes import get_recipe
    from edgeslm.records import Artifact

    ckpt, name = job.ckpt, f"model-{recipe_name}{job.tag}.pte"
    rec = get_recipe(recipe_name, job.group_size)
    job.status(f"executorch: quantizing ({recipe_name})")
    t = time.perf_counter()
    dec = build_decoder(ckpt, job.context_length, use_custom_ops=True, recipe=rec).use_delegate_forms()
    applied = dec.quant_plan
    release_memory()  # the fp32 weights the quantized ones replaced
    obs_q = job.obs_fp32
    if applied:
        obs_q = job.observe(EagerDecoder(dec))
        job.check("quantization", recipe_name, "edgeslm fp32 eager", f"{recipe_name} eager", job.obs_fp32, obs_q,
                  name)
    job.status(f"executorch: lowering to {name}")
    meta = runner_metadata(dec, ckpt.special.bos_id, ckpt.special.eos_ids)
    facts = lower_to_pte(dec, meta, tmp / name)
    job.timings["executorch_export_s"] = time.perf_counter() - t
    del dec
    release_memory()
    job.status(f"executorch: parity in {RUNTIME}")
    obs_rt = job.observe(RuntimeStepModel(PteModel(tmp / name)))
    job.check("lowering", recipe_name, f"{recipe_name} eager", f"{name} in executorch", obs_q, obs_rt, name)
    job.check("end_to_end", recipe_name, "transformers fp32", f"{name} in executorch", job.obs_ref, obs_rt, name,
              gated=False)
    return Artifact(**file_entry(tmp, name), backend="executorch", runtime=RUNTIME, recipe=recipe_name,
                    quantization=[r.describe() for r in rec.rules] if applied else [],
                    facts={**facts, "metadata": meta})


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    """The .pte's forward in the ExecuTorch runtime, streamed as whole characters (see runtime.generate)."""
    from edgeslm.backends.executorch.runtime import generate as run
    from edgeslm.bundle.manifest import read_manifest

    m = read_manifest(bundle)
    context = int(artifact.get("metadata", {}).get("get_max_seq_len", m["context_length"]))
    return run(bundle / artifact["file"], bundle / "tokenizer.json", m["special_tokens"]["eos_ids"], context, prompt,
               max_new_tokens, temperature, on_token)


def step_model(bundle: Path, artifact: dict):
    """The artifact loaded in its runtime: ``step(tokens, start_pos) -> logits`` (bench, parity)."""
    from edgeslm.backends.executorch.runtime import PteModel

    return PteModel(bundle / artifact["file"])


def verifier(bundle: Path, artifact: dict):
    """For speculative decoding: the .pte in the ExecuTorch runtime, verifying one token per call."""
    from edgeslm.backends.executorch.runtime import PteModel

    return PteModel(bundle / artifact["file"])


def run_bare(path: Path, ids: list[int], gen_len: int) -> None:
    """The .pte in the bare ExecuTorch runtime: ``forward(tokens, positions)`` as the app's runner calls it."""
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")

    def last_argmax(out) -> int:
        return int(out.reshape(-1, out.shape[-1])[-1].argmax())

    n = len(ids)
    tok = last_argmax(method.execute([torch.tensor([ids], dtype=torch.long), torch.arange(n, dtype=torch.long)])[0])
    for pos in range(n, n + gen_len):
        tok = last_argmax(method.execute([torch.tensor([[tok]], dtype=torch.long),
                                          torch.tensor([pos], dtype=torch.long)])[0])


class ExecuTorch(Backend):
    name = "executorch"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    app = APP
    runtime_modules = RUNTIME_MODULES
    kv_bytes = 4
    # Preflight (benchmarks/results/peers.md): ExecuTorch holds the quantized model, the exported and delegated
    # programs and the serialized .pte (1B: 4.0 GB over base); plus, per decoder layer, the graphs and traced
    # metadata lowering keeps (SmolLM2-135M, 30 layers: 1.9 GB peak for a 0.5 GB fp32 model).
    lowering_per_fp32_byte = 0.85
    lowering_bytes_per_layer = 24 * 2**20
    seconds_per_layer = 10.0
    host_cpu = True
    has_verifier = True
    has_bare_runtime = True

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact:
        return export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return step_model(bundle, artifact)

    def verifier(self, bundle: Path, artifact: dict):
        return verifier(bundle, artifact)

    def run_bare(self, bundle: Path, artifact: dict, manifest: dict, ids: list[int], gen_len: int) -> None:
        run_bare(bundle / artifact["file"], ids, gen_len)
