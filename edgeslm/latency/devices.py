"""Device profiles are data: ``edgeslm/targets/devices/*.toml`` (each number with its source in a comment).

A profile gives the device's peak DRAM bandwidth and usable memory, and per backend the effective fraction of
that bandwidth its decode kernels reach and the effective throughput of its prefill kernels, per kernel kind
(see ``workload.KINDS``). Unknown keys are rejected with the list of supported keys.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeslm.datafiles import builtin, find
from edgeslm.errors import InputError
from edgeslm.latency.workload import KINDS


# Share of datasheet peak DRAM bandwidth a plain streaming read reaches on a CPU (typical STREAM results; an
# assumption used only to turn the host's measured bandwidth into a "peak" comparable to the device files).
STREAM_SHARE = 0.8


@dataclass(frozen=True)
class BackendPerf:
    bandwidth_efficiency: dict[str, float]  # kind → fraction of peak DRAM bandwidth reached while decoding
    prefill_gflops: dict[str, float]  # kind → effective prefill throughput (GFLOP/s or GOP/s)
    runtime: str = ""
    step_overhead_us: float = 0.0  # fixed cost of one decode step (runtime dispatch), dominant for tiny models


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    memory_bandwidth_gb_s: float
    usable_memory_gb: float
    backends: dict[str, BackendPerf] = field(default_factory=dict)
    path: Path | None = None

    def perf(self, backend: str) -> BackendPerf:
        if backend not in self.backends:
            raise InputError(f"device {self.name} has no performance figures for the {backend} backend",
                             f"it has {', '.join(self.backends) or 'none'}; add [backends.{backend}] to "
                             f"{self.path or 'its profile'}")
        return self.backends[backend]


_TOP = {f.name for f in fields(Device)} - {"path"}
_PERF = {f.name for f in fields(BackendPerf)}


def _reject(table: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} in {where}", f"supported keys are {', '.join(sorted(allowed))}")


def parse_device(path: Path) -> Device:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"device file {path} is not valid TOML ({e})", "fix the syntax error it names") from e
    _reject(data, _TOP, f"device file {path}")
    backends = {}
    for name, table in data.pop("backends", {}).items():
        _reject(table, _PERF, f"[backends.{name}] of {path}")
        for key in ("bandwidth_efficiency", "prefill_gflops"):
            _reject(table.get(key, {}), set(KINDS), f"[backends.{name}].{key} of {path}")
        backends[name] = BackendPerf(**table)
    missing = sorted({"name", "description", "memory_bandwidth_gb_s", "usable_memory_gb"} - set(data))
    if missing:
        raise InputError(f"device file {path} lacks {', '.join(missing)}", "add them (see the built-in profiles)")
    return Device(**data, backends=backends, path=path)


def builtin_devices() -> dict[str, Path]:
    return builtin("targets/devices")


def load_device(name_or_path: str | Path) -> Device:
    return parse_device(find(name_or_path, "targets/devices", "device"))


HOST_REFERENCE = "snapdragon-8-gen-3"  # the calibrated CPU profile whose kernel efficiencies the host borrows


def host_device(facts: dict) -> Device:
    """This machine as a device: its *measured* read bandwidth and GEMM throughput, with the CPU kernel
    efficiencies calibrated on the reference phone (the check: do they carry over to another CPU?).

    Measured bandwidth is already an achieved figure, not a datasheet peak, so the efficiencies are applied
    relative to the reference phone's own achievable share of its peak (``STREAM_SHARE``).
    """
    ref = load_device(HOST_REFERENCE)
    bw = facts["memory_bandwidth"]["read_gb_s"] / STREAM_SHARE
    scale = facts["fp32_gemm_gflops"] / ref.perf("executorch").prefill_gflops["float"]
    backends = {}
    for name in ("executorch", "onnx"):
        r = ref.perf(name)
        backends[name] = BackendPerf(dict(r.bandwidth_efficiency), {k: v * scale for k, v in r.prefill_gflops.items()},
                                     "this machine's CPU", r.step_overhead_us)
    return Device("host", f"this machine: {facts['cpu']}, {facts['cores']} cores, measured "
                  f"{facts['memory_bandwidth']['read_gb_s']} GB/s read", bw, facts.get("memory_gb") or 0.0, backends)
