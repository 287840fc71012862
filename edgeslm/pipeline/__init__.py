"""The export pipeline, usable from Python: model → quantized artifacts + tokenizer + manifest + parity report.

    from edgeslm.pipeline import export
    result = export("demo", "android", Path("out/demo-android"))

or, for several targets in one run, ``export_targets(ExportRequest.of(...))`` (edgeslm/request.py). The Python
API (``edgeslm.api``) and the CLI (``edgeslm.cli``) are thin layers over this package.

One export, top-down (a module each):

* ``plan.py``, ``checks.py`` — the request checked before the model's weights are read: each target's
  (backend, recipe) plan, gates, device and output folder, then the model's shapes, context lengths and memory;
* ``reference.py`` — what every target shares, computed once: the checkpoint, the transformers reference and
  the edgeslm fp32 observations, one variant per LoRA adapter or draft model;
* ``target_build.py`` — per target: per backend quantize → lower → observe → compare (edgeslm/backends), then
  the bundle: speculative pair, golden vectors, parity document, manifest record (``manifest_record.py``,
  tokenizer files from ``tokenizer.py``), latency, written once;
* then, with ``report_dir``, the run's release reports (edgeslm/reports).
"""

from __future__ import annotations

from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.latency.host import host_facts
from edgeslm.latency.rss import PeakRss
from edgeslm.memory import freeze_long_lived, long_lived_frozen, map_large_buffers
from edgeslm.pipeline.checks import check_memory, check_model_fits, check_request, context_lengths
from edgeslm.pipeline.plan import Recipes, Status
from edgeslm.pipeline.reference import (Reference, Variant, load, load_adapters, load_draft, prepare,
                                        prepare_adapters, prepare_draft)
from edgeslm.pipeline.result import ExportResult
from edgeslm.pipeline.target_build import build_target
from edgeslm.preflight import Forecast
from edgeslm.reports.write import write_reports
from edgeslm.request import ExportRequest
from edgeslm.target import Target, load_target

__all__ = ["ExportResult", "Recipes", "Reference", "Status", "Variant", "export", "export_targets"]


def export(model: str | ExportRequest, target: str | Target | None = None, out: Path | None = None,
           recipe: Recipes = None, *, status: Status = lambda msg: None, **options) -> ExportResult:
    """Export ``model`` for ``target`` into the bundle folder ``out`` (see the module docstring), or run a
    one-target ``ExportRequest``. ``options`` are ``ExportRequest``'s fields (``recipe`` is its ``recipes``):

    ``recipe``: ``"R"`` for every backend that supports R (the others keep the target's recipe),
    ``{backend: R}``, or a sequence mixing ``"R"`` and ``"backend=R"`` (as ``--recipe`` repeats).
    ``context_length`` defaults to the target's, capped at the model's max_position_embeddings.

    ``bench=False`` skips timing the artifacts on this machine; latency.json then holds the target device's
    prediction only (and says so). ``memory_check=False`` goes on when the predicted peak memory exceeds what
    this machine has available (see edgeslm/preflight.py).
    """
    if isinstance(model, ExportRequest):
        request = model
    else:
        if target is None or out is None:
            raise InputError("export needs a target and a bundle folder", "call export(model, target, out)")
        request = ExportRequest(model, ((target, out),), recipes=recipe, **options)
    if len(request.targets) != 1:
        raise InputError(f"export writes one bundle; this request has {len(request.targets)} targets",
                         "call export_targets(request) for several")
    return export_targets(request, status)[0]


def export_targets(request: ExportRequest, status: Status = lambda msg: None) -> list[ExportResult]:
    """Export ``request.model`` for each of its ``(target, bundle folder)`` pairs: loading, the transformers
    reference and the fp32 decoder's observations are done once and shared; every target is then built, checked
    and written on its own (each bundle atomically). ``request.report_dir``: also write the release reports of
    all targets there (summary.json, junit.xml, summary.md, index.html; atomically, replaced only with
    ``force``)."""
    r = request
    tgts = [(t if isinstance(t, Target) else load_target(t), out) for t, out in r.targets]
    extra = ((r.report_dir, "--report-dir folder"),) if r.report_dir is not None else ()
    plans = check_request(tgts, r.backends, r.recipes, r.group_size, r.force, status, extra)
    map_large_buffers()  # freed weights and logits leave the RSS at once, not at the next stage's peak
    probe = PeakRss()
    probe.start()
    with long_lived_frozen():
        ref, ctx_info, fc = shared_reference(r, [t for t, _ in tgts], plans, status)
        ref.rss = probe
        results = [build_target(ref, tgt, plan, ctx, out, r.force, r.group_size, status, r.bench, ctx_from)
                   for (tgt, out), plan, (ctx, ctx_from) in zip(tgts, plans, ctx_info)]
    peak = probe.stop()
    written = []
    if r.report_dir is not None:
        status(f"writing reports to {r.report_dir}")
        written = write_reports([res.out for res in results], r.report_dir, r.force, status)
    for res in results:
        res.forecast = fc.to_json()
        res.memory = {"peak_rss_mib": round(peak["peak_mib"]), "method": peak["method"]}
        res.reports = written
    return results


def shared_reference(r: ExportRequest, tgts: list[Target], plans, status: Status) \
        -> tuple[Reference, list[tuple[int, dict]], Forecast]:
    """The checkpoint (with its adapters and draft) checked against every target before its weights are read,
    the memory forecast, then the reference every target shares. Returns it with each target's (context length,
    where it came from) and the forecast."""
    prompts = list(r.prompts) if r.prompts is not None else None
    loaded = load(r.model, r.revision, status)
    freeze_long_lived()  # transformers imported, the checkpoint read: both live as long as the export
    ctx_info = context_lengths(loaded[1], tgts, r.context_length, status)
    ctxs = [c for c, _ in ctx_info]
    check_model_fits(loaded[1], tgts, plans, ctxs, r.group_size, prompts)
    lora = load_adapters(tuple(r.adapters), loaded[1])
    draft_loaded = load_draft(r.draft, loaded[1], tgts, plans, ctxs, r.group_size, prompts, lora, status)
    fc = check_memory(loaded[1], tgts, plans, r.memory_check, status)
    if r.bench:  # the host's bandwidth probe reads a 512 MiB buffer: now, not on top of the export's own peak
        status("measuring this machine's memory bandwidth")
        host_facts()
    ref = prepare(r.model, r.revision, prompts, max(ctxs), status, loaded, min(ctxs), fc.reference_s)
    ref.forecast = fc
    prepare_adapters(ref, lora, max(ctxs), status)
    if draft_loaded is not None:
        prepare_draft(ref, r.draft, draft_loaded, prompts, ctxs, status)
    return ref, ctx_info, fc
