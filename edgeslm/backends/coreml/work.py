"""The Core ML backend's work (see :mod:`edgeslm.backends.coreml.backend` for its facts and stages): conversion,
compression, the three validation stages, and running a package where Core ML can. Reached through
``Backend.work``.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path

import torch

from edgeslm.backends.base import ExportJob
from edgeslm.backends.coreml.ane import ane_readiness
from edgeslm.backends.coreml.backend import RUNS_ON, RUNTIME, tokens_per_call, build_options, unavailable_here
from edgeslm.backends.coreml.convert import compress, convert, describe, describe_rule, save, tied_to
from edgeslm.backends.coreml.package import package_weights, read_package, structure_checks
from edgeslm.backends.coreml.runtime import COMPUTE_UNITS, CoreMLModel
from edgeslm.backends.coreml.runtime import generate as run
from edgeslm.errors import InputError, InternalError
from edgeslm.filefacts import file_entry
from edgeslm.model.build import build_decoder
from edgeslm.model.decoder import RMSNorm
from edgeslm.parity.models import EagerDecoder, RuntimeStepModel
from edgeslm.quant.recipes import get_recipe
from edgeslm.quiet import native_output_silenced
from edgeslm.records import Artifact

_OPS = {"4w": ("constexpr_blockwise_shift_scale", "int4"), "8w": ("constexpr_blockwise_shift_scale", "int8"),
        "pal4": ("constexpr_lut_to_dense", "uint4"), "4w-asym": ("constexpr_blockwise_shift_scale", "uint4")}


def _op_of(rule) -> tuple[str, str]:
    """The constexpr op and data dtype a rule's weights take in the package."""
    return _OPS[f"{rule.scheme}-{rule.method}" if rule.method != "rtn" else rule.scheme]


def package_metadata(job: ExportJob, recipe: str, vocab_size: int) -> dict[str, str]:
    """Key/value metadata written into the package (strings, as Core ML stores them)."""
    sp = job.ckpt.special
    return {
        "edgeslm.version": metadata.version("edgeslm"),
        "edgeslm.model": job.ckpt.source.model_id,
        "edgeslm.recipe": recipe,
        "edgeslm.bos_id": json.dumps(sp.bos_id),
        "edgeslm.eos_ids": json.dumps(list(sp.eos_ids)),
        "edgeslm.context_length": str(job.context_length),
        "edgeslm.vocab_size": str(vocab_size),
        "edgeslm.tokenizer": "huggingface-tokenizers (tokenizer.json in the bundle)",
    }


def simulated_decoder(dec: torch.nn.Module, weights: dict) -> torch.nn.Module:
    """``dec`` carrying the package's dense weights, in fp16 like Core ML's compute: the norms too (the package
    computes them in fp16, so the simulation must not upcast them); only the rope angles stay fp32, as in the
    package."""
    params = dict(dec.named_parameters())
    found = {n: f"p_{n.replace('.', '_')}" for n in params if f"p_{n.replace('.', '_')}" in weights}
    for fqn, twin in tied_to(dec).items():  # stored once in the package
        if f"{twin}.weight" in found:
            found.setdefault(f"{fqn}.weight", found[f"{twin}.weight"])
    need = {n for n, m in dec.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Embedding))}
    missing = sorted(n for n in need if f"{n}.weight" not in found)
    if missing:
        raise InternalError(f"weights of {missing[:3]} not found in the saved Core ML package",
                            "coremltools named the weights differently than expected; please report it")
    with torch.no_grad():
        for n, key in found.items():
            params[n].copy_(torch.from_numpy(weights[key].astype("float32")).reshape(params[n].shape))
    dec = dec.half()
    for name, buf in dec.named_buffers():
        if name.startswith("rope_inv_freq_"):
            setattr(dec, name, buf.float())
    for m in dec.modules():
        if isinstance(m, RMSNorm):
            m.upcast = False
    return dec


