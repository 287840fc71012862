"""One artifact timed in its runtime, in a process of its own (so its peak RSS is that runtime's alone).

    python -m edgeslm.latency.worker BUNDLE INDEX PROMPT_LEN GEN_LEN WARMUP REPEATS  → one JSON line on stdout

Each run: prefill the prompt in one call (time to first token = that call + picking the token), then GEN_LEN
single-token decode steps, each feeding back the argmax. The prompt is fixed pseudo-random token ids (seeded), so
runs and machines compare like for like.
"""

from __future__ import annotations

import json
import platform
import random
import resource
import sys
import time
from pathlib import Path


def _rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if platform.system() == "Darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _current_rss_mib() -> float | None:
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def prompt_ids(vocab_size: int, n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(3, vocab_size) for _ in range(n)]  # skip the usual pad/bos/eos ids


def time_artifact(bundle: Path, index: int, prompt_len: int, gen_len: int, warmup: int, repeats: int) -> dict:
    from edgeslm.backends import get_backend
    from edgeslm.bundle.manifest import read_manifest
    from edgeslm.quiet import native_output_silenced

    m = read_manifest(bundle)
    art = m["artifacts"][index]
    backend = get_backend(art["backend"])
    baseline = _current_rss_mib()
    t = time.perf_counter()
    with native_output_silenced():
        model = backend.step_model(bundle, art)
    load_s = time.perf_counter() - t
    ids = prompt_ids(m["model"]["shape"]["vocab_size"], prompt_len)
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
    return {"load_s": load_s, "runs": runs, "rss_baseline_mib": baseline, "rss_peak_mib": _rss_mib()}


if __name__ == "__main__":
    b, i, p, g, w, n = sys.argv[1:7]
    print(json.dumps(time_artifact(Path(b), int(i), int(p), int(g), int(w), int(n))))
