"""The ONNX backend's work (see :mod:`edgeslm.backends.onnx.backend` for its facts): export with parity in
onnxruntime, onnxruntime-genai generation, step models. Reached through ``Backend.work``; imports torch and the
runtimes at its top. ``generate`` here serves both ONNX backends (onnx, onnx-qnn): the same genai folder layout.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from edgeslm.backends.base import ExportJob
from edgeslm.backends.onnx.backend import (
    BITS,
    RUNTIME,
    SAME_PATH_AGREEMENT,
    build_options,
    configured_providers,
    traced_for,
)
from edgeslm.backends.onnx.export import (
    MODEL_FILE,
    convert_fp16,
    export_onnx,
    quantize_matmul_nbits,
    quantize_nbits_with_table,
    write_genai_config,
)
from edgeslm.backends.onnx.graph import Weights, fp32_parameters, unsupported, write_decoder
from edgeslm.backends.onnx.nbits import NBits, reused_buffers
from edgeslm.backends.onnx.runtime import (
    GenaiModel,
    OrtModel,
    OrtVerifier,
    genai_greedy_tokens,
    genai_speculative_tokens,
    generate_with_genai,
)
from edgeslm.errors import InputError
from edgeslm.filefacts import file_entry
from edgeslm.manifest import read_manifest
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import TOKENIZER_FILES
from edgeslm.parity.models import EagerDecoder, RuntimeStepModel
from edgeslm.quant.recipes import get_recipe
from edgeslm.records import Artifact

# The generator the last export's runtime_agreement loaded, for the golden vectors that follow it (one load per
# artifact: 1.7 s on the Llama-3.2-1B shape); taken once, then the folder is loaded afresh.
_kept: dict[Path, GenaiModel] = {}


def _matmul_scheme(recipe) -> tuple[int, int, bool] | tuple[NBits, NBits] | str | None:
    """(bits, block, embeddings too) of the recipe's rules, "fp16", or None; ONNX applies one scheme to every
    weight MatMul, and the same one to the embedding table (Gather) when the recipe's embed rule names it.
    A recipe whose embedding table and lm_head share a rule of their own (``embed_tokens`` and ``lm_head``),
    or whose linears are ``asym``, gives (linears, table): :func:`quantize_nbits_with_table`."""
    table_rules = {r for r in (recipe.rule_for("embed_tokens"), recipe.rule_for("lm_head")) if r is not None}
    main = recipe.main_rule
    if main.method == "asym" or any(r.pattern != main.pattern for r in table_rules):
        return _split_scheme(recipe, table_rules)
    linear_rules = {(r.scheme, r.group_size) for r in recipe.rules if r.pattern != "embed_tokens"}
    if linear_rules == {("fp32", 0)}:
        return None
    if linear_rules == {("fp16", 0)}:
        return "fp16"
    if len(linear_rules) != 1 or next(iter(linear_rules))[0] not in BITS:
        raise InputError(f"recipe {recipe.name} mixes schemes across linear layers",
                         "the ONNX backend applies one MatMulNBits scheme to every linear layer")
    scheme, group = next(iter(linear_rules))
    embed = recipe.rule_for("embed_tokens")
    if embed is not None and embed.scheme not in ("fp32", scheme):
        raise InputError(f"recipe {recipe.name}: embeddings must be fp32 or {scheme} for the ONNX backend",
                         "use the same scheme for embed_tokens as for the linear layers, or fp32")
    return BITS[scheme], group or 32, embed is not None and embed.scheme == scheme


def _split_scheme(recipe, table_rules: set) -> tuple[NBits, NBits]:
    """Linears on the catch-all rule, the embedding table and lm_head on one shared rule (tied embeddings: one
    quantized table, read by lm_head's MatMulNBits and the embedding's Gather)."""
    main = recipe.main_rule
    others = {r for r in recipe.rules if r.pattern not in ("embed_tokens", "lm_head")}
    tables = {(r.scheme, r.group_size, r.method) for r in table_rules}
    if others != {main} or len(tables) != 1 or len(table_rules) != 2:
        raise InputError(f"recipe {recipe.name}: the ONNX backend takes one rule for the linears and one shared by "
                         "embed_tokens and lm_head",
                         "give embed_tokens and lm_head the same rule, and the other linears one catch-all rule")
    for r in (main, *table_rules):
        if r.scheme not in BITS or not r.group_size:
            raise InputError(f"recipe {recipe.name}: rule {r.describe()} is not a block-wise weight-only scheme",
                             "use 4w or 8w with a group size")
    t = next(iter(table_rules))
    return (NBits(BITS[main.scheme], main.group_size, main.method),
            NBits(BITS[t.scheme], t.group_size, t.method))


def _graph_weights(scheme) -> Weights | None:
    """How the graph writer stores a recipe's weights (:func:`_matmul_scheme`'s answer), or None for the fp16
    recipe, which keeps the traced path."""
    if scheme == "fp16":
        return None
    if scheme is None:
        return Weights(None, None, False)
    if isinstance(scheme[0], NBits):
        return Weights(scheme[0], scheme[1], True)
    bits, block, embeddings = scheme
    return Weights(NBits(bits, block), NBits(bits, block), embeddings)


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    ckpt, rec = job.ckpt, get_recipe(recipe_name, job.group_size)
    scheme = _matmul_scheme(rec)
    # a draft sits inside its target's folder: onnxruntime-genai's native speculative decoding needs the draft's
    # files under the target's config folder (it refuses ".." paths)
    folder_name = f"onnx-{recipe_name}/draft" if job.role == "draft" else f"onnx-{recipe_name}{job.tag}"
    folder = tmp / folder_name
    folder.mkdir()
    name = f"{folder_name}/{MODEL_FILE}"
    job.stage(f"onnx: exporting {name}", "onnx")
    t = time.perf_counter()
    weights = _graph_weights(scheme)
    gap = traced_for(job.target, recipe_name)
    # the writer reads the matrices as stored (bf16) and converts them as it quantizes them
    dec = build_decoder(ckpt, job.context_length, stored_matrices=gap is None)
    why_traced = gap or unsupported(dec)
    if why_traced is None:
        facts, reference, ref_obs = _write(job, recipe_name, dec, weights, folder, tmp, name)
        candidate = f"{recipe_name} ONNX in onnxruntime"
    else:
        job.status(f"onnx: tracing ({why_traced} is not written directly)")
        fp32_parameters(dec)
        facts = _trace(job, dec, folder, tmp)
        facts["traced_because"] = why_traced
        reference, ref_obs, candidate = "edgeslm fp32 eager", job.obs_fp32, "fp32 ONNX in onnxruntime"
    del dec
    job.stage(f"onnx: parity in {RUNTIME}", "pass")
    ort_model = RuntimeStepModel(OrtModel(folder))  # one session for every onnxruntime pass
    obs = job.observe(ort_model)
    job.check("lowering", recipe_name, reference, candidate, ref_obs, obs, name)
    if why_traced is not None and scheme:
        obs, ort_model = _quantize_traced(job, recipe_name, scheme, folder, name, obs, facts)
    job.timings["onnx_export_s"] = time.perf_counter() - t  # with parity in onnxruntime
    job.check("end_to_end", recipe_name, "transformers fp32", f"{recipe_name} ONNX in onnxruntime", job.obs_ref,
              obs, name, gated=False)
    job.stage("onnx: the same path in onnxruntime-genai", "pass")
    # genai's generator fed the path as an app feeds it (the prompt, then a token at a time): the same
    # contexts and kernels as onnxruntime's pass above, so the two agree to the bit (docs/parity.md)
    generator = GenaiModel(folder)
    genai = job.observe(RuntimeStepModel(generator), heldout=False)
    _kept.clear()  # at most one loaded generator waits
    _kept[folder] = generator
    agree = job.check("runtime_agreement", recipe_name, f"{recipe_name} ONNX in onnxruntime",
                      f"{recipe_name} ONNX in onnxruntime-genai", obs, genai, name, default=SAME_PATH_AGREEMENT)
    configured = configured_providers(job.target)
    return Artifact(
        **file_entry(tmp, name),
        files=[file_entry(tmp, f"{folder_name}/{p.name}") for p in sorted(folder.iterdir()) if p.name != MODEL_FILE],
        backend="onnx", runtime=RUNTIME, recipe=recipe_name,
        quantization=_describe(scheme, facts.get("table")),
        facts={
            "execution_providers": {"configured": configured or ["cpu"], "parity_run_on": "CPUExecutionProvider",
                                    "not_run_here": [p for p in configured if p != "cpu"]},
            "onnxruntime_genai": {"loaded": True, "greedy_exact": agree.metrics["greedy_exact"],
                                  "greedy_ties": agree.metrics["greedy_ties"], "prompts": len(genai.greedy),
                                  "max_abs_logit_diff": agree.metrics["max_abs_logit_diff"]},
            **facts,
        })


def _write_folder(job: ExportJob, dec, folder: Path, tmp: Path, graph_io: bool) -> None:
    """genai_config.json and the tokenizer files beside the model (onnxruntime-genai reads them from its folder)."""
    sp = job.ckpt.special
    write_genai_config(folder, dec, sp.bos_id, sp.eos_ids, sp.pad_id, job.ckpt.generation,
                       build_options(job.target).get("provider_options", []), graph_io=graph_io)
    for f in TOKENIZER_FILES:
        if (tmp / f).is_file():
            shutil.copyfile(tmp / f, folder / f)


def _write(job: ExportJob, recipe_name: str, dec, weights: Weights, folder: Path, tmp: Path, name: str):
    """The graph written from the weights (:mod:`edgeslm.backends.onnx.graph`); ``dec`` becomes the eager model
    of its numerics (MatMulNBits' grids and int8 activation rounding), checked against edgeslm fp32 eager as the
    quantization stage. Returns the graph's facts and the lowering stage's reference (name, observations)."""
    t = time.perf_counter()
    facts = write_decoder(dec, folder / MODEL_FILE, weights)
    job.timings["onnx_lowering_s"] = time.perf_counter() - t  # graph written, weights quantized
    _write_folder(job, dec, folder, tmp, graph_io=True)
    if weights.linear is None and weights.table is None:
        return facts, "edgeslm fp32 eager", job.obs_fp32
    job.stage(f"onnx: parity of the {recipe_name} eager model", "pass")
    eager = f"{recipe_name} eager (MatMulNBits numerics)"
    with reused_buffers():
        obs = job.observe(EagerDecoder(dec))
    job.check("quantization", recipe_name, "edgeslm fp32 eager", eager, job.obs_fp32, obs, name)
    return facts, eager, obs


def _trace(job: ExportJob, dec, folder: Path, tmp: Path) -> dict:
    """torch.onnx export of the fp32 decoder (the fallback path); the recipe is applied after the lowering
    stage by :func:`_quantize_traced`."""
    t = time.perf_counter()
    facts = export_onnx(dec, folder / MODEL_FILE)
    job.timings["onnx_lowering_s"] = time.perf_counter() - t
    _write_folder(job, dec, folder, tmp, graph_io=False)
    return facts


def _quantize_traced(job: ExportJob, recipe_name: str, scheme, folder: Path, name: str, obs, facts: dict):
    """onnxruntime's quantizer (or fp16 converter) over the traced graph; the quantization stage compares the
    fp32 and quantized graphs, both in onnxruntime. Returns the quantized graph's observations and its session
    (the later onnxruntime passes reuse it)."""
    tq = time.perf_counter()
    if scheme == "fp16":
        job.stage("onnx: converting to fp16", "pass")
        convert_fp16(folder / MODEL_FILE)
    elif isinstance(scheme[0], NBits):
        job.stage(f"onnx: {scheme[0].describe()}; embeddings + lm_head {scheme[1].describe()}", "pass")
        facts["table"] = quantize_nbits_with_table(folder / MODEL_FILE, *scheme)
    else:
        job.stage(f"onnx: MatMulNBits {scheme[0]}-bit, block {scheme[1]}" + (" (+ embeddings)" if scheme[2] else ""),
                  "pass")
        quantize_matmul_nbits(folder / MODEL_FILE, *scheme)
    job.timings["onnx_lowering_s"] += time.perf_counter() - tq  # torch.onnx export + quantizer alone
    model = RuntimeStepModel(OrtModel(folder))
    obs_q = job.observe(model)
    job.check("quantization", recipe_name, "fp32 ONNX in onnxruntime", f"{recipe_name} ONNX in onnxruntime",
              obs, obs_q, name)
    return obs_q, model


def _describe(scheme, table: dict | None) -> list[str]:
    if not scheme:
        return []
    if scheme == "fp16":
        return ["fp16 weights, activations and KV cache"]
    if isinstance(scheme[0], NBits):
        shared = "one table shared with lm_head (tied)" if table and table["tied_table"] else "its own table"
        return [f"every MatMul but lm_head → {scheme[0].describe()}", f"lm_head → {scheme[1].describe()}",
                f"embeddings → {(table or {}).get('gather', 'Gather + dequantize')} of the same scheme, {shared}"]
    return ([f"every MatMul → MatMulNBits {scheme[0]}-bit, block {scheme[1]}, symmetric RTN"]
            + (["embeddings → GatherBlockQuantized, same scheme"] if scheme[2] else []))


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    """The folder in onnxruntime-genai, streamed as whole characters, stopping at the manifest's eos ids."""
    eos_ids = read_manifest(bundle)["special_tokens"]["eos_ids"]
    return generate_with_genai((bundle / artifact["file"]).parent, prompt, max_new_tokens, temperature, on_token,
                               eos_ids)


def step_model(bundle: Path, artifact: dict):
    """The folder loaded in onnxruntime-genai (what apps run): ``step(tokens, start_pos) -> logits``."""
    folder = (bundle / artifact["file"]).parent
    kept = _kept.pop(folder, None)
    _kept.clear()
    return kept if kept is not None else GenaiModel(folder)


def verifier(bundle: Path, artifact: dict):
    """For speculative decoding: all positions' logits of a multi-token pass in onnxruntime, cache cut back."""
    return OrtVerifier((bundle / artifact["file"]).parent)


def native_speculative(bundle: Path, target: dict, draft: dict, k: int, prompt_ids: list[list[int]], n: int) -> dict:
    """onnxruntime-genai's own speculative decoding (0.16+): ``speculative.json`` in the target's folder, an overlay
    adding the draft (``model.draft``, files under ``draft/``) and ``speculative.max_draft_tokens``; an app applies
    it with ``og.Config(folder).overlay(...)``. Checked here: genai runs it, and its greedy tokens against the
    target alone."""
    folder = (bundle / target["file"]).parent
    draft_dir = (bundle / draft["file"]).parent
    rel = draft_dir.relative_to(folder).as_posix()
    block = json.loads((draft_dir / "genai_config.json").read_text())["model"]["decoder"]
    overlay = {"model": {"draft": {**block, "filename": f"{rel}/{block['filename']}"}},
               "speculative": {"max_draft_tokens": k}}
    (folder / "speculative.json").write_text(json.dumps(overlay, indent=2) + "\n")
    runs = [genai_speculative_tokens(folder, overlay, ids, n) for ids in prompt_ids]
    plain = genai_greedy_tokens(folder, prompt_ids, [n] * len(prompt_ids))
    stats = [s for _, s in runs]
    proposed = sum(s.get("draft_tokens_proposed", 0) for s in stats)
    return {"file": f"{Path(target['file']).parent.as_posix()}/speculative.json", "max_draft_tokens": k,
            "runs_here": True, "prompts": len(prompt_ids),
            "equal_to_target_greedy": sum(t == p for (t, _), p in zip(runs, plain)),
            "acceptance_rate": sum(s.get("draft_tokens_accepted", 0) for s in stats) / proposed if proposed else None,
            "target_forward_passes": sum(s.get("target_forward_passes", 0) for s in stats),
            "apply": "og.Config(folder).overlay(open(folder + '/speculative.json').read())"}
