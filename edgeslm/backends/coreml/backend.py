"""Core ML backend: the decoder → a stateful .mlpackage (fp16, iOS 18), weights compressed by coremltools.

Core ML cannot execute on Linux, so validation is split honestly into three stages:

1. quantization: the fp32 decoder vs the same decoder carrying the package's own weights (read back from the
   saved blob and decompressed as Core ML does) run in fp16 in PyTorch: measured everywhere, gated;
2. structure: the saved package re-read without executing it (interface, KV states, deployment target,
   compressed-weight ops and their dtype, metadata): checked everywhere;
3. lowering: the package run in Core ML against stage 1's model; only where Core ML can predict (macOS 15+),
   otherwise recorded as not run, with the reason, and never counted as passed.
"""

from __future__ import annotations

import json
import time
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from edgeslm.backends.protocol import AppRuntime, ArtifactFormat, Backend
from edgeslm.errors import InputError, InternalError

if TYPE_CHECKING:  # torch and coremltools are imported where the work runs
    import torch

    from edgeslm.backends.base import ExportJob
    from edgeslm.records import Artifact

RUNTIME = "Core ML (macOS 15+ / iOS 18+)"
RECIPES = ("fp16", "int8", "int4", "palettize4")
# Core ML runs one forward per call; the app's own loop samples (ios_demo: temperature and a token budget).
APP = AppRuntime(runtime="coreml", package="coremltools", honoured=("temperature", "max_new_tokens"))


def read_mlpackage(path: Path) -> dict:
    """``edgeslm inspect``: the package's spec read without loading it (inputs with shape ranges, states,
    deployment target, ops, compressed-weight ops, weight bytes by dtype, metadata)."""
    from edgeslm.backends.coreml.package import read_package

    return read_package(path)


FORMAT = ArtifactFormat("coreml", "a Core ML package", read_mlpackage)
OPTION_SECTION = "coreml"


def load_entry(artifact: dict) -> dict:
    """What MLModel opens: the .mlpackage folder; the tokenizer is the bundle's tokenizer.json."""
    return {"path": artifact["package"], "tokenizer": "tokenizer.json"}


def gated_stages(recipe: str) -> dict:
    """Stages this backend gates for ``recipe`` → its own default gate (None: the target must give one). Stage 3
    (lowering) runs on macOS only, but its gate must exist: there it runs."""
    return {"quantization": None, "lowering": None}


def build_options(target) -> dict:
    """Target options the package depends on (part of its reuse key): the Neural Engine form."""
    return target.options.get(OPTION_SECTION, {})


def parse_options(table, path: Path) -> dict:
    """``[coreml]``: ``neural_engine = true`` converts for the Apple Neural Engine (fixed one-token inputs; the
    package's ANE readiness becomes a gated stage). Default: flexible 1..context tokens per prediction (GPU/CPU)."""
    from edgeslm.target import _bad, _reject_unknown

    if not isinstance(table, dict):
        raise _bad(path, "coreml", "a table ([coreml])", table, "[coreml] with neural_engine = true")
    _reject_unknown(table, {"neural_engine"}, "coreml", path)
    if "neural_engine" in table and not isinstance(table["neural_engine"], bool):
        raise _bad(path, "coreml.neural_engine", "true or false", table["neural_engine"], "neural_engine = true")
    return dict(table)


def _tokens_per_call(target) -> int | None:
    """One token per prediction for the Neural Engine (fixed shapes); else a flexible 1..context."""
    return 1 if build_options(target).get("neural_engine") else None


RUNS_ON = "macOS 15+ with coremltools (see .github/workflows/coreml-macos.yml)"
_OPS = {"4w": ("constexpr_blockwise_shift_scale", "int4"), "8w": ("constexpr_blockwise_shift_scale", "int8"),
        "pal4": ("constexpr_lut_to_dense", "uint4")}


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
    """``dec`` carrying the package's dense weights, in fp16 like Core ML's compute (rope angles stay fp32, as
    in the package)."""
    import torch

    from edgeslm.backends.coreml.convert import tied_to

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
    return dec


def _expected_structure(dec, job: ExportJob, chosen: dict, meta: dict) -> dict:
    s = dec.spec
    ops: dict[str, int] = {}
    for rule in chosen.values():
        ops[_OPS[rule.scheme][0]] = ops.get(_OPS[rule.scheme][0], 0) + 1
    dtypes = {_OPS[r.scheme][1] for r in chosen.values()}
    return {"context_length": job.context_length, "num_layers": s.num_layers, "num_kv_heads": s.num_kv_heads,
            "head_dim": s.head_dim, "vocab_size": s.vocab_size, "compressed_ops": ops,
            "weight_dtype": dtypes.pop() if len(dtypes) == 1 else "float16", "metadata": meta,
            "tokens_per_call": _tokens_per_call(job.target)}


