"""Export cost predicted before the heavy work: peak memory and time for this model on this machine.

A user should learn that a model does not fit from a message with figures, not from the OOM killer. The forecast
uses the checkpoint's shape (read from the safetensors headers and config, nothing loaded) and this machine's
memory; its coefficients were measured with edgeslm's own export on real-shape models (benchmarks/peers.py,
benchmarks/results/peers.md) and are refreshed from there. Torch-free.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from edgeslm.backends import get_backend
from edgeslm.eta import about

GiB = 1024**3

# Measured on a 2-core x86 host (benchmarks/results/peers.md; Llama-3.2-1B shape, ONNX alone: peak 6.7 GiB for a
# 4.6 GiB fp32 model). BASE: the process once torch, transformers, executorch and onnxruntime are imported.
BASE_BYTES = int(0.75 * GiB)
# Parity phase: one fp32 model (the transformers reference, whose tensors the decoder then shares) plus activations,
# per fp32 byte.
PARITY_PER_FP32_BYTE = 1.1
# Lowering phase per fp32 byte of the model, plus per decoder layer, and seconds per decoder layer and per parameter:
# each backend's own (lowering_per_fp32_byte, lowering_bytes_per_layer, seconds_per_layer, seconds_per_parameter
# in edgeslm/backends/<name>/backend.py). Seconds on that host per parameter (a tied lm_head counted twice: it is
# quantized apart) for loading with the transformers reference and the fp32 decoder's passes (Llama-3.2-1B shape:
# 39 s; SmolLM2-135M: 5.0 s, forecast 4.2), and for one parity pass of one artifact (each has two, its eager model
# and its runtime; the 1B shape's ONNX passes: 15 and 17.6 s):
REFERENCE_SECONDS_PER_PARAMETER = 2.6e-8
PASS_SECONDS_PER_PARAMETER = 1.1e-8
# Logits held through the export, per vocabulary entry, in every phase: each parity pass keeps its prompts'
# teacher-forced logits ([prompt positions, vocab] fp32; the reference's and the fp32 decoder's live to the end), and
# a batched forward makes its logits (the held-out text: 512 positions) and their log-softmax. Negligible at 32 K
# entries, 1.75 GiB at Gemma 3's 262 K. Fitted with the ONNX coefficient (edgeslm/backends/onnx/backend.py) on
# `export --target android --no-bench` (both backends) of the Gemma-3-270M shape (262,144 entries, fp32 1.0 GiB: peak
# 3429 MiB), the Qwen2.5-0.5B shape (151,936 entries, 1.8 GiB: 4312 MiB) and the Llama-3.2-1B shape (128,256, 4.6
# GiB: 7733 MiB): it forecasts them 18%, 5% and 10% above (tests/test_scale.py).
LOGIT_BYTES_PER_VOCAB_ENTRY = 7 * 1024


@dataclass(frozen=True)
class Forecast:
    """Predicted peak RSS and wall time of one export, and the memory this machine has for it; kept in parts
    (each backend's lowering, the parity phase, the reference, one parity pass) so a progress display can give
    each stage its share and a subset of the artifacts its own forecast (:meth:`only`)."""

    backends: tuple[str, ...]  # one per artifact
    parity_peak_bytes: int
    lowering_peak_bytes: dict  # backend → peak while it lowers
    reference_s: float  # loading, the transformers reference and the fp32 decoder
    pass_s: float  # one parity pass of one artifact (each has two: eager and in its runtime)
    lowering_s: dict  # backend → seconds to lower one artifact
    available_bytes: int | None
    fp32_bytes: int

    @property
    def peak_bytes(self) -> int:
        return max([self.parity_peak_bytes, *(self.lowering_peak_bytes[b] for b in self.backends)])

    @property
    def seconds(self) -> float:
        return self.reference_s + sum(2 * self.pass_s + self.lowering_s[b] for b in self.backends)

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.peak_bytes <= self.available_bytes

    def only(self, backends: list[str]) -> Forecast:
        """The forecast of an export building just these artifacts (one backend name per artifact)."""
        return replace(self, backends=tuple(backends))

    def describe(self) -> str:
        avail = f" of {self.available_bytes / GiB:.1f} GiB available" if self.available_bytes else ""
        return (f"predicted peak memory {self.peak_bytes / GiB:.1f} GiB{avail} "
                f"(fp32 model {self.fp32_bytes / GiB:.1f} GiB), about {about(self.seconds)} on this machine")

    def to_json(self) -> dict:
        return {"peak_rss_mib": round(self.peak_bytes / 2**20), "seconds": round(self.seconds),
                "available_mib": round(self.available_bytes / 2**20) if self.available_bytes else None,
                "fp32_mib": round(self.fp32_bytes / 2**20)}


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still take: MemAvailable, or less where a cgroup (container, CI job) limits it."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit, used = _read_int("/sys/fs/cgroup/memory.max"), _read_int("/sys/fs/cgroup/memory.current")
    if limit is not None and used is not None:
        avail = min(avail, limit - used) if avail is not None else limit - used
    return avail


def forecast(parameters: int, vocab_size: int, hidden_size: int, num_layers: int, tied: bool,
             backends: list[str], available: int | None = None, costs: dict | None = None) -> Forecast:
    """The forecast for exporting a model of this shape to ``backends`` (one entry per artifact): the larger of
    the parity phase and the most demanding lowering, over the base and the logits the parity passes hold.
    ``costs``: backend → :class:`~edgeslm.backends.protocol.LoweringCost` where the targets send it down another
    path than its usual one (``Backend.lowering_cost``)."""
    fp32 = 4 * parameters
    chosen = {b: (costs or {}).get(b) or get_backend(b).lowering_cost(None) for b in backends}
    untied = parameters + (vocab_size * hidden_size if tied else 0)  # lm_head gets its own copy to be quantized
    base = BASE_BYTES + LOGIT_BYTES_PER_VOCAB_ENTRY * vocab_size
    return Forecast(
        tuple(backends), int(base + PARITY_PER_FP32_BYTE * fp32),
        {n: int(base + b.per_fp32_byte * fp32 + b.bytes_per_layer * num_layers) for n, b in chosen.items()},
        REFERENCE_SECONDS_PER_PARAMETER * untied, PASS_SECONDS_PER_PARAMETER * untied,
        {n: b.seconds_per_layer * num_layers + b.seconds_per_parameter * untied for n, b in chosen.items()},
        available, fp32)


def env_available() -> int | None:
    """``available_memory()``, or EDGESLM_MEMORY_BYTES when set (to rehearse a smaller machine, e.g. in tests)."""
    forced = os.environ.get("EDGESLM_MEMORY_BYTES")
    return int(forced) if forced else available_memory()
