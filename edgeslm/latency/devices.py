"""Device profiles are data: ``edgeslm/targets/devices/*.toml`` (each number with its source in a comment).

A profile gives the device's peak DRAM bandwidth and usable memory, and per backend the effective fraction of
that bandwidth its decode kernels reach and the effective throughput of its prefill kernels, per kernel kind
(see ``quant.recipes.KINDS``; a backend names the kinds it runs, e.g. only ``fixed_point`` on an NPU). An accelerator
may add its own limits: the largest model one context holds (``max_context_gb``, with ``limit_source``), and
``static_cache`` when its compiled graphs attend over the whole cache every step. Unknown keys are rejected with
the list of supported keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeslm.backends import all_backends, backend_names
from edgeslm.datafiles import builtin, find, read_toml
from edgeslm.errors import InputError
from edgeslm.quant.recipes import KINDS
from edgeslm.toml_kit import flag, number, reject_unknown, show, text, toml_key

# Share of datasheet peak DRAM bandwidth a plain streaming read reaches on a CPU (typical STREAM results; an
# assumption used only to turn the host's measured bandwidth into a "peak" comparable to the device files).
STREAM_SHARE = 0.8


@dataclass(frozen=True)
class BackendPerf:
    bandwidth_efficiency: dict[str, float]  # kind → fraction of peak DRAM bandwidth reached while decoding
    prefill_gflops: dict[str, float]  # kind → effective prefill throughput (GFLOP/s or GOP/s)
    runtime: str = ""
    step_overhead_us: float = 0.0  # fixed cost of one decode step (runtime dispatch), dominant for tiny models
    static_cache: bool = False  # static-shape graphs: every step reads the whole KV cache (NPU graphs)
    max_context_gb: float = 0.0  # largest model (weights + KV + buffers) one accelerator context holds; 0 = none
    limit_source: str = ""  # where max_context_gb comes from


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


def _number(v, key: str, path: Path, low: float, high: float | None, want: str, example: str,
            low_inclusive: bool = False) -> float:
    return number(v, key, f"device file {path}", low, high, want, example, low_inclusive)


def _text(v, key: str, path: Path, example: str, empty_ok: bool = True) -> str:
    return text(v, key, f"device file {path}", example, empty_ok)


def _per_kind(v, key: str, path: Path, high: float | None, want: str, example: float) -> dict[str, float]:
    kinds = ", ".join(f"{k} = {example}" for k in KINDS)
    if not isinstance(v, dict) or not v:
        raise InputError(f"{key} in device file {path} must be a non-empty table {{kind = number}}, not {show(v)}",
                         f"write e.g. {key.rsplit('.', 1)[-1]} = {{ {kinds} }} (the kinds the backend runs)")
    reject_unknown(v, set(KINDS), f"{key} of {path}")
    return {k: _number(v[k], f"{key}.{k}", path, 0.0, high, want, f"{k} = {example}") for k in KINDS if k in v}


def _backend(name: str, table, path: Path) -> BackendPerf:
    where = f"[backends.{toml_key(name)}]"
    if name not in backend_names():
        raise InputError(f"unknown backend {name!r} ({where}) in device file {path}",
                         f"supported backends are {', '.join(backend_names())}")
    if not isinstance(table, dict):
        raise InputError(f"{where} in device file {path} must be a table, not {show(table)}",
                         "write it as a [backends.NAME] table with bandwidth_efficiency and prefill_gflops")
    reject_unknown(table, _PERF, f"{where} of {path}")
    missing = [k for k in ("bandwidth_efficiency", "prefill_gflops") if k not in table]
    if missing:
        raise InputError(f"{where} in device file {path} lacks {', '.join(missing)}",
                         "add them (see the built-in profiles in edgeslm/targets/devices/)")
    bw = _per_kind(table["bandwidth_efficiency"], f"backends.{name}.bandwidth_efficiency", path, 1.0,
                   "a fraction of peak bandwidth in (0, 1]", 0.6)
    prefill = _per_kind(table["prefill_gflops"], f"backends.{name}.prefill_gflops", path, None,
                        "a finite number of GFLOP/s > 0", 100.0)
    for a, b, ka, kb in ((bw, prefill, "bandwidth_efficiency", "prefill_gflops"),
                         (prefill, bw, "prefill_gflops", "bandwidth_efficiency")):
        missing = [k for k in a if k not in b]
        if missing:
            raise InputError(f"backends.{name}.{kb} in device file {path} lacks {', '.join(missing)}",
                             f"give {kb} and {ka} figures for the same kernel kinds")
    static = flag(table.get("static_cache", False), f"backends.{name}.static_cache", f"device file {path}",
                  "static_cache = true")
    limit = _number(table.get("max_context_gb", 0.0), f"backends.{name}.max_context_gb", path, 0.0, None,
                    "a finite number of GB >= 0 (0: no limit)", "max_context_gb = 3.5", low_inclusive=True)
    source = _text(table.get("limit_source", ""), f"backends.{name}.limit_source", path,
                   'limit_source = "https://..."')
    if limit and not source.strip():
        raise InputError(f"backends.{name}.max_context_gb in device file {path} has no limit_source",
                         "say where the limit comes from: limit_source = \"URL or document\"")
    return BackendPerf(
        bandwidth_efficiency=bw,
        prefill_gflops=prefill,
        static_cache=static,
        max_context_gb=limit,
        limit_source=source,
        runtime=_text(table.get("runtime", ""), f"backends.{name}.runtime", path, 'runtime = "ExecuTorch, XNNPACK"'),
        step_overhead_us=_number(table.get("step_overhead_us", 0.0), f"backends.{name}.step_overhead_us", path, 0.0,
                                 None, "a finite number of microseconds >= 0", "step_overhead_us = 125.0",
                                 low_inclusive=True),
    )


def parse_device(path: Path) -> Device:
    data = read_toml(path, "device file", "see the built-in profiles in edgeslm/targets/devices/")
    reject_unknown(data, _TOP, f"device file {path}")
    missing = sorted({"name", "description", "memory_bandwidth_gb_s", "usable_memory_gb"} - set(data))
    if missing:
        raise InputError(f"device file {path} lacks {', '.join(missing)}", "add them (see the built-in profiles)")
    tables = data.get("backends", {})
    if not isinstance(tables, dict):
        raise InputError(f"backends in device file {path} must be tables like [backends.executorch], not "
                         f"{show(tables)}", "see the built-in profiles in edgeslm/targets/devices/")
    return Device(
        name=_text(data["name"], "name", path, 'name = "my-phone"', empty_ok=False),
        description=_text(data["description"], "description", path, 'description = "what it is"'),
        memory_bandwidth_gb_s=_number(data["memory_bandwidth_gb_s"], "memory_bandwidth_gb_s", path, 0.0, None,
                                      "a finite number of GB/s > 0", "memory_bandwidth_gb_s = 76.8"),
        usable_memory_gb=_number(data["usable_memory_gb"], "usable_memory_gb", path, 0.0, None,
                                 "a finite number of GB > 0", "usable_memory_gb = 8.0"),
        backends={name: _backend(name, table, path) for name, table in tables.items()},
        path=path,
    )


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
    host = [b.name for b in all_backends() if b.host_cpu]  # backends that run on a CPU like this one
    scale = facts["fp32_gemm_gflops"] / ref.perf(host[0]).prefill_gflops["float"]  # the first: fp32 GEMM yardstick
    backends = {}
    for name in host:
        r = ref.perf(name)
        backends[name] = BackendPerf(dict(r.bandwidth_efficiency), {k: v * scale for k, v in r.prefill_gflops.items()},
                                     "this machine's CPU", r.step_overhead_us)
    return Device("host", f"this machine: {facts['cpu']}, {facts['cores']} cores, measured "
                  f"{facts['memory_bandwidth']['read_gb_s']} GB/s read", bw, facts.get("memory_gb") or 0.0, backends)
