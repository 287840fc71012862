"""ONNX backend: the decoder exported with past/present KV → a folder onnxruntime-genai loads; int4/int8 weights
via onnxruntime's MatMulNBits quantizer; parity in onnxruntime (CPU EP) and a greedy check in onnxruntime-genai.

Stages (each in the real runtime): lowering = edgeslm fp32 eager → fp32 ONNX in onnxruntime; quantization =
fp32 ONNX → quantized ONNX, both in onnxruntime (the quantizer rewrites the exported graph's weights, so the
quantization error is measured where it happens).
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.protocol import AppRuntime, ArtifactFormat, Backend
from edgeslm.errors import InputError
from edgeslm.gates import Thresholds

if TYPE_CHECKING:  # this module stays importable without torch (the bare-runtime RSS reference imports it)
    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "ONNX Runtime (CPU EP here), onnxruntime-genai"
RECIPES = ("fp32", "fp16", "int4", "int8")
APP = AppRuntime(runtime="onnxruntime-genai", package="onnxruntime-genai",
                 honoured=("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"))
# genai's Python API hands back numpy arrays (imported on first use)
RUNTIME_MODULES = ("numpy", "onnxruntime_genai")


def read_onnx(path: Path) -> dict:
    """``edgeslm inspect``: inputs/outputs with symbolic shapes, opset, op counts, weight bytes by dtype
    (initializers, external data included)."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph

    def shape(v):
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]

    def dtype(elem: int) -> str:
        return helper.tensor_dtype_to_np_dtype(elem).name if elem != onnx.TensorProto.BFLOAT16 else "bfloat16"

    by_dtype: Counter = Counter()
    for init in g.initializer:
        n = 1
        for d in init.dims:
            n *= d
        np_dtype = helper.tensor_dtype_to_np_dtype(init.data_type)
        by_dtype[dtype(init.data_type)] += n * np_dtype.itemsize
    return {
        "format": FORMAT.name,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
        "inputs": [{"name": v.name, "dtype": dtype(v.type.tensor_type.elem_type), "shape": shape(v)} for v in g.input],
        "outputs": [{"name": v.name, "dtype": dtype(v.type.tensor_type.elem_type), "shape": shape(v)}
                    for v in g.output],
        "ops": dict(Counter(n.op_type for n in g.node).most_common()),
        "weight_bytes_by_dtype": dict(by_dtype),
    }


FORMAT = ArtifactFormat("onnx", "an ONNX model", read_onnx, reads_weight_bytes=True)


def load_entry(artifact: dict) -> dict:
    """What onnxruntime-genai's Model opens: the folder (genai_config.json, model, its own tokenizer copy)."""
    folder = Path(artifact["file"]).parent.as_posix()
    return {"path": folder, "tokenizer": f"{folder}/tokenizer.json"}
BITS = {"4w": 4, "8w": 8}
# onnxruntime-genai runs the same graph as onnxruntime: its greedy tokens must equal onnxruntime's, except where
# onnxruntime's own top-2 margin is within numerical noise (accumulation order; fp16 graphs included).
RUNTIME_AGREEMENT = Thresholds(min_greedy_prefix=1.0, tie_margin=0.02)


def build_options(target) -> dict:
    """Target options the artifact depends on (part of its reuse key): the execution providers it names."""
    return target.options.get(OPTION_SECTION, {})


OPTION_SECTION = "onnx"


def parse_options(table, path: Path) -> dict:
    """``[onnx]``: ``provider_options`` written into genai_config.json."""
    from edgeslm.target import _bad, _provider_options, _reject_unknown

    if not isinstance(table, dict):
        raise _bad(path, "onnx", "a table ([onnx])", table, '[onnx] with provider_options = [{ xnnpack = {} }]')
    _reject_unknown(table, {"provider_options"}, "onnx", path)
    if "provider_options" in table:
        return {"provider_options": _provider_options(
            table["provider_options"], path, f"{OPTION_SECTION}.provider_options",
            'provider_options = [{ cuda = { enable_cuda_graph = "0" } }]')}
    return {}


def gated_stages(recipe: str) -> dict:
    """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one)."""
    stages = {"lowering": None, "runtime_agreement": RUNTIME_AGREEMENT}
    return {**stages, "quantization": None} if recipe != "fp32" else stages


