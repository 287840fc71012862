"""The export pipeline, usable from Python: model → quantized artifacts + tokenizer + manifest + parity report.

    from edgeslm.pipeline import export
    result = export("demo", "android", Path("out/demo-android"))

or, for several targets in one run, ``export_targets(ExportRequest.of(...))`` (edgeslm/request.py). The Python
API (``edgeslm.api``) and the CLI (``edgeslm.cli``) are thin layers over this module.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgeslm import preflight
from edgeslm.backends import backend_names, get_backend, not_built_here
from edgeslm.backends.base import ExportJob
from edgeslm.bundle.app import app_section, load_entries
from edgeslm.bundle.files import atomic_folder, check_output, file_entry
from edgeslm.bundle.manifest import SCHEMA_VERSION, versions
from edgeslm.errors import InputError
from edgeslm.latency.report import latency_for_export, write_latency
from edgeslm.latency.rss import PeakRss
from edgeslm.model.build import build_decoder, meta_decoder
from edgeslm.model.checkpoint import TOKENIZER_FILES, Checkpoint, load_checkpoint
from edgeslm.model.families import family_for
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder, HFModel
from edgeslm.parity.report import parity_document, write_parity
from edgeslm.parity.stages import GREEDY_TOKENS, compare, default_prompts, heldout_chunks, observe
from edgeslm.quant.recipes import canonical, get_recipe
from edgeslm.quant.recipes import plan as plan_recipe
from edgeslm.records import Artifact, Latency, Manifest, ManifestTarget, NotBuilt, release, ships
from edgeslm.records import Status as Verdict
from edgeslm.request import ExportRequest
from edgeslm.target import Target, check_gate_coverage, check_target_device, load_target

Status = Callable[[str], None]


@dataclass
class ExportResult:
    """One target's export: its records (``artifacts``, parity.json's document, ``latency``) as written to the
    bundle; ``to_json`` is what ``edgeslm export --json`` prints for it."""

    out: Path
    passed: bool
    artifacts: list[Artifact]
    parity: dict
    timings: dict = field(default_factory=dict)
    latency: Latency | None = None
    forecast: dict | None = None  # predicted peak memory and time (edgeslm/preflight.py), to set beside timings
    memory: dict | None = None  # this export's measured peak RSS (the process's own, from when export began)
    reports: list[Path] = field(default_factory=list)  # the run's release reports (``report_dir``), if asked
    manifest: Manifest | None = field(default=None, compare=False)  # in the bundle, not in to_json

    def to_json(self) -> dict:
        d = {"output": str(self.out), "passed": self.passed, "artifacts": [a.to_json() for a in self.artifacts],
             "timings": self.timings, "forecast": self.forecast, "memory": self.memory, "parity": self.parity,
             "latency": self.latency.to_json() if self.latency is not None else None}
        return {**d, "reports": [str(p) for p in self.reports]} if self.reports else d

    @classmethod
    def from_json(cls, d: dict) -> "ExportResult":
        return cls(Path(d["output"]), d["passed"], [Artifact.from_json(a) for a in d["artifacts"]], d["parity"],
                   d["timings"], Latency.from_json(d["latency"]) if d.get("latency") is not None else None,
                   d.get("forecast"), d.get("memory"), [Path(p) for p in d.get("reports", [])])


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
    if cfg.is_file():  # transformers 5 writes a class name older runtimes reject (docs/stack.md)
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


def _shape(spec) -> dict:
    """The decoder's dimensions, as the latency model needs them (bytes and FLOPs per token)."""
    keys = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size")
    return {k: getattr(spec, k) for k in keys}


Recipes = str | dict | tuple | list | None  # "R", {backend: R}, or ("R", "backend=R", ...) as --recipe repeats


