"""Run a .mlpackage in Core ML itself, where that is possible: macOS with coremltools' native extension.

Core ML has no Linux runtime (the coremltools wheel there has no ``libcoremlpython``), so on Linux nothing in
this module runs; :func:`unavailable_here` says why, and the pipeline reports the runtime stage as not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgeslm.backends.coreml.backend import unavailable_here  # noqa: F401  (where Core ML can predict)
from edgeslm.backends.stream import encode_prompt, load_tokenizer, step_tokens, stream_text

COMPUTE_UNITS = "CPU_ONLY"  # parity runs on the CPU: deterministic, available on every Mac (and CI runner)


class CoreMLModel:
    """A loaded package: ``logits = step(tokens, start_pos)``; a call at position 0 starts a fresh KV state."""

    def __init__(self, package: Path, compute_units: str = COMPUTE_UNITS):
        import coremltools as ct

        self.model = ct.models.MLModel(str(package), compute_units=getattr(ct.ComputeUnit, compute_units))
        self.state = None
        tokens = next(i for i in self.model.get_spec().description.input if i.name == "tokens")
        flexible = tokens.type.multiArrayType.WhichOneof("ShapeFlexibility") is not None
        # A Neural Engine package takes a fixed number of tokens per prediction (one): feed prompts in pieces.
        self.per_call = None if flexible else int(tokens.type.multiArrayType.shape[-1])

    def step(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        if start_pos == 0 or self.state is None:
            self.state = self.model.make_state()
        n = self.per_call or len(tokens)
        if len(tokens) % n:
            raise ValueError(f"this package takes {n} tokens per prediction; got {len(tokens)}")
        for i in range(0, len(tokens), n):
            feed = {"tokens": np.array([tokens[i:i + n]], dtype=np.int32),
                    "input_pos": np.arange(start_pos + i, start_pos + i + n, dtype=np.int32)}
            out = self.model.predict(feed, state=self.state)
        return torch.from_numpy(np.asarray(out["logits"], dtype=np.float32).reshape(-1))


def generate(package: Path, tokenizer_json: Path, eos_ids: list[int], context_length: int, prompt: str,
             max_new_tokens: int, temperature: float = 0.0, on_token: Callable[[str], None] | None = None) -> str:
    """Prefill once, then decode token by token through the package's state (what an iOS app does); the text
    streams as whole characters through :class:`edgeslm.backends.stream.TextStream`, as for every runtime."""
    tok = load_tokenizer(tokenizer_json)
    ids = encode_prompt(tok, prompt)
    tokens = step_tokens(CoreMLModel(package, "ALL"), ids, max_new_tokens, context_length, temperature)
    return stream_text(tokens, tok, eos_ids, on_token)
