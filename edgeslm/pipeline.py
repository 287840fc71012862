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

from edgeslm.backends import BACKENDS
from edgeslm.bundle.files import atomic_folder, check_output, file_entry
from edgeslm.bundle.manifest import MANIFEST, SCHEMA_VERSION, versions
from edgeslm.errors import InputError
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import TOKENIZER_FILES, Checkpoint, load_checkpoint
from edgeslm.model.families import family_for
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder, HFModel, RuntimeStepModel
from edgeslm.parity.report import parity_document, write_parity
from edgeslm.parity.stages import GREEDY_TOKENS, compare, default_prompts, observe
from edgeslm.quant.recipes import apply_recipe, get_recipe
from edgeslm.target import Target, load_target

Status = Callable[[str], None]


@dataclass
class ExportResult:
    out: Path
    passed: bool
    artifacts: list[dict]
    parity: dict
    timings: dict = field(default_factory=dict)


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


def export(
    model: str,
    target: str | Target,
    out: Path,
    recipe: str | None = None,
    revision: str | None = None,
    force: bool = False,
    context_length: int | None = None,
    group_size: int | None = None,
    prompts: list[str] | None = None,
    status: Status = lambda msg: None,
) -> ExportResult:
    t0 = time.perf_counter()
    tgt = target if isinstance(target, Target) else load_target(target)
    recipe_name = recipe or tgt.recipe
    rec = get_recipe(recipe_name, group_size or tgt.group_size)
    ctx = context_length or tgt.context_length
    check_output(out, force)  # fail before the heavy work, not after it

    status("resolving model")
    source = resolve(model, revision)
    ckpt = load_checkpoint(source)
    family = family_for(ckpt.config)
    prompts = prompts or default_prompts()
    prompt_ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    longest = max(map(len, prompt_ids)) + GREEDY_TOKENS
    if longest > ctx:
        raise InputError(f"parity needs {longest} positions but the context length is {ctx}",
                         f"pass --context-length {longest} or more")
    timings: dict[str, float] = {}

    status("running the transformers reference")
    t = time.perf_counter()
    ref = ckpt.reference_model()
    obs_ref = observe(HFModel(ref), prompt_ids)
    del ref
    fp32 = build_decoder(ckpt, ctx)
    obs_fp32 = observe(EagerDecoder(fp32), prompt_ids)
    del fp32
    timings["reference_s"] = time.perf_counter() - t
    checks = [dict(compare("reauthoring", "transformers fp32", "edgeslm fp32 eager", obs_ref, obs_fp32, prompts,
                           tgt.thresholds(recipe_name, "reauthoring")), artifact=None)]

    artifacts: list[dict] = []
    with atomic_folder(out, force) as tmp:
        for backend_name in tgt.backends:
            backend = BACKENDS[backend_name]
            name = backend.artifact_name(recipe_name)
            status(f"{backend_name}: quantizing ({recipe_name})")
            t = time.perf_counter()
            dec = build_decoder(ckpt, ctx, use_custom_ops=backend.use_custom_ops)
            applied = apply_recipe(dec, rec)
            obs_q = observe(EagerDecoder(dec), prompt_ids) if applied else obs_fp32
            if applied:
                checks.append(dict(compare("quantization", "edgeslm fp32 eager", f"{recipe_name} eager", obs_fp32,
                                           obs_q, prompts, tgt.thresholds(recipe_name, "quantization")),
                                   artifact=name))
            status(f"{backend_name}: lowering to {name}")
            facts = backend.lower(dec, ckpt, tmp / name)
            timings[f"{backend_name}_export_s"] = time.perf_counter() - t
            del dec
            status(f"{backend_name}: parity in {backend.runtime}")
            obs_rt = observe(RuntimeStepModel(backend.load(tmp / name)), prompt_ids)
            lowering = dict(compare("lowering", f"{recipe_name} eager", f"{name} in {backend_name}", obs_q, obs_rt,
                                    prompts, tgt.thresholds(recipe_name, "lowering")), artifact=name)
            checks.append(lowering)
            checks.append(dict(compare("end_to_end", "transformers fp32", f"{name} in {backend_name}", obs_ref,
                                       obs_rt, prompts, None), artifact=name))
            art_checks = [c for c in checks if c["artifact"] == name and c["gate"]["thresholds"] is not None]
            artifacts.append({
                **file_entry(tmp, name),
                "backend": backend_name,
                "runtime": backend.runtime,
                "recipe": recipe_name,
                "quantization": sorted({r.describe() for r in rec.rules}) if applied else [],
                "parity": "passed" if all(c["gate"]["passed"] for c in art_checks) else "failed",
                **facts,
            })

        status("writing bundle")
        doc = parity_document(source.model_id, tgt.name, checks)
        reports = write_parity(tmp, doc)
        passed = doc["passed"]
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
            },
            "artifacts": artifacts,
            "tokenizer": {"kind": "huggingface-tokenizers", "files": _write_tokenizer(ckpt, tmp)},
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
    timings["total_s"] = time.perf_counter() - t0
    return ExportResult(out, passed, artifacts, doc, timings)
