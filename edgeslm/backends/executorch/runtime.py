"""Run a .pte in the ExecuTorch runtime (the real one from the executorch wheel, not a re-implementation)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from edgeslm.backends.stream import encode_prompt, load_tokenizer, step_tokens, stream_text


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

    def score(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        """Every position's logits, one token per call: the .pte returns the last position's only. (Rejected
        positions need no cutting back: the static cache is written by position and masked causally.)"""
        return torch.stack([self.step([t], start_pos + i) for i, t in enumerate(tokens)]) if tokens \
            else torch.empty(0)

    def truncate(self, length: int) -> None:
        pass

    def metadata(self, name: str):
        m = self.program.load_method(name)
        (out,) = m.execute([])
        return out


def generate(pte: Path, tokenizer_json: Path, eos_ids: list[int], context_length: int, prompt: str,
             max_new_tokens: int, temperature: float = 0.0, on_token: Callable[[str], None] | None = None) -> str:
    """Generate in the ExecuTorch runtime: the .pte's ``forward`` (prefill once, then one token per step through
    its KV cache), the bundle's tokenizer.json, the manifest's eos ids; temperature 0 is greedy, above 0 samples.

    Not through ``TextLLMRunner`` (which the apps link): its Python binding (executorch 1.5) hands each token to
    the callback as a ``str`` decoded from that token's bytes alone, so a token that is part of a multi-byte
    UTF-8 character raises ``UnicodeDecodeError`` inside ``generate``, and it exposes no token ids to assemble
    whole characters from. The program, kernels and delegate that run are the same; only the loop around
    ``forward`` is ours, and its text streams through :class:`edgeslm.backends.stream.TextStream` like every
    other runtime's.
    """
    tok = load_tokenizer(tokenizer_json)
    ids = encode_prompt(tok, prompt)
    tokens = step_tokens(PteModel(pte), ids, max_new_tokens, context_length, temperature)
    return stream_text(tokens, tok, eos_ids, on_token)


def read_pte(path: Path) -> dict:
    """``edgeslm inspect``: methods, forward's inputs/outputs (upper-bound shapes), the runner metadata baked in."""
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
        "format": "executorch",
        "methods": sorted(prog.method_names),
        "inputs": [info(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
        "outputs": [info(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
        "runner_metadata": constants,
    }