def _split_recipes(recipe: Recipes) -> tuple[list[str], dict[str, str]]:
    """``recipe`` as (bare recipes, {backend: recipe}), names canonical: a bare ``R`` applies to every chosen
    backend that supports it, ``backend=R`` to that backend only."""
    if recipe is None:
        return [], {}
    if isinstance(recipe, dict):
        return [], {b: canonical(r) for b, r in recipe.items()}
    bare: list[str] = []
    per: dict[str, str] = {}
    for item in [recipe] if isinstance(recipe, str) else recipe:
        backend, eq, name = item.rpartition("=")
        if not name.strip() or (eq and not backend.strip()):
            raise InputError(f"--recipe {item!r} names no {'recipe' if not name.strip() else 'backend'}",
                             f"write --recipe RECIPE or --recipe BACKEND=RECIPE (backends: {', '.join(backend_names())})")
        if not eq:
            bare.append(canonical(name))
        elif per.get(backend, canonical(name)) != canonical(name):
            raise InputError(f"--recipe names two recipes for the {backend} backend ({per[backend]}, {name})",
                             f"pass --recipe {backend}=RECIPE once")
        else:
            per[backend] = canonical(name)
    return list(dict.fromkeys(bare)), per


def _plan(tgt: Target, backends, recipe: Recipes, group_size, status: Status = lambda msg: None) \
        -> list[tuple[str, str]]:
    """(backend, recipe) pairs to build, checked before any heavy work.

    Each chosen backend takes its ``backend=R`` recipe if given, else a bare recipe it supports, else the
    target's. A bare recipe no chosen backend supports, or ``backend=R`` for a backend not being built or a
    recipe it lacks, is an error listing the backends and their recipes."""
    chosen = tuple(backends or tgt.backends)
    for b in chosen:
        if b not in backend_names():
            raise InputError(f"unknown backend {b!r}", f"supported backends are {', '.join(backend_names())}")
    bare, per = _split_recipes(recipe)
    for r in [*bare, *per.values()]:
        get_recipe(r, group_size)
    offered = "; ".join(f"{b} supports {', '.join(get_backend(b).recipes)}" for b in chosen)
    for b, r in per.items():
        if b not in chosen:
            raise InputError(f"--recipe {b}={r}: the {b} backend is not being built (target {tgt.name} builds "
                             f"{', '.join(chosen)})", f"name one of them ({offered})")
        if r not in get_backend(b).recipes:
            raise InputError(f"recipe {r!r} is not available for the {b} backend",
                             f"{b} supports {', '.join(get_backend(b).recipes)}")
    takers: dict[str, str] = {}
    for r in bare:
        takes = [b for b in chosen if b not in per and r in get_backend(b).recipes]
        if not takes and not any(r in get_backend(b).recipes for b in chosen):
            raise InputError(f"recipe {r!r} is not available for the {' or '.join(chosen)} backend"
                             f"{'s' if len(chosen) > 1 else ''} being built",
                             f"pass a recipe one of them supports ({offered}), or choose backends with --backend")
        for b in takes:
            if b in takers:
                raise InputError(f"recipes {takers[b]!r} and {r!r} both apply to the {b} backend",
                                 f"pass --recipe {b}=RECIPE to choose")
            takers[b] = r
    pairs = []
    for b in chosen:
        r = per.get(b) or takers.get(b) or canonical(tgt.recipe_for(b))
        get_recipe(r, group_size)
        supported = get_backend(b).recipes
        if r not in supported:
            raise InputError(f"recipe {r!r} is not available for the {b} backend",
                             f"{b} supports {', '.join(supported)}")
        pairs.append((b, r))
    kept = [f"{b} keeps the target's {r}" for b, r in pairs if bare and b not in per and b not in takers]
    if kept:
        status(f"target {tgt.name}: --recipe {', '.join(bare)} applies to "
               f"{', '.join(b for b in chosen if b in takers) or 'no backend'}; {', '.join(kept)}")
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
    heldout_ids: list = field(default_factory=list)  # held-out text chunks: perplexity at every stage
    built: dict = field(default_factory=dict)  # artifact key → what another target can reuse (ExportJob.adopt)
    variants: list = field(default_factory=list)  # one per LoRA adapter (empty: the base model is exported)


