"""The memory an artifact costs in its bare runtime: the runtime's own loop, nothing of edgeslm's tooling imported.
``bench``'s worker loads an artifact this way (:func:`open_measured`), its ``peak_rss_mib`` taken over the load and
the first run, then times the same loop; run on its own in a fresh interpreter (:func:`reference_rss`) it is the
yardstick ``bench`` is checked against (issue 12: within 10%).

    python -m edgeslm.latency.reference_rss BUNDLE [--prompt-len 128] [--gen-len 64] [--reference-only]
        → JSON, one row per artifact: bench's figure beside the fresh bare-runtime one, and their ratio

:func:`reference_rss` runs the artifact in a fresh interpreter (``python -s -c``) that imports only the
runtime (its backend's ``runtime_modules``: for ExecuTorch ``executorch.runtime`` plus the custom-ops and
quantized-kernel libraries; for ONNX ``numpy`` and ``onnxruntime_genai``), reads the manifest with ``json``, takes
its RSS, then loads the artifact the way an app does and generates once (the backend's ``open_bare``): a
``prompt_len``-token prefill and ``gen_len`` decode steps. Reported: peak RSS over load + generation minus that
baseline. None of edgeslm's export harness, model code or transformers is imported (``edgeslm``,
``edgeslm.latency`` and the backend registry and backend modules import nothing heavy; the ExecuTorch kernel
libraries themselves pull in torch and torchao).

Backends with a bare loop (``has_bare_runtime``): ExecuTorch (``Runtime.get().load_program(pte)``,
``forward(tokens, positions)`` as the app's runner calls it) and ONNX (``onnxruntime_genai`` on the CPU provider).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edgeslm.backends import backend_names, get_backend  # light: no backend's heavy imports
from edgeslm.backends.protocol import BareGenerate, BareRun
from edgeslm.latency.rss import PeakRss, import_runtime


def prompt_ids(vocab_size: int, n: int, seed: int = 0) -> list[int]:
    """The fixed pseudo-random prompt bench and this reference feed (seeded: runs and machines compare alike)."""
    rng = random.Random(seed)
    return [rng.randrange(3, vocab_size) for _ in range(n)]  # skip the usual pad/bos/eos ids


def has_bare_runtime(backend: str) -> bool:
    """Whether artifacts of ``backend`` have a bare-runtime loop (a reference for their RSS)."""
    return get_backend(backend).has_bare_runtime


@dataclass
class BareSession:
    """An artifact loaded in its bare runtime by :func:`open_measured`: its generation loop, the prompt, how long
    the load took, the first run, and the peak RSS over load + that run."""

    generate: BareGenerate
    ids: list[int]
    load_s: float
    first: BareRun
    rss: dict


def open_measured(bundle: Path, index: int, prompt_len: int, gen_len: int) -> BareSession:
    """In *this* process (a fresh interpreter, or bench's worker before it imports anything else): import the
    runtime, take the baseline, load the artifact the way an app does and generate once, read the peak."""
    m = json.loads((bundle / "manifest.json").read_text())
    art = m["artifacts"][index]
    backend = get_backend(art["backend"])
    if not backend.has_bare_runtime:
        supported = [b for b in backend_names() if get_backend(b).has_bare_runtime]
        raise ValueError(f"no bare-runtime reference for {backend.name} artifacts (supported: {', '.join(supported)})")
    import_runtime(backend.runtime_modules)
    ids = prompt_ids(m["model"]["shape"]["vocab_size"], prompt_len)
    probe = PeakRss()
    probe.start()
    t = time.perf_counter()
    generate = backend.open_bare(bundle, art, m)
    load_s = time.perf_counter() - t
    first = generate(ids, gen_len)
    return BareSession(generate, ids, load_s, first, probe.stop())


def measure_here(bundle: Path, index: int, prompt_len: int, gen_len: int) -> dict:
    """:func:`open_measured`'s figures, with the modules of edgeslm's tooling that were imported (none)."""
    rss = open_measured(bundle, index, prompt_len, gen_len).rss
    art = json.loads((bundle / "manifest.json").read_text())["artifacts"][index]
    tooling = sorted(k for k in ("transformers", "edgeslm.backends.base", "edgeslm.model", "edgeslm.pipeline", "onnx")
                     if k in sys.modules)  # none: asserted by the tests
    return {"artifact": art["file"], "backend": art["backend"], "rss_baseline_mib": rss["baseline_mib"],
            "rss_peak_mib": rss["peak_mib"], "rss_above_baseline_mib": rss["above_baseline_mib"],
            "rss_method": rss["method"], "tooling_imported": tooling}


def reference_rss(bundle: Path, index: int, prompt_len: int = 128, gen_len: int = 64) -> dict:
    """Artifact ``index`` of ``bundle`` in its bare runtime, in a fresh interpreter (see module doc)."""
    code = ("import json, sys; from pathlib import Path; from edgeslm.latency.reference_rss import measure_here; "
            "print(json.dumps(measure_here(Path(sys.argv[1]), *map(int, sys.argv[2:]))))")
    cmd = [sys.executable, "-s", "-c", code, str(Path(bundle).resolve()), str(index), str(prompt_len), str(gen_len)]
    root = str(Path(__file__).resolve().parents[2])  # edgeslm importable whether installed or run from a checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"bare-runtime reference failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_vs_runtime(bundle: Path, prompt_len: int = 128, gen_len: int = 64, warmup: int = 1,
                     repeats: int = 3) -> list[dict]:
    """Per artifact: ``bench``'s ``peak_rss_mib`` beside the bare runtime's figure and their ratio (the table
    the benchmark shows). Artifacts bench cannot run here, or with no bare reference, carry ``reason``."""
    from edgeslm.latency.bench import bench_bundle  # not at the top: a bare-runtime process imports this module


    rows = []
    for i, b in enumerate(bench_bundle(Path(bundle), prompt_len, gen_len, warmup, repeats)):
        row = {"artifact": b["artifact"], "backend": b["backend"]}
        if not b["measured"] or not has_bare_runtime(b["backend"]):
            rows.append({**row, "reason": b.get("reason", f"no bare-runtime reference for {b['backend']}")})
            continue
        ref = reference_rss(Path(bundle), i, prompt_len, gen_len)
        rt = ref["rss_above_baseline_mib"]
        rows.append({**row, "bench_peak_rss_mib": round(b["peak_rss_mib"], 1), "runtime_rss_mib": round(rt, 1),
                     "ratio": round(b["peak_rss_mib"] / rt, 3) if rt else None,
                     "bench_measured_in": b["rss_measured_in"],
                     "runtime_baseline_mib": round(ref["rss_baseline_mib"], 1), "rss_method": ref["rss_method"]})
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--gen-len", type=int, default=64)
    ap.add_argument("--reference-only", action="store_true", help="skip bench; only the bare-runtime figures")
    a = ap.parse_args()
    if a.reference_only:
        arts = json.loads((a.bundle / "manifest.json").read_text())["artifacts"]
        out = [reference_rss(a.bundle, i, a.prompt_len, a.gen_len) for i, art in enumerate(arts)
               if has_bare_runtime(art["backend"])]
    else:
        out = bench_vs_runtime(a.bundle, a.prompt_len, a.gen_len)
    print(json.dumps(out, indent=2))
