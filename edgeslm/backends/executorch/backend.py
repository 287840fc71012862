"""ExecuTorch backend: torchao recipe on the decoder → .pte (XNNPACK), parity in the ExecuTorch runtime."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.protocol import AppRuntime, ArtifactFormat, Backend, BareGenerate, BareRun, deferred

if TYPE_CHECKING:  # this module stays importable without torch (the bare-runtime RSS reference imports it)
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "ExecuTorch (XNNPACK delegate)"
RECIPES = ("fp32", "8da4w", "8da4w-asym", "8da4w-asym-emb4", "8da4w-asym-all4", "8da4w-hqq", "int8w")
# For apps (manifest ``load`` / ``app.honoured``): the runtime's id, the package whose version ran parity here,
# and which generation defaults LlmModule applies (it samples with a temperature only).
APP = AppRuntime(runtime="executorch", package="executorch", honoured=("temperature", "max_new_tokens"))
# The runtime plus the kernel libraries our .pte files use (llama:: custom ops, quantized kernels; both register
# into the runtime and pull in torch), imported before an RSS baseline as an app links them before loading.
RUNTIME_MODULES = ("executorch.extension.llm.custom_ops.custom_ops", "executorch.kernels.quantized",
                   "executorch.runtime")


FORMAT = ArtifactFormat("executorch", "an ExecuTorch program", deferred("edgeslm.backends.executorch.runtime", "read_pte"))


def load_entry(artifact: dict) -> dict:
    """What LlmModule opens: the .pte and the bundle's tokenizer.json."""
    return {"path": artifact["file"], "tokenizer": "tokenizer.json"}


def gated_stages(recipe: str) -> dict:
    """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one)."""
    return {"quantization": None, "lowering": None} if recipe != "fp32" else {"lowering": None}


def open_bare(path: Path) -> BareGenerate:
    """The .pte in the bare ExecuTorch runtime, and its generation loop: ``forward(tokens, positions)`` as the
    app's runner calls it, the prompt in one call, then one token per call."""
    import torch  # the bare runtime: nothing else is imported (torch comes with it)
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")

    def last_argmax(out) -> int:
        return int(out.reshape(-1, out.shape[-1])[-1].argmax())

    def generate(ids: list[int], gen_len: int) -> BareRun:
        n = len(ids)
        t0 = time.perf_counter()
        tok = last_argmax(method.execute([torch.tensor([ids], dtype=torch.long),
                                          torch.arange(n, dtype=torch.long)])[0])
        t1 = time.perf_counter()
        for pos in range(n, n + gen_len):
            tok = last_argmax(method.execute([torch.tensor([[tok]], dtype=torch.long),
                                              torch.tensor([pos], dtype=torch.long)])[0])
        return BareRun(t1 - t0, time.perf_counter() - t1, gen_len)

    return generate


class ExecuTorch(Backend):
    name = "executorch"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    search = ("8da4w", "8da4w-hqq", "8da4w-asym-all4", "8da4w-asym-emb4", "8da4w-asym", "int8w")
    app = APP
    runtime_modules = RUNTIME_MODULES
    kv_bytes = 4
    # Preflight (benchmarks/results/peers.md): ExecuTorch holds the quantized model, the exported and delegated
    # programs and the serialized .pte (1B: 4.0 GB over base); plus, per decoder layer, the graphs and traced
    # metadata lowering keeps. With q/k/v and gate/up fused the graph is 40% smaller: the real SmolLM2-135M
    # (30 layers, 8da4w-asym) peaked at 2.29 GB, against 3385 MiB unfused (tests/test_real_size); with the logits
    # term of edgeslm/preflight.py this forecasts it 10% above that, and Gemma-3-270M's ExecuTorch stages (3964 MiB
    # at most) 17% above.
    lowering_per_fp32_byte = 0.85
    lowering_bytes_per_layer = 24 * 2**20
    # Time: lowering (to_edge_transform_and_lower, mostly single-threaded Python passes) per layer and per
    # parameter, fitted to ExecuTorch-only exports of the SmolLM2-135M and Llama-3.2-1B shapes (stop-31 host:
    # 255 and 323 s); on a slower host the 135M lowering alone took 385 s.
    seconds_per_layer = 10.0
    seconds_per_parameter = 4.8e-8
    host_cpu = True
    has_verifier = True
    has_bare_runtime = True

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

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

    def open_bare(self, bundle: Path, artifact: dict, manifest: dict) -> BareGenerate:
        return open_bare(bundle / artifact["file"])