@dataclass
class Variant:
    """The model an artifact is built from: the base, or the base with one LoRA adapter merged, with its own
    reference (transformers + PEFT, unmerged) and edgeslm fp32 observations."""

    tag: str  # artifact name suffix ("" for the base or a single adapter, "-draft" for a draft model)
    ckpt: Checkpoint
    obs_ref: object
    obs_fp32: object
    adapter: object = None
    draft: Reference | None = None  # a speculative-decoding draft: its own reference


def load(model: str, revision: str | None, status: Status = lambda msg: None) -> tuple[object, Checkpoint]:
    status("resolving model")
    source = resolve(model, revision)
    return source, load_checkpoint(source)


def context_lengths(ckpt: Checkpoint, tgts: list[Target], context_length: int | None,
                    status: Status = lambda msg: None) -> list[tuple[int, dict]]:
    """Each target's context length and where it came from: the explicit ``context_length`` (refused above the
    model's max_position_embeddings), else the target's, capped at the model's limit with a notice."""
    limit = getattr(ckpt.config, "max_position_embeddings", None)
    if context_length is not None:
        if limit and context_length > limit:
            raise InputError(f"--context-length {context_length} exceeds the model's max_position_embeddings "
                             f"({limit})", f"pass --context-length {limit} or less (or leave it out)")
        return [(context_length, {"source": "option"}) for _ in tgts]
    out = []
    for t in tgts:
        if limit and t.context_length > limit:
            status(f"target {t.name}: context length {t.context_length} is above the model's "
                   f"max_position_embeddings ({limit}); using {limit}")
            out.append((limit, {"source": "model", "target": t.context_length, "max_position_embeddings": limit}))
        else:
            out.append((t.context_length, {"source": "target"}))
    return out


def prepare(model: str, revision: str | None, prompts: list[str] | None, context_length: int,
            status: Status = lambda msg: None, loaded: tuple[object, Checkpoint] | None = None,
            min_context: int | None = None) -> Reference:
    """The shared reference: transformers fp32 and edgeslm fp32 observations, with the decoder built for the
    longest ``context_length`` and held-out chunks that fit the shortest (``min_context``)."""
    source, ckpt = loaded or load(model, revision, status)
    family = family_for(ckpt.config)
    prompts = prompts or default_prompts()
    prompt_ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    heldout = heldout_chunks(ckpt.tokenizer, min_context or context_length)
    status("running the transformers reference")
    t = time.perf_counter()
    ref = ckpt.reference_model()
    obs_ref = observe(HFModel(ref), prompt_ids, heldout)
    del ref
    preflight.release_memory()  # the fp32 reference must be gone before the fp32 decoder is built (peak memory)
    fp32 = build_decoder(ckpt, context_length, untie=False)
    obs_fp32 = observe(EagerDecoder(fp32), prompt_ids, heldout, path=obs_ref.greedy)
    shape = _shape(fp32.spec)
    del fp32
    preflight.release_memory()
    return Reference(source, ckpt, family, prompts, prompt_ids, obs_ref, obs_fp32, shape, time.perf_counter() - t,
                     heldout_ids=heldout)


def prepare_adapters(ref: Reference, adapters: list, context_length: int, status: Status = lambda msg: None) \
        -> None:
    """One variant per adapter: the PEFT reference (base + adapter, unmerged) and the edgeslm decoder built from
    the merged weights, observed on the same prompts (the adapter stage compares them)."""
    from edgeslm.model.adapter import adapted, peft_reference

    for a in adapters:
        status(f"adapter {a.name}: transformers + PEFT reference, edgeslm merged decoder")
        model = peft_reference(ref.ckpt, a)
        obs_ref = observe(HFModel(model), ref.prompt_ids, ref.heldout_ids)
        del model
        preflight.release_memory()
        ckpt = adapted(ref.ckpt, a)
        fp32 = build_decoder(ckpt, context_length, untie=False)
        obs_fp32 = observe(EagerDecoder(fp32), ref.prompt_ids, ref.heldout_ids, path=obs_ref.greedy)
        del fp32
        preflight.release_memory()
        ref.variants.append(Variant(f"-{a.name}" if len(adapters) > 1 else "", ckpt, obs_ref, obs_fp32, a))


