"""Check the performance model on this machine: predict decode speed from the host's *measured* bandwidth and
compare with `edgeslm bench`, on models the step overhead was not fitted to.

1. the runtimes' fixed cost of a decode step is fitted on a 2-layer, 64-wide tiny Llama (the only fit here);
2. the built-in demo model (4 layers, 128 wide; overhead-dominated) and a random-weight model with SmolLM2-135M's
   shape (30 layers, 576 wide; bandwidth-dominated) are exported for android, benchmarked, and predicted.

    .venv/bin/python benchmarks/latency_host_check.py [--out benchmarks/results/latency_host_check.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from edgeslm.manifest import read_manifest
from edgeslm.records import artifact_name
from edgeslm.latency.bench import bench_bundle
from edgeslm.latency.devices import host_device
from edgeslm.latency.host import host_facts
from edgeslm.latency.perf import decode_seconds
from edgeslm.latency.workload import from_artifact
from edgeslm.pipeline import export

PROMPT, GEN = 64, 64
SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=2048,
                    tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def random_llama(folder: Path, config: dict) -> Path:
    import torch
    import transformers

    from edgeslm.testing.tiny import make_tokenizer

    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**config)).eval()
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return folder


def bundle(model: str, out: Path) -> Path:
    if (out / "manifest.json").is_file():
        return out
    t = time.perf_counter()
    export(model, "android", out, bench=False, force=True, context_length=256)
    print(f"exported {model} in {time.perf_counter() - t:.0f} s", flush=True)
    return out


def measure(b: Path) -> dict:
    return {r["backend"]: r for r in bench_bundle(b, PROMPT, GEN, warmup=1, repeats=3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/latency_host_check.json"))
    ap.add_argument("--work", type=Path, help="folder for the models and bundles (kept; reused when present)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="edgeslm-latency-"))
    facts = host_facts()
    print(f"host: {facts['cpu']}, {facts['cores']} cores, {facts['memory_bandwidth']['read_gb_s']} GB/s read",
          flush=True)

    from edgeslm.testing.tiny import make_tiny, make_tokenizer

    tiny_src = work / "tiny" if (work / "tiny").is_dir() else make_tiny("llama", work / "tiny", make_tokenizer())
    tiny = bundle(str(tiny_src), work / "b-tiny")
    fit_runs = measure(tiny)
    base = host_device(facts)
    overhead = {}
    m = read_manifest(tiny)
    for art in m["artifacts"]:
        w = from_artifact(m, art)
        step = 1 / fit_runs[art["backend"]]["decode_tok_s"]["median"]
        bw_only = decode_seconds(w, base, art["backend"], PROMPT, GEN) / GEN - \
            base.perf(art["backend"]).step_overhead_us * 1e-6
        overhead[art["backend"]] = max(step - bw_only, 0.0) * 1e6
    print("fitted step overhead (us):", {k: round(v, 1) for k, v in overhead.items()}, flush=True)

    from dataclasses import replace

    host = replace(base, backends={k: replace(v, step_overhead_us=overhead[k]) for k, v in base.backends.items()})
    rows = []
    for name, b in (("demo", bundle("demo", work / "b-demo")),
                    ("smollm2-135m-shape", bundle(str(work / "smol" if (work / "smol").is_dir() else
                                                      random_llama(work / "smol", SMOLLM2_135M)), work / "b-smol"))):
        runs, m = measure(b), read_manifest(b)
        for art in m["artifacts"]:
            w = from_artifact(m, art)
            for label, dev in (("with fitted overhead", host), ("bandwidth only", base)):
                if label == "bandwidth only":
                    dev = replace(dev, backends={k: replace(v, step_overhead_us=0.0) for k, v in dev.backends.items()})
                pred = GEN / decode_seconds(w, dev, art["backend"], PROMPT, GEN)
                got = runs[art["backend"]]["decode_tok_s"]["median"]
                rows.append({"model": name, "artifact": artifact_name(art), "backend": art["backend"],
                             "model_terms": label, "streamed_mb": w.streamed_bytes / 1e6, "predicted_decode": pred,
                             "measured_decode": got, "error": pred / got - 1})
                print(f"{name:20} {art['backend']:10} {label:22} predicted {pred:8.1f} measured {got:8.1f} "
                      f"({pred / got - 1:+.0%})", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"host": facts, "prompt_len": PROMPT, "gen_len": GEN,
                                    "step_overhead_us_fitted_on_tiny": overhead, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
