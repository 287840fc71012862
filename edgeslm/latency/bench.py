"""``edgeslm bench``: every artifact of a bundle timed in its real runtime on this machine.

Each artifact runs in its own process (``edgeslm.latency.worker``): warm-up runs, then repeats; reported as median
with min/max. Artifacts whose runtime cannot run here (Core ML off macOS) are listed as not measured, with why.
Before anything is timed, every artifact that will load is checked against the manifest (sizes and sha256,
:func:`edgeslm.integrity.check_artifact`): a changed or corrupt file is refused, never timed.

Artifacts are timed in their runtime's own loop where the backend has one (``rss_measured_in``: "bare runtime":
the worker imports the runtime only, loads the artifact the way an app does, and times the app's prefill and
decode calls), through the backend's step model otherwise ("step model"). ``peak_rss_mib`` is the memory the
artifact costs in its runtime: peak RSS over loading it and generating one response (prompt + new tokens), minus
the RSS of the worker before the load (``rss_before_load_mib``). See :mod:`edgeslm.latency.worker` and
:mod:`edgeslm.latency.rss` (why not ``ru_maxrss``: it carried the exporting parent's peak across exec).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

from edgeslm.backends import get_backend, unavailable_here
from edgeslm.integrity import check_artifact
from edgeslm.manifest import read_manifest
from edgeslm.records import artifact_name
from edgeslm.errors import InputError, InternalError
from edgeslm.latency.workload import require_shape
from edgeslm.progress import COUNT_LINE, Count, counter


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(raw: dict, prompt_len: int, gen_len: int) -> dict:
    runs = raw["runs"]
    ttft = [r["ttft_s"] * 1e3 for r in runs]
    return {
        "measured": True,
        "ttft_ms": _spread(ttft),
        "prefill_tok_s": _spread([prompt_len / r["ttft_s"] for r in runs]),
        "decode_tok_s": _spread([r["decode_steps"] / r["decode_s"] for r in runs]),
        "load_s": raw["load_s"],
        "peak_rss_mib": raw["rss_above_baseline_mib"],  # the artifact's cost: above the runtime-only baseline
        "rss_before_load_mib": raw["rss_baseline_mib"],
        "rss_method": raw["rss_method"],
        "rss_measured_in": raw["rss_memory_pass"],
        "runs": len(runs),
    }


def bench_bundle(bundle: Path, prompt_len: int = 128, gen_len: int = 64, warmup: int = 1, repeats: int = 3,
                 status: Callable[[str], None] = lambda msg: None) -> list[dict]:
    m = read_manifest(bundle)
    ctx = m["context_length"]
    if prompt_len < 1 or gen_len < 1 or repeats < 1 or warmup < 0:
        raise InputError("prompt length, generation length and repeats must be at least 1",
                         "pass e.g. --prompt-len 128 --gen-len 64 --repeats 3")
    if prompt_len + gen_len > ctx:
        raise InputError(f"prompt + generation ({prompt_len + gen_len}) exceed the bundle's context length ({ctx})",
                         f"pass --prompt-len and --gen-len summing to {ctx} or less")
    require_shape(m, bundle)
    for art in m["artifacts"]:  # every artifact that will load, checked before any is timed
        if not unavailable_here(art["backend"]):
            check_artifact(bundle, art, m)
    out = []
    runs = counter(status, "runs")
    for i, art in enumerate(m["artifacts"]):
        name = artifact_name(art)
        entry = {"artifact": name, "backend": art["backend"], "recipe": art["recipe"],
                 "runtime": get_backend(art["backend"]).runtime}
        why_not = unavailable_here(art["backend"])
        if why_not:
            out.append({**entry, "measured": False, "reason": why_not})
            continue
        status(f"bench: {name} ({warmup} warm-up + {repeats} runs, prompt {prompt_len}, {gen_len} new tokens)")
        raw = _run_worker(bundle, i, prompt_len, gen_len, warmup, repeats, runs, name)
        out.append({**entry, **summarize(raw, prompt_len, gen_len)})
    return out


def _run_worker(bundle: Path, index: int, prompt_len: int, gen_len: int, warmup: int, repeats: int, runs: Count,
                name: str) -> dict:
    """One artifact timed by ``edgeslm.latency.worker`` in its own process; its ``count K N`` lines go to
    ``runs`` as they come, its last line is the result."""
    cmd = [sys.executable, "-m", "edgeslm.latency.worker", str(bundle), str(index), str(prompt_len), str(gen_len),
           str(warmup), str(repeats)]
    lines = []
    with tempfile.TemporaryFile("w+") as err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                                               text=True) as proc:
        for line in proc.stdout:
            if line.startswith(COUNT_LINE):
                runs(*map(int, line.split()[1:3]))
            else:
                lines.append(line)
        if proc.wait() != 0:
            err.seek(0)
            raise InternalError(f"timing {name} failed: {err.read().strip().splitlines()[-1:]}",
                                "re-run with EDGESLM_DEBUG=1 to see the runtime's output")
    return json.loads("".join(lines).strip().splitlines()[-1])