def _expected_structure(dec, job: ExportJob, chosen: dict, meta: dict) -> dict:
    s = dec.spec
    ops: dict[str, int] = {}
    for rule in chosen.values():
        ops[_op_of(rule)[0]] = ops.get(_op_of(rule)[0], 0) + 1
    # the dtype holding most weight bytes: each compressed weight at its data's bits, the rest in fp16
    bits = {"int4": 4, "uint4": 4, "int8": 8}
    by_dtype: dict[str, float] = {}
    tied = tied_to(dec)
    for fqn, mod in dec.named_modules():
        if isinstance(mod, (torch.nn.Linear, torch.nn.Embedding)) and fqn not in tied:
            dtype = _op_of(chosen[fqn])[1] if fqn in chosen else "float16"
            by_dtype[dtype] = by_dtype.get(dtype, 0) + mod.weight.numel() * bits.get(dtype, 16)
    return {"context_length": job.context_length, "num_layers": s.num_layers, "num_kv_heads": s.num_kv_heads,
            "head_dim": s.head_dim, "vocab_size": s.vocab_size, "compressed_ops": ops,
            "weight_dtype": max(by_dtype, key=by_dtype.get) if by_dtype else None, "metadata": meta,
            "tokens_per_call": tokens_per_call(job.target)}


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    ckpt, rec = job.ckpt, get_recipe(recipe_name, job.group_size)
    name = f"model-{recipe_name}{job.tag}.mlpackage"
    job.stage(f"coreml: converting to {name} (fp16, stateful KV cache, {recipe_name} weights)", "coreml")
    t = time.perf_counter()
    dec = build_decoder(ckpt, job.context_length).use_fp16_norms()
    meta = package_metadata(job, recipe_name, dec.spec.vocab_size)
    with native_output_silenced():  # coremltools' progress bars
        ml = convert(dec, job.context_length, tokens_per_call(job.target))
        ml, chosen = compress(ml, dec, rec)
        describe(ml, meta, f"{ckpt.source.model_id} ({recipe_name}), exported by edgeslm")
        save(ml, tmp / name)
    del ml
    job.timings[f"coreml_{recipe_name}_convert_s"] = time.perf_counter() - t

    job.stage("coreml: stage 1, the package's weights in PyTorch (fp16)", "pass")
    weights = package_weights(tmp / name)
    sim = simulated_decoder(build_decoder(ckpt, job.context_length).use_fp16_norms(), weights)
    obs_q = job.observe(EagerDecoder(sim))
    del sim, weights
    sim_label = f"{recipe_name} Core ML weights, fp16, in PyTorch"
    job.check("quantization", recipe_name, "edgeslm fp32 eager", sim_label, job.obs_fp32, obs_q, name)

    job.status("coreml: stage 2, structure of the saved package")
    facts = read_package(tmp / name)
    job.validate("structure", name, structure_checks(facts, _expected_structure(dec, job, chosen, meta)))

    ane = ane_readiness(tmp / name)
    if build_options(job.target).get("neural_engine"):  # converted for the ANE: its readiness is gated
        job.validate("ane_readiness", name, [{"check": c.check, "expected": "ANE-compatible", "found": c.found,
                                              "passed": c.ok} for c in ane.reasons if c.blocking])

    why_not = unavailable_here()
    if why_not is None:
        job.stage(f"coreml: stage 3, parity in {RUNTIME}", "pass")
        obs_rt = job.observe(RuntimeStepModel(CoreMLModel(tmp / name)))
        job.check("lowering", recipe_name, sim_label, f"{name} in Core ML ({COMPUTE_UNITS})", obs_q, obs_rt, name)
        job.check("end_to_end", recipe_name, "transformers fp32", f"{name} in Core ML", job.obs_ref, obs_rt, name,
                  gated=False)
    else:
        job.not_run("lowering", name, why_not, RUNS_ON)
        job.check("end_to_end", recipe_name, "transformers fp32", sim_label, job.obs_ref, obs_q, name, gated=False)

    files = sorted(p.relative_to(tmp).as_posix() for p in (tmp / name).rglob("*") if p.is_file())
    main = f"{name}/Data/com.apple.CoreML/model.mlmodel"
    return Artifact(
        **file_entry(tmp, main), package=name, files=[file_entry(tmp, f) for f in files if f != main],
        backend="coreml", runtime=RUNTIME, recipe=recipe_name,
        quantization=[describe_rule(r) for r in rec.rules]
        + [f"{a} shares {b}'s weights (tied; stored once)" for a, b in tied_to(dec).items()],
        facts={"minimum_deployment_target": facts["minimum_deployment_target"], "inputs": facts["inputs"],
               "outputs": facts["outputs"], "states": len(facts["states"]),
               "weight_bytes_by_dtype": facts["weight_bytes_by_dtype"], "metadata": meta,
               "tokens_per_call": tokens_per_call(job.target) or f"1..{job.context_length}",
               "neural_engine": {"ready": ane.ready,
                                 "why_not": [f"{c.check}: {c.found} ({c.source})" for c in ane.failed()
                                             if c.blocking],
                                 "notes": [f"{c.check}: {c.found}" for c in ane.reasons if not c.blocking],
                                 "checked": "structure of the saved package (Core ML cannot plan on Linux; the "
                                            "macOS workflow records MLComputePlan)"}})


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    why_not = unavailable_here()
    if why_not:
        raise InputError(f"cannot run {artifact['package']} here: {why_not}",
                         "run it on a Mac (macOS 15+), or pick another artifact of the bundle with --artifact")
    meta = artifact["metadata"]
    return run(bundle / artifact["package"], bundle / "tokenizer.json", json.loads(meta["edgeslm.eos_ids"]),
               int(meta["edgeslm.context_length"]), prompt, max_new_tokens, temperature, on_token)


def step_model(bundle: Path, artifact: dict):
    """The package loaded in Core ML (macOS only): ``step(tokens, start_pos) -> logits``."""
    why_not = unavailable_here()
    if why_not:
        raise InputError(f"cannot run {artifact['package']} here: {why_not}", "run it on a Mac (macOS 15+)")
    return CoreMLModel(bundle / artifact["package"], "ALL")
