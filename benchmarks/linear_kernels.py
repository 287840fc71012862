"""torch's fp32 ``F.linear`` against oneDNN's (``edgeslm.parity.kernels.linear``) on the linears parity runs: the
shapes of SmolLM2-135M and Llama-3.2-1B at the row counts the parity passes use (1: a decode step, 8: the batched
greedy reference, 64 and 512: teacher-forced batches). One run, both kernels side by side, the ratio and the
largest relative difference of the outputs.

    .venv/bin/python benchmarks/linear_kernels.py            # writes benchmarks/results/linear_kernels.md
    .venv/bin/python benchmarks/linear_kernels.py --quick    # two shapes, two row counts (the test runs this)
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from edgeslm.parity.kernels import linear  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# (model, layer, out_features, in_features)
SHAPES = (("SmolLM2-135M", "gate_up", 3072, 576), ("SmolLM2-135M", "down", 576, 1536),
          ("SmolLM2-135M", "lm_head", 49152, 576), ("Llama-3.2-1B", "gate", 8192, 2048),
          ("Llama-3.2-1B", "down", 2048, 8192), ("Llama-3.2-1B", "lm_head", 128256, 2048))
ROWS = (1, 8, 64, 512)


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two shapes, two row counts; print only")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    shapes, rows = (SHAPES[:2], ROWS[:2]) if args.quick else (SHAPES, ROWS)
    gen = torch.Generator().manual_seed(0)
    lines = ["| model | layer | N × K | rows | F.linear ms | oneDNN ms | speed-up | max rel. diff |",
             "|---|---|---|---|---|---|---|---|"]
    with torch.no_grad():
        for model, layer, n, k in shapes:
            w = torch.randn(n, k, generator=gen)
            for m in rows:
                x = torch.randn(m, k, generator=gen)
                ref = F.linear(x, w)
                diff = float((linear(x, w) - ref).abs().max() / ref.abs().max())
                a = best_ms(lambda: F.linear(x, w), args.repeats)
                b = best_ms(lambda: linear(x, w), args.repeats)
                lines.append(f"| {model} | {layer} | {n} × {k} | {m} | {a:.2f} | {b:.2f} | {a / b:.2f}× | {diff:.1e} |")
    head = (f"fp32 linear kernels, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}; best of {args.repeats}.\n\n")
    text = head + "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "linear_kernels.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
