"""Peak RSS of one stretch of a process's life (an artifact's load and generation), above a baseline taken once
the runtime, and nothing else the measurement does not need, is imported.

Why not ``getrusage(RUSAGE_SELF).ru_maxrss`` (what the worker used to report): on Linux it is the high-water mark
of every address space the process has had, and ``exec`` keeps the old one's (``exec_mmap`` folds the old mm's
``hiwater_rss`` into ``signal->maxrss``). A worker started by ``subprocess`` (vfork or fork, then exec) therefore
reported its *parent's* peak when that was higher: ``edgeslm export`` holding a 135M model through lowering
(2.4 GB), or ``edgeslm bench`` after its 512 MiB bandwidth buffer. It also counted the Python, torch and tooling
imports the app does not have. ``VmHWM`` in ``/proc/self/status`` is the current address space's alone, and
writing ``5`` to ``/proc/self/clear_refs`` resets it to the current RSS, so the peak of exactly the measured
stretch is read; where that reset is not permitted, ``VmRSS`` is also sampled in a thread.

This module imports nothing heavy: the bare-runtime reference (:mod:`edgeslm.latency.reference_rss`) uses it too.
"""

from __future__ import annotations

import importlib
import os
import platform
import resource
import subprocess
import threading
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")

def import_runtime(modules: tuple[str, ...]) -> None:
    """Import the Python modules a runtime needs to load and run its artifact (a backend's
    ``runtime_modules``), before the baseline, as an app links the runtime before it loads a model."""
    for name in modules:
        importlib.import_module(name)


def _status_kib() -> dict[str, int]:
    out = {}
    for line in STATUS.read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


def current_rss_mib() -> float | None:
    """This process's resident set now (MiB), or None where it cannot be read."""
    if STATUS.is_file():
        return _status_kib()["VmRSS"] / 1024
    try:  # macOS and other systems without /proc
        out = subprocess.run(["ps", "-o", "rss=", "-p", str(os.getpid())], capture_output=True,
                             text=True, check=True).stdout
        return int(out.split()[0]) / 1024
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return None


def _ru_maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024  # bytes on macOS, KiB on Linux


class PeakRss:
    """``start()`` takes the baseline (and resets the high-water mark); ``read()`` (probe keeps running) and
    ``stop()`` return the peak since then: ``{"baseline_mib", "peak_mib", "above_baseline_mib", "method"}``.

    Methods, best first: ``vmhwm-reset`` (Linux: VmHWM reset through clear_refs at start, read at stop: exact);
    ``vmhwm+sampled`` (Linux without the reset: VmHWM if the stretch raised it, else the highest VmRSS a thread
    sampled every ``interval_s``: misses peaks shorter than the interval or inside a call holding the GIL);
    ``ru_maxrss`` (no /proc, e.g. macOS: the process's lifetime peak, imports included: an upper bound).
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.baseline: float | None = None
        self.method = "vmhwm-reset" if STATUS.is_file() else "ru_maxrss"
        self._hwm_start = 0
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sampled = max(self._sampled, _status_kib()["VmRSS"])

    def start(self) -> float | None:
        if self.method == "ru_maxrss":
            self.baseline = current_rss_mib()
            return self.baseline
        try:
            CLEAR_REFS.write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
        except OSError:
            self.method = "vmhwm+sampled"
        kib = _status_kib()
        self.baseline, self._hwm_start, self._sampled = kib["VmRSS"] / 1024, kib["VmHWM"], kib["VmRSS"]
        if self.method == "vmhwm+sampled":
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self.baseline

    def read(self) -> dict:
        """The peak so far (the probe keeps running)."""
        if self.method == "ru_maxrss":
            peak = _ru_maxrss_mib()
        else:
            kib = _status_kib()
            if self.method == "vmhwm-reset" or kib["VmHWM"] > self._hwm_start:
                peak = kib["VmHWM"] / 1024
            else:  # the stretch stayed below an earlier (import-time) high-water mark
                peak = max(self._sampled, kib["VmRSS"]) / 1024
        base = self.baseline
        return {"baseline_mib": base, "peak_mib": peak,
                "above_baseline_mib": None if base is None else max(peak - base, 0.0), "method": self.method}

    def stop(self) -> dict:
        if self._thread:
            self._stop.set()
            self._thread.join()
            self._sampled = max(self._sampled, _status_kib()["VmRSS"])
        return self.read()
