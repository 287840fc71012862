"""The export pipeline, usable from Python: model → quantized artifacts + tokenizer + manifest + parity report.

    from edgeslm.pipeline import export
    result = export("demo", "android", Path("out/demo-android"))

The CLI (``edgeslm.cli``) is a thin layer over this module.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgeslm.backends import BACKEND_NAMES, get_backend
from edgeslm.backends.base import ExportJob
from edgeslm.bundle.files import atomic_folder, check_output, file_entry
from edgeslm.bundle.manifest import MANIFEST, SCHEMA_VERSION, versions
from edgeslm.errors import InputError
from edgeslm.latency.report import latency_for_export, write_latency
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import TOKENIZER_FILES, Checkpoint, load_checkpoint
from edgeslm.model.families import family_for
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder, HFModel
from edgeslm.parity.report import parity_document, write_parity
from edgeslm.parity.stages import GREEDY_TOKENS, compare, default_prompts, observe
from edgeslm.quant.recipes import canonical, get_recipe
from edgeslm.target import Target, load_target

Status = Callable[[str], None]


@dataclass
class ExportResult:
    out: Path
    passed: bool
    artifacts: list[dict]
    parity: dict
    timings: dict = field(default_factory=dict)
    latency: dict | None = None


def _write_tokenizer(ckpt: Checkpoint, folder: Path) -> list[dict]:
    """The tokenizer files the runtimes and apps read, as the checkpoint has them (tokenizer.json always)."""
    src = ckpt.source.path
    names = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, folder / name)
            names.append(name)
    if "tokenizer.json" not in names:  # sentencepiece-only checkpoints: write the fast form
        ckpt.tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
        names.append("tokenizer.json")
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():  # transformers 5 writes a class name older runtimes reject (see STACK.md)
        data = json.loads(cfg.read_text())
        if data.get("tokenizer_class") == "TokenizersBackend":
            data["tokenizer_class"] = "PreTrainedTokenizerFast"
            cfg.write_text(json.dumps(data, indent=2) + "\n")
    return [file_entry(folder, n) for n in names]


def _chat_template(ckpt: Checkpoint) -> dict:
    src = ckpt.source.path
    origin = next((n for n in ("chat_template.jinja", "tokenizer_config.json") if (src / n).is_file()), None)
    return {"found": ckpt.chat_template is not None, "template": ckpt.chat_template,
            "source": origin if ckpt.chat_template is not None else None}


def _generation_defaults(ckpt: Checkpoint) -> dict:
    keys = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens")
    return {k: ckpt.generation[k] for k in keys if k in ckpt.generation}


def _shape(spec) -> dict:
    """The decoder's dimensions, as the latency model needs them (bytes and FLOPs per token)."""
    keys = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size")
    return {k: getattr(spec, k) for k in keys}


def _plan(tgt: Target, backends, recipe, group_size) -> list[tuple[str, str]]:
    """(backend, recipe) pairs to build, checked before any heavy work."""
    chosen = tuple(backends or tgt.backends)
    pairs = []
    for b in chosen:
        if b not in BACKEND_NAMES:
            raise InputError(f"unknown backend {b!r}", f"supported backends are {', '.join(BACKEND_NAMES)}")
        r = canonical(recipe or tgt.recipe_for(b))
        get_recipe(r, group_size)
        supported = get_backend(b).RECIPES
        if r not in supported:
            raise InputError(f"recipe {r!r} is not available for the {b} backend",
                             f"{b} supports {', '.join(supported)}")
        pairs.append((b, r))
    return pairs


@dataclass
class Reference:
    """What every target of one export shares, computed once: the checkpoint, the prompts, and the transformers
    and edgeslm fp32 observations (neither depends on the target)."""

    source: object
    ckpt: Checkpoint
    family: object
    prompts: list[str]
    prompt_ids: list[list[int]]
    obs_ref: object
    obs_fp32: object
    shape: dict
    seconds: float
    built: dict = field(default_factory=dict)  # artifact key → what another target can reuse (ExportJob.adopt)


def prepare(model: str, revision: str | None, prompts: list[str] | None, context_length: int,
            status: Status = lambda msg: None) -> Reference:
    status("resolving model")
    source = resolve(model, revision)
    ckpt = load_checkpoint(source)
    family = family_for(ckpt.config)
    prompts = prompts or default_prompts()
    prompt_ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    status("running the transformers reference")
    t = time.perf_counter()
    ref = ckpt.reference_model()
    obs_ref = observe(HFModel(ref), prompt_ids)
    del ref
    fp32 = build_decoder(ckpt, context_length)
    obs_fp32 = observe(EagerDecoder(fp32), prompt_ids)
    shape = _shape(fp32.spec)
    del fp32
    return Reference(source, ckpt, family, prompts, prompt_ids, obs_ref, obs_fp32, shape, time.perf_counter() - t)


def export(
    model: str,
    target: str | Target,
    out: Path,
    recipe: str | None = None,
    backends: tuple[str, ...] | None = None,
    revision: str | None = None,
    force: bool = False,
    context_length: int | None = None,
    group_size: int | None = None,
    prompts: list[str] | None = None,
    status: Status = lambda msg: None,
    bench: bool = True,
) -> ExportResult:
    """Export ``model`` for ``target`` into the bundle folder ``out`` (see the module docstring).

    ``bench=False`` skips timing the artifacts on this machine; latency.json then holds the target device's
    prediction only (and says so).
    """
    return export_targets(model, [(target, out)], recipe, backends, revision, force, context_length, group_size,
                          prompts, status, bench)[0]