def export(job: ExportJob, recipe_name: str, tmp: Path) -> Artifact:
    from edgeslm.backends.coreml.ane import ane_readiness
    from edgeslm.backends.coreml.convert import compress, convert, describe, describe_rule, save, tied_to
    from edgeslm.backends.coreml.package import package_weights, read_package, structure_checks
    from edgeslm.backends.coreml.runtime import COMPUTE_UNITS, CoreMLModel
    from edgeslm.bundle.files import file_entry
    from edgeslm.model.build import build_decoder
    from edgeslm.parity.models import EagerDecoder, RuntimeStepModel
    from edgeslm.quant.recipes import get_recipe
    from edgeslm.quiet import native_output_silenced
    from edgeslm.records import Artifact

    ckpt, rec = job.ckpt, get_recipe(recipe_name, job.group_size)
    name = f"model-{recipe_name}{job.tag}.mlpackage"
    job.status(f"coreml: converting to {name} (fp16, stateful KV cache, {recipe_name} weights)")
    t = time.perf_counter()
    dec = build_decoder(ckpt, job.context_length)
    meta = package_metadata(job, recipe_name, dec.spec.vocab_size)
    with native_output_silenced():  # coremltools' progress bars
        ml = convert(dec, job.context_length, _tokens_per_call(job.target))
        ml, chosen = compress(ml, dec, rec)
        describe(ml, meta, f"{ckpt.source.model_id} ({recipe_name}), exported by edgeslm")
        save(ml, tmp / name)
    del ml
    job.timings[f"coreml_{recipe_name}_convert_s"] = time.perf_counter() - t

    job.status("coreml: stage 1, the package's weights in PyTorch (fp16)")
    weights = package_weights(tmp / name)
    sim = simulated_decoder(build_decoder(ckpt, job.context_length), weights)
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
        job.status(f"coreml: stage 3, parity in {RUNTIME}")
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
               "tokens_per_call": _tokens_per_call(job.target) or f"1..{job.context_length}",
               "neural_engine": {"ready": ane.ready,
                                 "why_not": [f"{c.check}: {c.found} ({c.source})" for c in ane.failed()
                                             if c.blocking],
                                 "notes": [f"{c.check}: {c.found}" for c in ane.reasons if not c.blocking],
                                 "checked": "structure of the saved package (Core ML cannot plan on Linux; the "
                                            "macOS workflow records MLComputePlan)"}})


def unavailable_here() -> str | None:
    from edgeslm.backends.coreml.runtime import unavailable_here as why

    return why()


def generate(bundle: Path, artifact: dict, prompt: str, max_new_tokens: int, temperature: float, on_token):
    from edgeslm.backends.coreml.runtime import generate as run

    why_not = unavailable_here()
    if why_not:
        raise InputError(f"cannot run {artifact['package']} here: {why_not}",
                         "run it on a Mac (macOS 15+), or pick another artifact of the bundle with --artifact")
    meta = artifact["metadata"]
    return run(bundle / artifact["package"], bundle / "tokenizer.json", json.loads(meta["edgeslm.eos_ids"]),
               int(meta["edgeslm.context_length"]), prompt, max_new_tokens, temperature, on_token)


def step_model(bundle: Path, artifact: dict):
    """The package loaded in Core ML (macOS only): ``step(tokens, start_pos) -> logits``."""
    from edgeslm.backends.coreml.runtime import CoreMLModel

    why_not = unavailable_here()
    if why_not:
        raise InputError(f"cannot run {artifact['package']} here: {why_not}", "run it on a Mac (macOS 15+)")
    return CoreMLModel(bundle / artifact["package"], "ALL")


class CoreML(Backend):
    name = "coreml"
    runtime = RUNTIME
    artifact_format = FORMAT
    recipes = RECIPES
    app = APP
    runs_on = RUNS_ON
    runtime_modules = ("coremltools",)
    kv_bytes = 2  # the package computes in fp16
    # Preflight: Core ML converts an fp16 copy.
    lowering_per_fp32_byte = 1.5
    seconds_per_layer = 2.0
    option_section = OPTION_SECTION

    def gated_stages(self, recipe: str) -> dict:
        return gated_stages(recipe)

    def build_options(self, target) -> dict:
        return build_options(target)

    def parse_options(self, table, path: Path) -> dict:
        return parse_options(table, path)

    def unavailable_here(self) -> str | None:
        return unavailable_here()

    def load_entry(self, artifact: dict) -> dict:
        return load_entry(artifact)

    def export(self, job: ExportJob, recipe: str, tmp: Path) -> Artifact:
        return export(job, recipe, tmp)

    def _generate(self, bundle, artifact, prompt, max_new_tokens, temperature, on_token):
        return generate(bundle, artifact, prompt, max_new_tokens, temperature, on_token)

    def step_model(self, bundle: Path, artifact: dict):
        return step_model(bundle, artifact)
