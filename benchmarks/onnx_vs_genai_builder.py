"""ONNX export, side by side: edgeslm vs onnxruntime-genai's model builder on the same model and precision.

Both folders are run through onnxruntime-genai itself (teacher-forced logits on edgeslm's parity prompts, then
32 greedy tokens) and compared with the transformers fp32 reference with the same metrics edgeslm reports.
Decode speed is tokens/s of onnxruntime-genai greedy generation (median of 3). Prints a table with ratios.

    .venv/bin/python benchmarks/onnx_vs_genai_builder.py [MODEL_DIR] [--out benchmarks/results]

The builder co-installs with edgeslm's pins (../shared/STACK.md), so both run in this one venv.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from edgeslm.backends.onnx.runtime import GenaiModel, load_genai_model
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.parity.models import HFModel, RuntimeStepModel
from edgeslm.parity.stages import compare, default_prompts, observe
from edgeslm.pipeline import export

PRECISIONS = {"fp32": "fp32", "int4": "int4"}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".onnx", ".data"))


def decode_tps(folder: Path, ids: list[int], n: int = 128) -> float:
    import onnxruntime_genai as og

    model = load_genai_model(folder)
    runs = []
    for _ in range(3):
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + n, min_length=len(ids) + n)
        gen = og.Generator(model, params)
        gen.append_tokens(ids)
        gen.generate_next_token()
        t = time.perf_counter()
        k = 0
        while not gen.is_done():
            gen.generate_next_token()
            k += 1
        runs.append(k / (time.perf_counter() - t))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="demo")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args()
    src = resolve(args.model)
    ckpt = load_checkpoint(src)
    prompts = default_prompts()
    ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    ref = observe(HFModel(ckpt.reference_model()), ids)
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    rows = []
    for prec in PRECISIONS:
        res = export(args.model, "jetson-orin", work / f"edgeslm-{prec}", recipe=prec, backends=("onnx",))
        # edgeslm's total includes its parity runs (transformers reference, onnxruntime, onnxruntime-genai),
        # which the builder does not do; both figures are reported.
        ours_s = res.timings["total_s"]
        ours = work / f"edgeslm-{prec}" / f"onnx-{prec}"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(src.path), "-o",
                        str(work / f"builder-{prec}"), "-p", prec, "-e", "cpu"], check=True,
                       capture_output=True)
        builder_s = time.perf_counter() - t
        for who, folder, secs in (("edgeslm", ours, ours_s), ("genai-builder", work / f"builder-{prec}", builder_s)):
            export_only = res.timings["onnx_lowering_s"] if who == "edgeslm" else builder_s
            obs = observe(RuntimeStepModel(GenaiModel(folder)), ids)
            m = compare("end_to_end", "transformers", who, ref, obs, prompts, None).metrics
            rows.append({"exporter": who, "precision": prec, "export_s": round(secs, 2),
                         "export_only_s": round(export_only, 2), "bytes": folder_bytes(folder),
                         "top1": round(m["top1_exact"], 4), "kl_mean": m["kl_mean"],
                         "greedy": round(m["greedy_prefix_mean"], 3), "greedy_exact": m["greedy_exact"],
                         "decode_tok_s": round(decode_tps(folder, ids[0]), 1)})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_vs_genai_builder.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'exporter':14} {'prec':5} {'total s':>9} {'export s':>9} {'MB':>6} {'top-1':>6} {'KL':>9} {'greedy':>6} "
          f"{'exact':>5} {'decode tok/s':>12}")
    for r in rows:
        print(f"{r['exporter']:14} {r['precision']:5} {r['export_s']:9.2f} {r['export_only_s']:9.2f} {r['bytes'] / 1e6:6.2f} {r['top1']:6.3f} "
              f"{r['kl_mean']:9.2e} {r['greedy']:6.3f} {r['greedy_exact']:>5} {r['decode_tok_s']:12.1f}")
    for prec in PRECISIONS:
        a, b = (next(r for r in rows if r["exporter"] == w and r["precision"] == prec)
                for w in ("edgeslm", "genai-builder"))
        print(f"{prec}: edgeslm/builder export time {a['export_only_s'] / b['export_only_s']:.2f}x (with parity "
              f"{a['export_s'] / b['export_s']:.2f}x), size "
              f"{a['bytes'] / b['bytes']:.2f}x, decode {a['decode_tok_s'] / b['decode_tok_s']:.2f}x")


if __name__ == "__main__":
    main()
