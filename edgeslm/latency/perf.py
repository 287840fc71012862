"""The performance model: an artifact's workload on a device profile → TTFT, prefill and decode speed, memory.

- decode is memory-bound: each step streams the weights (minus skipped embedding rows) and the KV cache up to
  its position, at the device's peak bandwidth × the backend's decode efficiency for that kernel kind;
- prefill is compute-bound: linear FLOPs + causal attention FLOPs over the prompt, at the backend's effective
  prefill throughput (roofline: at least the time to read the weights once);
- memory = weights + full-context KV cache + working buffers, against the device's usable memory.

Predictions come as a range: the point estimate ± ``UNCERTAINTY`` (the error seen on published figures the model
was not fitted to; docs/latency.md).
"""

from __future__ import annotations

from edgeslm.latency.devices import Device
from edgeslm.latency.workload import Workload

UNCERTAINTY = 0.25

ASSUMPTIONS = [
    "decode is memory-bound: every step reads all weights (except embedding rows a gather skips) and the KV "
    "cache up to its position, at peak DRAM bandwidth × the backend's measured efficiency for its kernel kind",
    "prefill is compute-bound (roofline): 2 FLOPs per weight per token plus causal attention, at the backend's "
    "effective throughput for its kernel kind, or the time to read the weights once if that is longer",
    "each decode step also pays a fixed runtime cost (dispatch), measured on the build host and assumed for "
    "devices; it matters only for tiny models",
    "efficiencies are calibrated on published ExecuTorch figures (docs/latency.md) and assumed to carry over to "
    "devices of the same class; thermal throttling, other apps and the OS are not modelled",
    f"range = point estimate ± {UNCERTAINTY:.0%}, the error seen on published figures the model was not fitted to",
    "memory = weights + full-context KV cache + working buffers; the app's own memory is not included",
    "an NPU with static-shape graphs (static_cache in its profile) reads the whole compiled KV cache every step, "
    "and refuses a model whose footprint exceeds what one of its contexts holds (max_context_gb)",
]


def _band(point: float) -> dict:
    return {"low": point * (1 - UNCERTAINTY), "point": point, "high": point * (1 + UNCERTAINTY)}


def decode_seconds(w: Workload, device: Device, backend: str, start: int, steps: int) -> float:
    perf = device.perf(backend)
    bw = device.memory_bandwidth_gb_s * 1e9 * perf.bandwidth_efficiency[w.kind]
    if perf.static_cache:  # the compiled graph attends over every cache slot, filled or not
        kv = w.kv_bytes_per_position * w.context_length * steps
    else:
        kv = w.kv_bytes_per_position * (steps * start + steps * (steps - 1) / 2)  # positions start..start+steps-1
    return (w.streamed_bytes * steps + kv) / bw + steps * perf.step_overhead_us * 1e-6


def prefill_flops(w: Workload, prompt_len: int) -> float:
    return w.linear_flops * prompt_len + w.attention_flops_per_position * prompt_len * (prompt_len + 1) / 2


def prefill_seconds(w: Workload, device: Device, backend: str, prompt_len: int) -> float:
    """Roofline: the slower of computing the prompt and reading the weights once."""
    perf = device.perf(backend)
    bw = device.memory_bandwidth_gb_s * 1e9 * perf.bandwidth_efficiency[w.kind]
    return max(prefill_flops(w, prompt_len) / (perf.prefill_gflops[w.kind] * 1e9), w.weight_bytes / bw)


def footprint_bytes(w: Workload) -> float:
    """What the artifact holds while running: weights, the full-context KV cache and working buffers."""
    return w.weight_bytes + w.kv_bytes(w.context_length) + w.activation_bytes * w.context_length


def over_limit(w: Workload, device: Device, backend: str) -> str | None:
    """Why ``device``'s accelerator refuses this workload (its per-context limit), or None."""
    perf = device.perf(backend)
    need = footprint_bytes(w)
    if perf.max_context_gb and need > perf.max_context_gb * 1e9:
        return (f"predicted footprint {need / 1e9:.2f} GB (weights {w.weight_bytes / 1e9:.2f} GB + KV cache and "
                f"buffers at context {w.context_length}) exceeds the {perf.max_context_gb:g} GB one "
                f"{device.name} context holds ({perf.limit_source})")
    return None


def predict(w: Workload, device: Device, backend: str, prompt_len: int, gen_len: int) -> dict:
    prefill = prefill_seconds(w, device, backend, prompt_len)
    decode = decode_seconds(w, device, backend, prompt_len, gen_len)
    memory = footprint_bytes(w)
    decode_tps, prefill_tps = gen_len / decode, prompt_len / prefill
    return {
        "device": device.name,
        "backend": backend,
        "kernel_kind": w.kind,
        "prompt_len": prompt_len,
        "gen_len": gen_len,
        "ttft_ms": _band(prefill * 1e3),
        "prefill_tok_s": _band(prefill_tps),
        "decode_tok_s": _band(decode_tps),
        "memory_mb": memory / 1e6,
        "fits_in_memory": memory <= device.usable_memory_gb * 1e9,
        "over_limit": over_limit(w, device, backend),
        "inputs": {"weight_bytes": w.weight_bytes, "streamed_bytes_per_token": w.streamed_bytes,
                   "kv_bytes_per_position": w.kv_bytes_per_position, "linear_flops_per_token": w.linear_flops,
                   "memory_bandwidth_gb_s": device.memory_bandwidth_gb_s,
                   "bandwidth_efficiency": device.perf(backend).bandwidth_efficiency[w.kind],
                   "prefill_gflops": device.perf(backend).prefill_gflops[w.kind],
                   "step_overhead_us": device.perf(backend).step_overhead_us,
                   **({"max_context_gb": device.perf(backend).max_context_gb}
                      if device.perf(backend).max_context_gb else {})},
    }