def load_draft(draft: str, ckpt: Checkpoint, tgts: list[Target], plans, ctxs, group_size, prompts, adapters,
               status: Status = lambda msg: None) -> tuple[object, Checkpoint] | None:
    """The draft model, checked before any heavy work: its tokenizer must be the target's (first difference
    named), and it must fit every target's plan like the target does."""
    if draft is None:
        return None
    if adapters:
        raise InputError("--draft and --adapter together are not supported", "export the pair and the adapters "
                         "in separate runs")
    from edgeslm.speculative import check_tokenizers

    status(f"resolving draft model {draft}")
    loaded = load(draft, None)
    d = loaded[1]
    check_tokenizers(ckpt.tokenizer, d.tokenizer, ckpt.config.vocab_size, d.config.vocab_size, ckpt.special,
                     d.special)
    check_model_fits(d, tgts, plans, ctxs, group_size, prompts)
    return loaded


def load_adapters(specs: tuple[str, ...], ckpt: Checkpoint) -> list:
    """Each ``--adapter`` checked against the base (headers only), with names unique in the bundle."""
    from edgeslm.model.adapter import load_adapter

    out, names = [], set()
    for spec in specs:
        a = load_adapter(spec, ckpt)
        name, i = a.name, 2
        while name in names:
            name, i = f"{a.name}{i}", i + 1
        names.add(name)
        out.append(a if name == a.name else load_adapter(spec, ckpt, name))
    shas = [a.sha256 for a in out]
    dup = next((a for a, s in zip(out, shas) if shas.count(s) > 1), None)
    if dup is not None:
        raise InputError(f"adapter {dup.source.model_id} is given twice (same weights)", "pass each adapter once")
    return out


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
    model, targets, report_dir, recipe, backends = r.model, r.targets, r.report_dir, r.recipes, r.backends
    group_size, revision, context_length, force = r.group_size, r.revision, r.context_length, r.force
    bench, memory_check, adapters, draft = r.bench, r.memory_check, r.adapters, r.draft
    prompts = list(r.prompts) if r.prompts is not None else None
    tgts = [(t if isinstance(t, Target) else load_target(t), out) for t, out in targets]
    extra = ((report_dir, "--report-dir folder"),) if report_dir is not None else ()
    plans = check_request(tgts, backends, recipe, group_size, force, status, extra)
    probe = PeakRss()
    probe.start()
    loaded = load(model, revision, status)
    ctx_info = context_lengths(loaded[1], [t for t, _ in tgts], context_length, status)
    ctxs = [c for c, _ in ctx_info]
    check_model_fits(loaded[1], [t for t, _ in tgts], plans, ctxs, group_size, prompts)
    lora = load_adapters(tuple(adapters), loaded[1])
    draft_loaded = load_draft(draft, loaded[1], [t for t, _ in tgts], plans, ctxs, group_size, prompts, lora, status)
    fc = _preflight(loaded[1], plans, memory_check, status)
    ref = prepare(model, revision, prompts, max(ctxs), status, loaded, min(ctxs))
    prepare_adapters(ref, lora, max(ctxs), status)
    if draft_loaded is not None:
        status("draft model: transformers reference and edgeslm fp32 decoder")
        dref = prepare(draft, None, prompts, max(ctxs), status, draft_loaded, min(ctxs))
        ref.variants = [Variant("", ref.ckpt, ref.obs_ref, ref.obs_fp32),
                        Variant("-draft", dref.ckpt, dref.obs_ref, dref.obs_fp32, draft=dref)]
    results = [_export_one(ref, tgt, plan, ctx, out, force, group_size, status, bench, ctx_from)
               for (tgt, out), plan, (ctx, ctx_from) in zip(tgts, plans, ctx_info)]
    peak = probe.stop()
    written = []
    if report_dir is not None:
        from edgeslm.reports.write import write_reports

        status(f"writing reports to {report_dir}")
        written = write_reports([r.out for r in results], report_dir, force)
    for r in results:
        r.forecast = fc.to_json()
        r.memory = {"peak_rss_mib": round(peak["peak_mib"]), "method": peak["method"]}
        r.reports = written
    return results


