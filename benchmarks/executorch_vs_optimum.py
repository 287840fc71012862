"""ExecuTorch export, side by side: edgeslm vs optimum-executorch on the same model and the same recipe.

optimum-executorch pins transformers==5.0.0rc1, which clashes with edgeslm's stack, so it runs from its own venv
(benchmarks/.venvs/optimum-executorch, created on first use). Recipe for both: XNNPACK, custom SDPA + KV cache,
int8 dynamic activations + int4 weights (group 32) on every linear incl. lm_head, int8 embeddings.

Measures wall time and peak RSS of each export as a separate process, .pte size, decode tok/s of each .pte in the
same ExecuTorch runtime, and parity of each .pte against transformers with edgeslm's metrics. Prints ratios.

    .venv/bin/python benchmarks/executorch_vs_optimum.py [MODEL_DIR] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_VENV = HERE / ".venvs" / "optimum-executorch"
PEER_PINS = ["optimum-executorch==1.1.0", "torch==2.13.0", "executorch==1.5.1"]

# Same recipe as optimum's `--qlinear 8da4w --qembedding 8w` (edgeslm's default 8da4w keeps lm_head at int8).
OURS = """
import sys
from pathlib import Path
from edgeslm.quant import recipes as R
R.RECIPES["8da4w-all"] = R.Recipe("8da4w-all", (R.Rule("embed_tokens", "8w"), R.Rule("*", "8da4w", 32)), "")
import edgeslm.backends.executorch.backend as B
B.RECIPES = B.RECIPES + ("8da4w-all",)
from edgeslm.pipeline import export
from edgeslm.target import load_target
import dataclasses
t = load_target("android")
t = dataclasses.replace(t, gates={"reauthoring": t.gates["reauthoring"]})
res = export(sys.argv[1], t, Path(sys.argv[2]), recipe="8da4w-all", backends=("executorch",), force=True)
print("TIMINGS", res.timings)
"""


def run_measured(cmd: list[str], work: Path) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of one child process (GNU time's %M)."""
    rss_file = work / "rss.txt"
    t = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode not in (0, 1):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return wall, int(rss_file.read_text().split()[-1]) / 1024, p.stdout


def ensure_peer() -> Path:
    cli = PEER_VENV / "bin" / "optimum-cli"
    if not cli.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", *PEER_PINS], check=True)
    return cli


def decode_tps(pte: Path, ids: list[int], n: int = 128) -> float:
    from edgeslm.backends.executorch.runtime import PteModel

    m = PteModel(pte)
    runs = []
    for _ in range(3):
        logits = m.step(ids, 0)
        t = time.perf_counter()
        for pos in range(len(ids), len(ids) + n):
            logits = m.step([int(logits.argmax())], pos)
        runs.append(n / (time.perf_counter() - t))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    from edgeslm.backends.executorch.runtime import PteModel
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import DEMO_DIR, resolve
    from edgeslm.parity.models import HFModel, RuntimeStepModel
    from edgeslm.parity.stages import compare, default_prompts, observe

    model_dir = Path(args.model) if args.model else DEMO_DIR
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cli = ensure_peer()
    ctx = 512
    peer_wall, peer_rss, _ = run_measured(
        [str(cli), "export", "executorch", "--model", str(model_dir), "--task", "text-generation", "--recipe",
         "xnnpack", "--use_custom_sdpa", "--use_custom_kv_cache", "--qlinear", "8da4w", "--qembedding", "8w",
         "--max_seq_len", str(ctx), "--output_dir", str(work / "optimum")], work)
    ours_wall, ours_rss, out = run_measured([sys.executable, "-c", OURS, str(model_dir), str(work / "edgeslm")],
                                            work)
    timings = eval(out.split("TIMINGS", 1)[1].strip()) if "TIMINGS" in out else {}
    ptes = {"edgeslm": work / "edgeslm" / "model-8da4w-all.pte", "optimum-executorch": work / "optimum" / "model.pte"}

    ckpt = load_checkpoint(resolve(str(model_dir)))
    prompts = default_prompts()
    ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    ref = observe(HFModel(ckpt.reference_model()), ids)
    ckpt_bytes = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    rows = []
    for who, pte in ptes.items():
        m = compare("end_to_end", "transformers", who, ref, observe(RuntimeStepModel(PteModel(pte)), ids), prompts,
                    None).metrics
        wall, rss = (ours_wall, ours_rss) if who == "edgeslm" else (peer_wall, peer_rss)
        rows.append({"exporter": who, "wall_s": round(wall, 2), "peak_rss_mib": round(rss, 1),
                     "bytes": pte.stat().st_size, "top1": round(m["top1_exact"], 4), "kl_mean": m["kl_mean"],
                     "greedy": round(m["greedy_prefix_mean"], 3), "decode_tok_s": round(decode_tps(pte, ids[0]), 1)})
    rows[0]["edgeslm_timings"] = timings
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "executorch_vs_optimum.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{'exporter':20} {'wall s':>7} {'RSS MiB':>8} {'bytes':>9} {'top-1':>6} {'KL':>9} {'greedy':>6} {'tok/s':>8}")
    for r in rows:
        print(f"{r['exporter']:20} {r['wall_s']:7.1f} {r['peak_rss_mib']:8.0f} {r['bytes']:9d} {r['top1']:6.3f} "
              f"{r['kl_mean']:9.2e} {r['greedy']:6.3f} {r['decode_tok_s']:8.1f}")
    a, b = rows
    print(f"edgeslm/optimum: wall {a['wall_s'] / b['wall_s']:.2f}x (edgeslm includes its parity runs: "
          f"{timings}), size {a['bytes'] / b['bytes']:.2f}x, decode {a['decode_tok_s'] / b['decode_tok_s']:.2f}x; "
          f"checkpoint {ckpt_bytes / 2**20:.1f} MiB")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