def export_targets(
    model: str,
    targets: list[tuple[str | Target, Path]],
    recipe: str | None = None,
    backends: tuple[str, ...] | None = None,
    revision: str | None = None,
    force: bool = False,
    context_length: int | None = None,
    group_size: int | None = None,
    prompts: list[str] | None = None,
    status: Status = lambda msg: None,
    bench: bool = True,
) -> list[ExportResult]:
    """Export ``model`` for several ``(target, bundle folder)`` pairs: loading, the transformers reference and
    the fp32 decoder's observations are done once and shared; every target is then built, checked and written
    on its own (each bundle atomically)."""
    tgts = [(t if isinstance(t, Target) else load_target(t), out) for t, out in targets]
    plans = [_plan(t, backends, recipe, group_size) for t, _ in tgts]
    for _, out in tgts:
        check_output(out, force)  # fail before the heavy work, not after it
    ctxs = [context_length or t.context_length for t, _ in tgts]
    ref = prepare(model, revision, prompts, max(ctxs), status)
    longest = max(map(len, ref.prompt_ids)) + GREEDY_TOKENS
    if longest > min(ctxs):
        raise InputError(f"parity needs {longest} positions but the context length is {min(ctxs)}",
                         f"pass --context-length {longest} or more")
    return [_export_one(ref, tgt, plan, ctx, out, force, group_size, status, bench)
            for (tgt, out), plan, ctx in zip(tgts, plans, ctxs)]


def _export_one(ref: Reference, tgt: Target, plan, ctx: int, out: Path, force: bool, group_size, status: Status,
                bench: bool) -> ExportResult:
    t0 = time.perf_counter()
    source, ckpt, family, prompts, prompt_ids = ref.source, ref.ckpt, ref.family, ref.prompts, ref.prompt_ids
    obs_ref, obs_fp32, shape = ref.obs_ref, ref.obs_fp32, ref.shape
    timings: dict[str, float] = {"reference_s": ref.seconds}
    status(f"target {tgt.name}")
    checks = [dict(compare("reauthoring", "transformers fp32", "edgeslm fp32 eager", obs_ref, obs_fp32, prompts,
                           tgt.thresholds("", "reauthoring")), artifact=None)]

    job = ExportJob(ckpt, tgt, ctx, prompts, prompt_ids, obs_ref, obs_fp32, group_size or tgt.group_size,
                    status, checks, timings)
    artifacts: list[dict] = []
    new: list[tuple] = []
    with atomic_folder(out, force) as tmp:
        tokenizer_files = _write_tokenizer(ckpt, tmp)
        for backend_name, recipe_name in plan:
            key = _artifact_key(tgt, backend_name, recipe_name, ctx, group_size or tgt.group_size)
            if key in ref.built:
                status(f"{backend_name}: reusing {recipe_name} built for target {ref.built[key]['target']}")
                artifacts.append(job.adopt(ref.built[key], tmp))
                continue
            entry = get_backend(backend_name).export(job, recipe_name, tmp)
            artifacts.append(entry)
            if entry["parity"] != "failed":
                new.append((key, job.record(entry, recipe_name)))

        status("writing bundle")
        doc = parity_document(source.model_id, tgt.name, checks, job.validations)
        reports = write_parity(tmp, doc)
        passed = doc["passed"] and all(a["parity"] != "failed" for a in artifacts)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": "edgeslm-bundle",
            "status": "passed" if passed else "failed",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "target": {"name": tgt.name, "description": tgt.description, "device": tgt.device},
            "model": {
                "id": source.model_id, "source": source.kind, "revision": source.revision, "commit": source.commit,
                "architecture": ckpt.config.model_type, "family": family.name,
                "parameters": sum(v.numel() for v in ckpt.weights.values()),
                "checkpoint_bytes": ckpt.checkpoint_bytes,
                "shape": shape,
            },
            "artifacts": artifacts,
            "tokenizer": {"kind": "huggingface-tokenizers", "files": tokenizer_files},
            "special_tokens": {
                "bos_id": ckpt.special.bos_id, "bos": ckpt.special.bos,
                "eos_ids": list(ckpt.special.eos_ids), "eos": ckpt.special.eos, "pad_id": ckpt.special.pad_id,
            },
            "chat_template": _chat_template(ckpt),
            "generation": _generation_defaults(ckpt),
            "context_length": ctx,
            "provenance": versions(),
            "reports": [file_entry(tmp, r) for r in reports],
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        status("latency: measuring here, predicting on the target device")
        t = time.perf_counter()
        latency = latency_for_export(tmp, out.name, tgt, status, bench=bench)
        timings["latency_s"] = time.perf_counter() - t
        manifest["reports"] += [file_entry(tmp, r) for r in write_latency(tmp, latency)]
        passed = passed and latency["passed"]
        manifest["status"] = "passed" if passed else "failed"
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    for key, built in new:
        ref.built[key] = dict(built, folder=out)
    timings["total_s"] = time.perf_counter() - t0 + ref.seconds
    return ExportResult(out, passed, artifacts, doc, timings, latency)


def _artifact_key(tgt: Target, backend: str, recipe: str, ctx: int, group_size) -> tuple:
    """Artifacts with equal keys are byte-identical whichever target asks; ONNX folders carry the target's
    execution-provider options, so those are part of its key."""
    options = json.dumps(tgt.onnx, sort_keys=True) if backend == "onnx" else ""
    return backend, recipe, ctx, group_size, options
