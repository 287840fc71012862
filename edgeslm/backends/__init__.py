"""Backend registry: each backend turns the (quantized) decoder into an artifact and runs it back here.

Adding a backend (ONNX, Core ML) means adding one entry to ``BACKENDS``; the pipeline never branches on names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True)
class Backend:
    name: str
    runtime: str  # what runs the artifact here
    suffix: str
    use_custom_ops: bool  # build the decoder with this runtime's fused attention / KV-cache ops
    lower: Callable  # (decoder, ckpt, path) -> dict of facts for the manifest
    load: Callable  # (path) -> object with step(tokens, start_pos) -> logits
    generate: Callable  # (bundle, artifact entry, prompt, max_new_tokens, temperature, on_token) -> text

    def artifact_name(self, recipe: str) -> str:
        return f"model-{recipe}{self.suffix}"


def _et_lower(decoder, ckpt, path: Path) -> dict:
    from edgeslm.backends.executorch.export import lower_to_pte, runner_metadata

    meta = runner_metadata(decoder, ckpt.special.bos_id, ckpt.special.eos_ids)
    facts = lower_to_pte(decoder, meta, path)
    return {**facts, "metadata": meta}


def _et_load(path: Path):
    from edgeslm.backends.executorch.runtime import PteModel

    return PteModel(path)


def _et_generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    from edgeslm.backends.executorch.runtime import generate_with_runner

    return generate_with_runner(bundle / artifact["file"], bundle / "tokenizer.json", prompt, max_new_tokens,
                                temperature, on_token)


BACKENDS: dict[str, Backend] = {
    "executorch": Backend(
        name="executorch",
        runtime="ExecuTorch (XNNPACK delegate), TextLLMRunner",
        suffix=".pte",
        use_custom_ops=True,
        lower=_et_lower,
        load=_et_load,
        generate=_et_generate,
    ),
}
