"""One target's bundle, from the shared reference: the reference-stage checks, one job per model variant, each
planned (backend, recipe) artifact built (or reused from another target of the same export), the speculative
pair, golden vectors for apps, the parity document, the manifest record, latency, and the bundle written once
(atomically)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from edgeslm.backends import get_backend
from edgeslm.backends.base import ExportJob, JobRecords
from edgeslm.bundle.app import app_section, load_entries
from edgeslm.bundle.files import atomic_folder
from edgeslm.filefacts import file_entry
from edgeslm.latency.report import latency_for_export, write_latency
from edgeslm.parity.report import parity_document, write_parity
from edgeslm.parity.stages import compare
from edgeslm.pipeline.manifest_record import manifest_record
from edgeslm.pipeline.plan import Status
from edgeslm.pipeline.reference import Reference, Variant
from edgeslm.pipeline.result import ExportResult
from edgeslm.pipeline.search import search
from edgeslm.pipeline.tokenizer import write_tokenizer
from edgeslm.quant.recipes import AUTO
from edgeslm.records import Artifact, Check, ExportCost, Latency, Manifest, NotBuilt, release, ships
from edgeslm.records import Status as Verdict
from edgeslm.speculative import pair_section, validation_checks
from edgeslm.target import Target

Jobs = list[tuple[Variant, ExportJob]]


def build_target(ref: Reference, tgt: Target, plan, ctx: int, out: Path, force: bool, group_size,
                 status: Status, bench: bool, ctx_from: dict | None = None) -> ExportResult:
    """Build, check and write the bundle ``out`` for ``tgt`` (replaced only with ``force``)."""
    t0 = time.perf_counter()
    records = JobRecords(timings={"reference_s": ref.seconds})
    status(f"target {tgt.name}")
    records.checks += reference_checks(ref, tgt)
    gs = tgt.group_size if group_size is None else group_size
    jobs = [(v, ExportJob.for_variant(ref, v, tgt, ctx, gs, status, records)) for v in ref.models()]
    with atomic_folder(out, force, status) as tmp:
        tokenizer_files = write_tokenizer(ref.ckpt, tmp)
        artifacts, not_built, new = build_artifacts(ref, jobs, plan, tgt, ctx, gs, tmp, status)
        load_entries(artifacts)
        speculative = speculative_pair(ref, jobs, artifacts, tgt, ctx, tmp, status)
        status("golden vectors for apps")
        app = app_section(ref.ckpt, tmp, [a.to_json() for a in artifacts], status)
        status("writing bundle")
        doc = parity_document(ref.source.model_id, tgt.name, records.checks, records.validations,
                              ref.source.provenance().get("gguf"),
                              {a.name: a.facts["search"] for a in artifacts if "search" in a.facts})
        reports = write_parity(tmp, doc)
        manifest = manifest_record(ref, tgt, ctx, ctx_from, doc, artifacts, not_built, tokenizer_files, reports,
                                   app, speculative, tmp)
        cost = export_cost(ref, [b for b, _ in plan], time.perf_counter() - t0 + ref.seconds)
        latency = add_latency(manifest, tmp, out, tgt, bench, status, records.timings, cost)
        manifest.write(tmp)
    for key, built in new:
        ref.built[key] = dict(built, folder=out)
    records.timings["total_s"] = time.perf_counter() - t0 + ref.seconds
    return ExportResult(out, ships(manifest.status), artifacts, doc, records.timings, latency, manifest=manifest)


def reference_checks(ref: Reference, tgt: Target) -> list[Check]:
    """The stages before any backend: re-authoring (transformers vs edgeslm fp32, the draft's too) and each LoRA
    adapter (PEFT unmerged vs edgeslm merged, ~exact)."""
    gate = tgt.thresholds("", "reauthoring")
    checks = [compare("reauthoring", "transformers fp32", "edgeslm fp32 eager", ref.obs_ref, ref.obs_fp32,
                      ref.prompts, gate)]
    for v in (v for v in ref.models() if v.draft is not None):
        checks.append(compare("reauthoring", "transformers fp32 (draft)", "edgeslm fp32 eager (draft)", v.obs_ref,
                              v.obs_fp32, ref.prompts, gate, "draft model"))
    for v in (v for v in ref.models() if v.adapter is not None):
        checks.append(compare("adapter", f"transformers + PEFT adapter {v.adapter.name} fp32",
                              f"edgeslm fp32 eager, adapter {v.adapter.name} merged", v.obs_ref, v.obs_fp32,
                              ref.prompts, gate, f"adapter {v.adapter.name}"))
    return checks


def build_artifacts(ref: Reference, jobs: Jobs, plan, tgt: Target, ctx: int, gs, tmp: Path, status: Status) \
        -> tuple[list[Artifact], list[NotBuilt], list[tuple]]:
    """Each variant × planned (backend, recipe): quantized, lowered, observed and compared by its backend, or
    reused from another target of this export (same key). Returns the artifacts, the backends that could not
    build here, and (key, record) of the newly built ones for later targets to reuse."""
    artifacts: list[Artifact] = []
    not_built: list[NotBuilt] = []
    new: list[tuple] = []
    for (v, job), (backend_name, recipe_name) in ((j, p) for j in jobs for p in plan):
        key = (*artifact_key(tgt, backend_name, recipe_name, ctx, gs), v.adapter and v.adapter.sha256, v.tag)
        if key in ref.built:
            status(f"{backend_name}: reusing {recipe_name} built for target {ref.built[key]['target']}")
            art = job.adopt(ref.built[key], tmp)
        else:
            backend = get_backend(backend_name)
            art = search(backend, job, tmp) if recipe_name == AUTO else job.finish(backend.export(job, recipe_name, tmp))
            if isinstance(art, NotBuilt):  # its stages are reported; no file stands in for it
                not_built.append(art)
                continue
            if art.status is not Verdict.FAILED:
                defaults = {s: g for s, g in backend.gated_stages(art.recipe).items() if g is not None}
                new.append((key, job.record(art, art.recipe, defaults)))
        if v.adapter is not None:
            art.facts["adapter"] = v.adapter.name
        if v.draft is not None:
            art.facts.update(role="draft", model_shape=v.draft.shape)
        artifacts.append(art)
    return artifacts, not_built, new


def artifact_key(tgt: Target, backend: str, recipe: str, ctx: int, group_size) -> tuple:
    """Artifacts with equal keys are byte-identical whichever target asks; a backend whose artifact depends on
    target options (ONNX execution providers, Core ML's Neural Engine form, ...) names them in
    ``build_options(target)``, so they are part of its key."""
    options = get_backend(backend).build_options(tgt)
    return backend, recipe, ctx, group_size, json.dumps(options, sort_keys=True, default=str)


def speculative_pair(ref: Reference, jobs: Jobs, artifacts: list[Artifact], tgt: Target, ctx: int, tmp: Path,
                     status: Status) -> dict | None:
    """With a draft model: draft + target measured in their runtimes (k = 2, 4, 6), each pair a validation stage
    (or not run, never passed), and the artifacts' verdicts set again (in place). None without a draft."""
    draft = next((v.draft for v, _ in jobs if v.draft is not None), None)
    if draft is None:
        return None
    job = jobs[0][1]  # the target's records are shared by its jobs
    status("speculative decoding: draft + target in their runtimes, k = 2, 4, 6")
    speculative = pair_section(tmp, artifacts, draft, ref, tgt, ctx, status)
    for pair in speculative["pairs"]:
        if pair["measured"]:
            job.validate("speculative", pair["target"], validation_checks(pair))
        else:  # reported as not run, never as passed
            job.not_run("speculative", pair["target"], pair["reason"], get_backend(pair["backend"]).runs_on)
    artifacts[:] = [job.finish(a) for a in artifacts]
    return speculative


def export_cost(ref: Reference, backends: list[str], seconds: float) -> ExportCost | None:
    """This target's share of the run's forecast (its artifacts, the shared reference) against the ``seconds``
    it took and the run's peak RSS so far; None where the run has no forecast (a reference made by hand)."""
    if ref.forecast is None:
        return None
    fc = ref.forecast.only(backends)
    peak = ref.rss.read() if ref.rss is not None else None
    return ExportCost(backends, round(fc.seconds, 1), round(seconds, 1), round(fc.peak_bytes / 2**20),
                      round(peak["peak_mib"]) if peak else None, peak["method"] if peak else None, os.cpu_count())


def add_latency(manifest: Manifest, tmp: Path, out: Path, tgt: Target, bench: bool, status: Status,
                timings: dict, cost: ExportCost | None = None) -> Latency:
    """latency.json (measured here with ``bench``, predicted on the target device always, the export's ``cost``
    against its forecast); its report and verdict join the manifest record, which the caller then writes."""
    status("latency: " + ("measuring here, " if bench else "") + "predicting on the target device")
    if bench:  # the bench's runtimes load the bundle as an app does: a provisional manifest.json, replaced below
        manifest.write(tmp)
    t = time.perf_counter()
    latency = latency_for_export(tmp, out.name, tgt, status, bench=bench, manifest=manifest, cost=cost)
    timings["latency_s"] = time.perf_counter() - t
    manifest.reports += [file_entry(tmp, r) for r in write_latency(tmp, latency)]
    manifest.status = release([manifest.status, latency.status])
    return latency