def check_request(tgts: list[tuple[Target, Path]], backends, recipe: Recipes, group_size: int | None,
                  force: bool, status: Status = lambda msg: None,
                  extra_outputs: tuple[tuple[Path, str], ...] = ()) -> list[list[tuple[str, str]]]:
    """Everything about a request that can be checked before the checkpoint is read (its plain values were
    checked by ``ExportRequest``), each refusal one InputError: each target's plan, gates and device, and the
    output folders (writable, replaceable, not colliding). ``extra_outputs``: other folders the run will
    write, as (path, what). Returns the plans."""
    plans = [_plan(t, backends, recipe, group_size, status) for t, _ in tgts]
    for (t, _), plan in zip(tgts, plans):
        check_gate_coverage(t, plan)  # an ungated stage must not pass silently: refuse before the heavy work
        check_target_device(t)
        check_something_built(t, plan)
    seen: dict[Path, str] = {}
    outputs = [(out, "output" if len(tgts) == 1 else f"target {t.name}'s output") for t, out in tgts]
    for out, what in outputs + list(extra_outputs):
        key = out.expanduser().resolve()
        for other, other_what in seen.items():
            if key == other or other in key.parents or key in other.parents:
                raise InputError(
                    f"{other_what} and {what} {'are the same folder' if key == other else 'overlap'} ({out})",
                    "choose another --report-dir" if (out, what) in extra_outputs else
                    "give the targets different names (target files are named by their file's stem), or export "
                    "them in separate runs")
        seen[key] = what
        check_output(out, force, what)  # fail before the heavy work, not after it
    return plans


def check_something_built(tgt: Target, plan) -> None:
    """A bundle holds at least one artifact: refuse a plan whose every backend cannot write its artifact here."""
    why = {b: not_built_here(b) for b, _ in plan}
    if plan and all(why.values()):
        first = next(iter(why))
        others = [b for b in tgt.backends if b not in why and not not_built_here(b)]
        raise InputError(f"target {tgt.name} would write no artifact on this machine: {first} cannot build here "
                         f"({why[first]})", "add a backend that builds here" +
                         (f" (e.g. --backend {others[0]} beside --backend {first})" if others else "") +
                         f", or run where {first} can build")


def check_model_fits(ckpt: Checkpoint, tgts: list[Target], plans, ctxs: list[int], group_size: int | None,
                     prompts: list[str] | None = None) -> None:
    """Checks that need the model's config and tokenizer but no weights: the weights' shapes match the config,
    every context length holds the parity prompts plus their greedy tokens, and every recipe's groups divide
    the layers it quantizes."""
    ckpt.check_shapes()
    prompt_ids = [ckpt.tokenizer(p).input_ids for p in prompts or default_prompts()]
    vocab = ckpt.config.vocab_size
    past = sorted({i for ids in prompt_ids for i in ids if i >= vocab})
    if past:  # tokens added to the tokenizer but not to the embedding (tokenizers may carry unused extras)
        raise InputError(f"the tokenizer gives ids {past[:4]} for the parity prompts but the model's vocab_size is "
                         f"{vocab}: they index past the embedding", "use the tokenizer saved with this model (tokens "
                         "added later need resize_token_embeddings and a re-save)")
    longest = max(map(len, prompt_ids)) + GREEDY_TOKENS
    if longest > min(ctxs):
        raise InputError(f"parity needs {longest} positions (the longest prompt plus {GREEDY_TOKENS} greedy tokens) "
                         f"but the context length is {min(ctxs)}", f"pass --context-length {longest} or more")
    meta = meta_decoder(ckpt, min(ctxs))
    for tgt, plan in zip(tgts, plans):
        for _, recipe_name in plan:
            plan_recipe(meta, get_recipe(recipe_name, tgt.group_size if group_size is None else group_size))