def _matmul_scheme(recipe) -> tuple[int, int, bool] | str | None:
    """(bits, block, embeddings too) of the recipe's rules, "fp16", or None; ONNX applies one scheme to every
    weight MatMul, and the same one to the embedding table (Gather) when the recipe's embed rule names it."""
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


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    from edgeslm.backends.onnx.export import (
        MODEL_FILE,
        convert_fp16,
        export_onnx,
        quantize_matmul_nbits,
        write_genai_config,
    )
    from edgeslm.backends.onnx.runtime import OrtModel, genai_greedy_tokens
    from edgeslm.bundle.files import file_entry
    from edgeslm.model.build import build_decoder
    from edgeslm.model.checkpoint import TOKENIZER_FILES
    from edgeslm.parity.models import RuntimeStepModel
    from edgeslm.quant.recipes import get_recipe
    from edgeslm.records import Artifact

    ckpt, rec = job.ckpt, get_recipe(recipe_name, job.group_size)
    scheme = _matmul_scheme(rec)
    # a draft sits inside its target's folder: onnxruntime-genai's native speculative decoding needs the draft's
    # files under the target's config folder (it refuses ".." paths)
    folder_name = f"onnx-{recipe_name}/draft" if job.role == "draft" else f"onnx-{recipe_name}{job.tag}"
    folder = tmp / folder_name
    folder.mkdir()
    name = f"{folder_name}/{MODEL_FILE}"
    job.status(f"onnx: exporting {name}")
    t = time.perf_counter()
    dec = build_decoder(ckpt, job.context_length)
    facts = export_onnx(dec, folder / MODEL_FILE)
    lowering_s = time.perf_counter() - t
    providers = build_options(job.target).get("provider_options", [])
    sp = ckpt.special
    write_genai_config(folder, dec, sp.bos_id, sp.eos_ids, sp.pad_id, ckpt.generation, providers)
    for f in TOKENIZER_FILES:  # onnxruntime-genai reads the tokenizer from the model folder
        if (tmp / f).is_file():
            shutil.copyfile(tmp / f, folder / f)
    del dec
    job.status(f"onnx: parity in {RUNTIME}")
    obs = job.observe(RuntimeStepModel(OrtModel(folder)))
    job.check("lowering", recipe_name, "edgeslm fp32 eager", "fp32 ONNX in onnxruntime", job.obs_fp32, obs, name)
    if scheme:
        tq = time.perf_counter()
        if scheme == "fp16":
            job.status("onnx: converting to fp16")
            convert_fp16(folder / MODEL_FILE)
        else:
            job.status(f"onnx: MatMulNBits {scheme[0]}-bit, block {scheme[1]}"
                       + (" (+ embeddings)" if scheme[2] else ""))
            quantize_matmul_nbits(folder / MODEL_FILE, *scheme)
        lowering_s += time.perf_counter() - tq
        obs_q = job.observe(RuntimeStepModel(OrtModel(folder)))
        job.check("quantization", recipe_name, "fp32 ONNX in onnxruntime", f"{recipe_name} ONNX in onnxruntime",
                  obs, obs_q, name)
        obs = obs_q
    job.timings["onnx_export_s"] = time.perf_counter() - t  # with parity in onnxruntime
    job.timings["onnx_lowering_s"] = lowering_s  # torch.onnx export + quantizer alone
    job.check("end_to_end", recipe_name, "transformers fp32", f"{recipe_name} ONNX in onnxruntime", job.obs_ref,
              obs, name, gated=False)
    job.status("onnx: greedy in onnxruntime-genai")
    free = job.observe_free(RuntimeStepModel(OrtModel(folder)))  # generators compared free-running, both
    genai = [genai_greedy_tokens(folder, ids, len(g)) for ids, g in zip(job.prompt_ids, free.greedy)]
    agree = job.check_greedy("runtime_agreement", recipe_name, f"{recipe_name} ONNX in onnxruntime",
                             f"{recipe_name} ONNX in onnxruntime-genai", free, genai, name, RUNTIME_AGREEMENT)
    configured = [next(iter(p)) for p in providers]
    return Artifact(
        **file_entry(tmp, name),
        files=[file_entry(tmp, f"{folder_name}/{p.name}") for p in sorted(folder.iterdir()) if p.name != MODEL_FILE],
        backend="onnx", runtime=RUNTIME, recipe=recipe_name,
        quantization=([] if not scheme else ["fp16 weights, activations and KV cache"] if scheme == "fp16"
                      else [f"every MatMul → MatMulNBits {scheme[0]}-bit, block {scheme[1]}, symmetric RTN"]
                      + (["embeddings → GatherBlockQuantized, same scheme"] if scheme[2] else [])),
        facts={
            "execution_providers": {"configured": configured or ["cpu"], "parity_run_on": "CPUExecutionProvider",
                                    "not_run_here": [p for p in configured if p != "cpu"]},
            "onnxruntime_genai": {"loaded": True, "greedy_exact": agree.metrics["greedy_exact"],
                                  "greedy_ties": agree.metrics["greedy_ties"], "prompts": len(genai)},
            **facts,
        })


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    """The folder in onnxruntime-genai, streamed as whole characters, stopping at the manifest's eos ids."""
    from edgeslm.backends.onnx.runtime import generate_with_genai
    from edgeslm.bundle.manifest import read_manifest

    eos_ids = read_manifest(bundle)["special_tokens"]["eos_ids"]
    return generate_with_genai((bundle / artifact["file"]).parent, prompt, max_new_tokens, temperature, on_token,
                               eos_ids)


