"""Run a .pte in the ExecuTorch runtime (the real one from the executorch wheel, not a re-implementation)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch


def _register_kernels() -> None:
    # .pte files using llama:: custom ops or quantized kernels need these registered before loading.
    import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401
    import executorch.kernels.quantized  # noqa: F401


class PteModel:
    """A loaded .pte's ``forward`` method: ``logits = step(tokens, start_pos)``."""

    def __init__(self, path: Path):
        _register_kernels()
        from executorch.runtime import Runtime

        self.program = Runtime.get().load_program(str(path))
        self.method = self.program.load_method("forward")

    def step(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        t = torch.tensor([tokens], dtype=torch.long)
        pos = torch.arange(start_pos, start_pos + len(tokens), dtype=torch.long)
        (out,) = self.method.execute([t, pos])
        return out.reshape(-1, out.shape[-1])[-1].clone()

    def metadata(self, name: str):
        m = self.program.load_method(name)
        (out,) = m.execute([])
        return out


def generate_with_runner(pte: Path, tokenizer_json: Path, prompt: str, max_new_tokens: int,
                         temperature: float = 0.0, on_token: Callable[[str], None] | None = None) -> str:
    """Generate through ExecuTorch's TextLLMRunner, the same C++ runner the mobile apps link."""
    _register_kernels()
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    pieces: list[str] = []

    def cb(piece: str) -> None:
        pieces.append(piece)
        if on_token:
            on_token(piece)

    runner = TextLLMRunner(str(pte), str(tokenizer_json))
    cfg = GenerationConfig(echo=False, max_new_tokens=max_new_tokens, temperature=temperature)
    runner.generate(prompt, cfg, token_callback=cb)
    return "".join(pieces)