def _preflight(ckpt: Checkpoint, plans, memory_check: bool, status: Status) -> preflight.Forecast:
    """Predict peak memory and time from the checkpoint's shape; refuse before any heavy work when this machine's
    memory cannot hold the export (unless ``memory_check`` is off)."""
    cfg = ckpt.config
    artifacts = sorted({pair for plan in plans for pair in plan})
    fc = preflight.forecast(ckpt.parameters, cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers,
                            bool(getattr(cfg, "tie_word_embeddings", False)), [b for b, _ in artifacts],
                            preflight.env_available())
    status(fc.describe())
    if memory_check and not fc.fits:
        need = fc.peak_bytes / preflight.GiB
        raise InputError(
            f"this export needs about {need:.1f} GiB of memory at its peak (fp32 model "
            f"{fc.fp32_bytes / preflight.GiB:.1f} GiB) but this machine has {fc.available_bytes / preflight.GiB:.1f} "
            "GiB available",
            f"free memory or use a machine with at least {need:.0f} GiB; pass --no-memory-check to try anyway")
    return fc


def _export_one(ref: Reference, tgt: Target, plan, ctx: int, out: Path, force: bool, group_size, status: Status,
                bench: bool, ctx_from: dict | None = None) -> ExportResult:
    t0 = time.perf_counter()
    source, ckpt, family, prompts, prompt_ids = ref.source, ref.ckpt, ref.family, ref.prompts, ref.prompt_ids
    obs_ref, obs_fp32, shape = ref.obs_ref, ref.obs_fp32, ref.shape
    timings: dict[str, float] = {"reference_s": ref.seconds}
    status(f"target {tgt.name}")
    checks = [compare("reauthoring", "transformers fp32", "edgeslm fp32 eager", obs_ref, obs_fp32, prompts,
                      tgt.thresholds("", "reauthoring"))]
    variants = ref.variants or [Variant("", ckpt, obs_ref, obs_fp32)]
    for v in (v for v in variants if v.draft is not None):  # the draft's own re-authoring stage
        checks.append(compare("reauthoring", "transformers fp32 (draft)", "edgeslm fp32 eager (draft)", v.obs_ref,
                              v.obs_fp32, prompts, tgt.thresholds("", "reauthoring"), "draft model"))
    for v in (v for v in variants if v.adapter is not None):  # LoRA: PEFT (unmerged) vs edgeslm merged, ~exact
        checks.append(compare("adapter", f"transformers + PEFT adapter {v.adapter.name} fp32",
                              f"edgeslm fp32 eager, adapter {v.adapter.name} merged", v.obs_ref, v.obs_fp32,
                              prompts, tgt.thresholds("", "reauthoring"), f"adapter {v.adapter.name}"))
    gs = tgt.group_size if group_size is None else group_size
    jobs = []
    for v in variants:  # one job per model variant; checks, timings and validations shared
        job = ExportJob(v.ckpt, tgt, ctx, prompts, prompt_ids, v.obs_ref, v.obs_fp32, ref.heldout_ids, gs, status,
                        checks, timings, [] if not jobs else jobs[0][1].validations, v.tag,
                        "draft" if v.draft is not None else "model")
        jobs.append((v, job))
    job = jobs[0][1]
    artifacts: list[Artifact] = []
    not_built: list[NotBuilt] = []
    new: list[tuple] = []
    with atomic_folder(out, force) as tmp:
        tokenizer_files = _write_tokenizer(ckpt, tmp)
        for (v, job), (backend_name, recipe_name) in ((j, p) for j in jobs for p in plan):
            key = (*_artifact_key(tgt, backend_name, recipe_name, ctx, gs), v.adapter and v.adapter.sha256, v.tag)
            if key in ref.built:
                status(f"{backend_name}: reusing {recipe_name} built for target {ref.built[key]['target']}")
                art = job.adopt(ref.built[key], tmp)
            else:
                backend = get_backend(backend_name)
                art = job.finish(backend.export(job, recipe_name, tmp))
                if isinstance(art, NotBuilt):  # its stages are reported; no file stands in for it
                    not_built.append(art)
                    continue
                if art.status is not Verdict.FAILED:
                    defaults = {s: g for s, g in backend.gated_stages(recipe_name).items() if g is not None}
                    new.append((key, job.record(art, recipe_name, defaults)))
            if v.adapter is not None:
                art.facts["adapter"] = v.adapter.name
            if v.draft is not None:
                art.facts.update(role="draft", model_shape=v.draft.shape)
            artifacts.append(art)

        load_entries(artifacts)
        speculative = None
        if any(v.draft is not None for v in variants):
            from edgeslm.speculative import pair_section

            status("speculative decoding: draft + target in their runtimes, k = 2, 4, 6")
            speculative = pair_section(tmp, artifacts, next(v.draft for v in variants if v.draft), ref, tgt, ctx,
                                       status)
            from edgeslm.speculative import validation_checks

            for pair in speculative["pairs"]:
                if pair["measured"]:
                    job.validate("speculative", pair["target"], validation_checks(pair))
                else:  # reported as not run, never as passed
                    job.not_run("speculative", pair["target"], pair["reason"],
                                get_backend(pair["backend"]).runs_on)
            artifacts = [job.finish(a) for a in artifacts]
        status("golden vectors for apps")
        app = app_section(ckpt, tmp, [a.to_json() for a in artifacts], status)
        status("writing bundle")
        doc = parity_document(source.model_id, tgt.name, checks, job.validations)
        reports = write_parity(tmp, doc)
        manifest = Manifest(
            schema_version=SCHEMA_VERSION,
            status=release([Verdict(doc["status"])]),  # parity's verdict; latency's budgets join it below
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            target=ManifestTarget(tgt.name, tgt.description, tgt.device),
            model={
                "id": source.model_id, "source": source.kind, "revision": source.revision, "commit": source.commit,
                "architecture": ckpt.config.model_type, "family": family.name,
                "parameters": ckpt.parameters,
                "checkpoint_bytes": ckpt.checkpoint_bytes,
                "shape": shape,
            },
            artifacts=artifacts,
            not_built=not_built,
            adapters=[{**v.adapter.record(), "artifacts": [a.name for a in artifacts
                                                           if a.facts.get("adapter") == v.adapter.name]}
                      for v in variants if v.adapter is not None] or None,
            tokenizer={"kind": "huggingface-tokenizers", "files": tokenizer_files},
            special_tokens={
                "bos_id": ckpt.special.bos_id, "bos": ckpt.special.bos,
                "eos_ids": list(ckpt.special.eos_ids), "eos": ckpt.special.eos, "pad_id": ckpt.special.pad_id,
            },
            chat_template=_chat_template(ckpt),
            generation=app["generation"],
            context_length=ctx,
            context_length_from=ctx_from or {"source": "target"},
            provenance=versions(),
            reports=[file_entry(tmp, r) for r in reports],
            app=app,
            speculative=speculative or None,
        )
        status("latency: " + ("measuring here, " if bench else "") + "predicting on the target device")
        if bench:  # the bench's runtimes load the bundle as an app does, manifest.json included
            manifest.write(tmp)
        t = time.perf_counter()
        latency = latency_for_export(tmp, out.name, tgt, status, bench=bench, manifest=manifest)
        timings["latency_s"] = time.perf_counter() - t
        manifest.reports += [file_entry(tmp, r) for r in write_latency(tmp, latency)]
        manifest.status = release([manifest.status, latency.status])
        manifest.write(tmp)
    for key, built in new:
        ref.built[key] = dict(built, folder=out)
    timings["total_s"] = time.perf_counter() - t0 + ref.seconds
    return ExportResult(out, ships(manifest.status), artifacts, doc, timings, latency, manifest=manifest)


def _artifact_key(tgt: Target, backend: str, recipe: str, ctx: int, group_size) -> tuple:
    """Artifacts with equal keys are byte-identical whichever target asks; a backend whose artifact depends on
    target options (ONNX execution providers, Core ML's Neural Engine form, ...) names them in
    ``build_options(target)``, so they are part of its key."""
    options = get_backend(backend).build_options(tgt)
    return backend, recipe, ctx, group_size, json.dumps(options, sort_keys=True, default=str)
