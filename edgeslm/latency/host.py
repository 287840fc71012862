"""Facts about the machine measurements were taken on: CPU, cores, memory, and measured memory bandwidth.

Bandwidth is measured, not looked up: decode speed on CPUs is bounded by how fast weights stream from DRAM, so
the host's own figure is what lets the performance model be checked against ``bench`` here.
"""

from __future__ import annotations

import functools
import os
import platform
import statistics
import time
from pathlib import Path


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def measure_bandwidth(mib: int = 512, repeats: int = 7) -> dict:
    """DRAM read bandwidth in GB/s: a reduction over a buffer far larger than the caches, on every core the
    process may use (as the runtimes' decode kernels do); the best of ``repeats``, as STREAM reports (on shared
    machines the median moves with the neighbours' load)."""
    import torch

    n = mib * 2**20 // 4
    buf = torch.ones(n, dtype=torch.float32)
    buf.sum()  # fault the pages in
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        buf.sum()
        rates.append(n * 4 / (time.perf_counter() - t) / 1e9)
    return {"read_gb_s": round(max(rates), 2), "median_gb_s": round(statistics.median(rates), 2), "buffer_mib": mib,
            "threads": torch.get_num_threads(), "method": f"torch.sum over a float32 buffer, best of {repeats}"}


def measure_gflops(n: int = 1024, repeats: int = 5) -> float:
    """fp32 GEMM throughput of this machine (GFLOP/s), median of ``repeats``."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / (time.perf_counter() - t) / 1e9)
    return round(statistics.median(rates), 1)


@functools.cache
def _measured() -> tuple[dict, float]:
    # Measured once per process: a multi-target export writes the same host into every target's latency.json.
    return measure_bandwidth(), measure_gflops()


def host_facts(bandwidth: bool = True) -> dict:
    facts = {"cpu": _cpu_model(), "machine": platform.machine(), "system": platform.system(), "cores": cores(),
             "memory_gb": _memory_gb(), "python": platform.python_version()}
    if bandwidth:
        bw, gflops = _measured()
        facts["memory_bandwidth"] = dict(bw)
        facts["fp32_gemm_gflops"] = gflops
    return facts
