"""One artifact timed in its runtime, in a process of its own.

    python -m edgeslm.latency.worker BUNDLE INDEX PROMPT_LEN GEN_LEN WARMUP REPEATS  → one JSON line on stdout

Each run: prefill the prompt in one call (time to first token = that call + picking the token), then GEN_LEN
single-token decode steps, each feeding back the argmax. The prompt is fixed pseudo-random token ids (seeded), so
runs and machines compare like for like.

Memory (``rss_*``) is measured in a first pass, before anything but the runtime is imported: the runtime's
modules only, baseline RSS, high-water mark reset, the artifact loaded and one response generated the way an app
does (:func:`edgeslm.latency.reference_rss.measure_here`), peak read. ``rss_above_baseline_mib`` is what the
artifact costs in its runtime. Only then are edgeslm's backends imported and the artifact loaded again through
its step model for the timed runs: that harness (torch, model code, a ``step`` that hands back logits) is not what
an app runs (onnxruntime-genai's step model copies the prefill's full logits out: +47 MiB at a 49k vocabulary and
128 prompt tokens, on ~203 MiB). No figure includes the parent's memory (see :mod:`edgeslm.latency.rss`).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

from edgeslm.latency.reference_rss import has_bare_runtime, measure_here, prompt_ids
from edgeslm.latency.rss import PeakRss
from edgeslm.progress import COUNT_LINE, Count, no_count
from edgeslm.quiet import native_output_silenced


def _memory_in_bare_runtime(bundle: Path, index: int, prompt_len: int, gen_len: int) -> dict | None:
    """Pass 1, before anything but the runtime is imported: the artifact loaded and one response generated the
    way an app does (:func:`edgeslm.latency.reference_rss.measure_here`). None for runtimes it has no loop for."""
    backend = json.loads((bundle / "manifest.json").read_text())["artifacts"][index]["backend"]
    if not has_bare_runtime(backend):
        return None
    with native_output_silenced():
        rss = measure_here(bundle, index, prompt_len, gen_len)
    gc.collect()  # the program / model of pass 1 is gone before pass 2 loads its own
    return rss


def time_artifact(bundle: Path, index: int, prompt_len: int, gen_len: int, warmup: int, repeats: int,
                  on_run: Count = no_count) -> dict:
    """The memory pass, then ``warmup`` + ``repeats`` timed runs (``on_run(done, total)`` after each)."""
    memory = _memory_in_bare_runtime(bundle, index, prompt_len, gen_len)

    # Only now, after the bare-runtime pass: the registry's step models and the validating manifest reader.
    from edgeslm.backends import get_backend
    from edgeslm.manifest import read_manifest

    m = read_manifest(bundle)
    art = m["artifacts"][index]
    backend = get_backend(art["backend"])
    backend.preload_runtime()  # the runtime and its glue: no import lands inside a measured stretch
    ids = prompt_ids(m["model"]["shape"]["vocab_size"], prompt_len)
    probe = PeakRss() if memory is None else None  # no bare loop for this runtime: the step model stands in
    if probe:
        probe.start()
    t = time.perf_counter()
    with native_output_silenced():
        model = backend.step_model(bundle, art)
    load_s = time.perf_counter() - t
    runs = []
    with native_output_silenced():
        for r in range(warmup + repeats):
            t0 = time.perf_counter()
            tok = int(model.step(ids, 0).argmax())
            ttft = time.perf_counter() - t0
            t1 = time.perf_counter()
            for pos in range(prompt_len, prompt_len + gen_len):
                tok = int(model.step([tok], pos).argmax())
            decode = time.perf_counter() - t1
            if r >= warmup:
                runs.append({"ttft_s": ttft, "decode_s": decode})
            on_run(r + 1, warmup + repeats)
            if probe and r == 0:  # load + one generation, as the bare pass measures
                first = probe.stop()
                memory = {"rss_baseline_mib": first["baseline_mib"], "rss_peak_mib": first["peak_mib"],
                          "rss_above_baseline_mib": first["above_baseline_mib"], "rss_method": first["method"]}
    return {"load_s": load_s, "runs": runs, "rss_baseline_mib": memory["rss_baseline_mib"],
            "rss_peak_mib": memory["rss_peak_mib"], "rss_above_baseline_mib": memory["rss_above_baseline_mib"],
            "rss_method": memory["rss_method"],
            "rss_memory_pass": "step model" if probe else "bare runtime"}


def _report_runs() -> Count:
    """``count K N`` lines on the real stdout (a copy of fd 1 taken before the runtime's output is silenced), for
    the parent's progress display."""
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    return lambda done, total: progress.write(f"{COUNT_LINE}{done} {total}\n")


if __name__ == "__main__":
    b, i, p, g, w, n = sys.argv[1:7]
    print(json.dumps(time_artifact(Path(b), int(i), int(p), int(g), int(w), int(n), _report_runs())))
