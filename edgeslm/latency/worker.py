"""One artifact timed in its runtime, in a process of its own.

    python -m edgeslm.latency.worker BUNDLE INDEX PROMPT_LEN GEN_LEN WARMUP REPEATS  → one JSON line on stdout

Each run: prefill the prompt in one call, picking the first token (time to first token), then GEN_LEN single-token
decode steps, each feeding back the token picked. The prompt is fixed pseudo-random token ids (seeded), so runs and
machines compare like for like.

Backends with a bare loop (``has_bare_runtime``: ExecuTorch, onnxruntime-genai) are timed in it: the process
imports the runtime's modules only, takes its RSS, loads the artifact the way an app does and generates once (the
first run, a warm-up unless WARMUP is 0), and the peak over that is ``rss_*``
(:func:`edgeslm.latency.reference_rss.open_measured`); the timed runs go on in the same loop. Nothing of edgeslm's
export harness (torch's model code, transformers) is imported, so neither the memory nor the start-up carry it.
Other backends are timed through their step model (``step(tokens, start_pos) -> logits``), the memory probed over
its load and first run. No figure includes the parent's memory (see :mod:`edgeslm.latency.rss`).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edgeslm.backends.protocol import BareRun
from edgeslm.latency.reference_rss import BareSession, has_bare_runtime, open_measured, prompt_ids
from edgeslm.latency.rss import PeakRss
from edgeslm.progress import COUNT_LINE, Count, no_count
from edgeslm.quiet import native_output_silenced


def time_artifact(bundle: Path, index: int, prompt_len: int, gen_len: int, warmup: int, repeats: int,
                  on_run: Count = no_count) -> dict:
    """``warmup`` + ``repeats`` runs, the memory measured over the load and the first (``on_run(done, total)``
    after each run)."""
    backend = json.loads((bundle / "manifest.json").read_text())["artifacts"][index]["backend"]
    bare = has_bare_runtime(backend)
    total = warmup + repeats
    with native_output_silenced():
        s = (open_measured if bare else _open_step_model)(bundle, index, prompt_len, gen_len)
        runs = [s.first]
        on_run(1, total)
        for r in range(1, total):
            runs.append(s.generate(s.ids, gen_len))
            on_run(r + 1, total)
    return {"load_s": s.load_s,
            "runs": [{"ttft_s": x.ttft_s, "decode_s": x.decode_s, "decode_steps": x.steps} for x in runs[warmup:]],
            "rss_baseline_mib": s.rss["baseline_mib"], "rss_peak_mib": s.rss["peak_mib"],
            "rss_above_baseline_mib": s.rss["above_baseline_mib"], "rss_method": s.rss["method"],
            "rss_memory_pass": "bare runtime" if bare else "step model"}


def _open_step_model(bundle: Path, index: int, prompt_len: int, gen_len: int) -> BareSession:
    """For a backend without a bare loop, :func:`open_measured` through its step model: the runtime and its glue
    imported first (so that ``load_s`` is the artifact's load alone), then loaded and run once under the probe."""
    from edgeslm.backends import get_backend
    from edgeslm.manifest import read_manifest

    m = read_manifest(bundle)
    art = m["artifacts"][index]
    backend = get_backend(art["backend"])
    backend.preload_runtime()
    ids = prompt_ids(m["model"]["shape"]["vocab_size"], prompt_len)
    probe = PeakRss()
    probe.start()
    t = time.perf_counter()
    model = backend.step_model(bundle, art)
    load_s = time.perf_counter() - t

    def generate(ids: list[int], gen_len: int) -> BareRun:
        t0 = time.perf_counter()
        tok = int(model.step(ids, 0).argmax())
        t1 = time.perf_counter()
        for pos in range(len(ids), len(ids) + gen_len):
            tok = int(model.step([tok], pos).argmax())
        return BareRun(t1 - t0, time.perf_counter() - t1, gen_len)

    first = generate(ids, gen_len)
    return BareSession(generate, ids, load_s, first, probe.stop())


def _report_runs() -> Count:
    """``count K N`` lines on the real stdout (a copy of fd 1 taken before the runtime's output is silenced), for
    the parent's progress display."""
    progress = os.fdopen(os.dup(1), "w", buffering=1)
    return lambda done, total: progress.write(f"{COUNT_LINE}{done} {total}\n")


if __name__ == "__main__":
    b, i, p, g, w, n = sys.argv[1:7]
    print(json.dumps(time_artifact(Path(b), int(i), int(p), int(g), int(w), int(n), _report_runs())))