def step_model(bundle: Path, artifact: dict):
    """The folder loaded in onnxruntime-genai (what apps run): ``step(tokens, start_pos) -> logits``."""
    from edgeslm.backends.onnx.runtime import GenaiModel

    return GenaiModel((bundle / artifact["file"]).parent)


def verifier(bundle: Path, artifact: dict):
    """For speculative decoding: all positions' logits of a multi-token pass in onnxruntime, cache cut back."""
    from edgeslm.backends.onnx.runtime import OrtVerifier

    return OrtVerifier((bundle / artifact["file"]).parent)


def native_speculative(bundle: Path, target: dict, draft: dict, k: int, prompt_ids: list[list[int]], n: int) -> dict:
    """onnxruntime-genai's own speculative decoding (0.16+): ``speculative.json`` in the target's folder, an overlay
    adding the draft (``model.draft``, files under ``draft/``) and ``speculative.max_draft_tokens``; an app applies
    it with ``og.Config(folder).overlay(...)``. Checked here: genai runs it, and its greedy tokens against the
    target alone."""
    import json

    from edgeslm.backends.onnx.runtime import genai_greedy_tokens, genai_speculative_tokens

    folder = (bundle / target["file"]).parent
    draft_dir = (bundle / draft["file"]).parent
    rel = draft_dir.relative_to(folder).as_posix()
    block = json.loads((draft_dir / "genai_config.json").read_text())["model"]["decoder"]
    overlay = {"model": {"draft": {**block, "filename": f"{rel}/{block['filename']}"}},
               "speculative": {"max_draft_tokens": k}}
    (folder / "speculative.json").write_text(json.dumps(overlay, indent=2) + "\n")
    runs = [genai_speculative_tokens(folder, overlay, ids, n) for ids in prompt_ids]
    plain = [genai_greedy_tokens(folder, ids, n) for ids in prompt_ids]
    stats = [s for _, s in runs]
    proposed = sum(s.get("draft_tokens_proposed", 0) for s in stats)
    return {"file": f"{Path(target['file']).parent.as_posix()}/speculative.json", "max_draft_tokens": k,
            "runs_here": True, "prompts": len(prompt_ids),
            "equal_to_target_greedy": sum(t == p for (t, _), p in zip(runs, plain)),
            "acceptance_rate": sum(s.get("draft_tokens_accepted", 0) for s in stats) / proposed if proposed else None,
            "target_forward_passes": sum(s.get("target_forward_passes", 0) for s in stats),
            "apply": "og.Config(folder).overlay(open(folder + '/speculative.json').read())"}


def run_bare(folder: Path, ids: list[int], gen_len: int, context_length: int) -> None:
    """The folder in bare onnxruntime-genai on the CPU provider: ``append_tokens(prompt)`` then
    ``generate_next_token()``, ``max_length`` = the bundle's context length (genai sizes its KV cache by it)."""
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    config.clear_providers()  # the CPU here; the folder's configured EPs are the device's
    model = og.Model(config)
    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=context_length)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    for _ in range(gen_len):
        gen.generate_next_token()


class Onnx(Backend):
    name = "onnx"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    app = APP
    runtime_modules = RUNTIME_MODULES
    kv_bytes = 4  # the fp16 recipe's cache is 2 bytes (Backend.kv_element_bytes)
    # Preflight: torch.onnx export traces the fp32 model and writes it with its external data (SmolLM2-135M:
    # 1.9 GB over base).
    lowering_per_fp32_byte = 3.6
    seconds_per_layer = 6.0
    host_cpu = True
    option_section = OPTION_SECTION
    has_verifier = True
    has_native_speculative = True
    has_bare_runtime = True

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def build_options(self, target) -> dict:
        return build_options(target)

    def parse_options(self, table, path: Path) -> dict:
        return parse_options(table, path)

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact:
        return export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return step_model(bundle, artifact)

    def verifier(self, bundle: Path, artifact: dict):
        return verifier(bundle, artifact)

    def native_speculative(self, bundle: Path, target: dict, draft: dict, k: int, prompt_ids: list[list[int]],
                           n: int) -> dict:
        return native_speculative(bundle, target, draft, k, prompt_ids, n)

    def run_bare(self, bundle: Path, artifact: dict, manifest: dict, ids: list[int], gen_len: int) -> None:
        run_bare((bundle / artifact["file"]).parent, ids, gen_len, manifest["context_length"])
