"""What every target of one export shares, computed once: the checkpoint (checked, with its adapters and draft
model, before the weights are read), the transformers reference and the edgeslm fp32 decoder's observations, and
one :class:`Variant` per model an artifact is built from (the base, each LoRA adapter merged, a draft)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from edgeslm.errors import InputError
from edgeslm.latency.rss import PeakRss
from edgeslm.memory import release_memory
from edgeslm.model.adapter import adapted, load_adapter, peft_reference
from edgeslm.model.build import build_decoder
from edgeslm.model.checkpoint import Checkpoint, SharedWeights, load_checkpoint
from edgeslm.model.families import family_for
from edgeslm.model.source import resolve
from edgeslm.parity.models import EagerDecoder, HFModel
from edgeslm.parity.stages import default_prompts, heldout_chunks, observe
from edgeslm.pipeline.checks import check_model_fits
from edgeslm.pipeline.plan import Status
from edgeslm.preflight import Forecast
from edgeslm.progress import Stage, counter
from edgeslm.speculative import check_tokenizers
from edgeslm.target import Target


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
    forecast: Forecast | None = None  # the run's forecast (edgeslm/preflight.py): stages' shares, export_cost
    rss: PeakRss | None = None  # the run's peak RSS probe, started before the checkpoint was read

    def models(self) -> list[Variant]:
        """The variants artifacts are built from: ``variants``, or the base model alone."""
        return self.variants or [Variant("", self.ckpt, self.obs_ref, self.obs_fp32)]


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


def load_adapters(specs: tuple[str, ...], ckpt: Checkpoint) -> list:
    """Each ``--adapter`` checked against the base (headers only), with names unique in the bundle."""
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


def load_draft(draft: str, ckpt: Checkpoint, tgts: list[Target], plans, ctxs, group_size, prompts, adapters,
               status: Status = lambda msg: None) -> tuple[object, Checkpoint] | None:
    """The draft model, checked before any heavy work: its tokenizer must be the target's (first difference
    named), and it must fit every target's plan like the target does."""
    if draft is None:
        return None
    if adapters:
        raise InputError("--draft and --adapter together are not supported", "export the pair and the adapters "
                         "in separate runs")
    status(f"resolving draft model {draft}")
    loaded = load(draft, None)
    d = loaded[1]
    check_tokenizers(ckpt.tokenizer, d.tokenizer, ckpt.config.vocab_size, d.config.vocab_size, ckpt.special,
                     d.special)
    check_model_fits(d, tgts, plans, ctxs, group_size, prompts)
    return loaded


def prepare(model: str, revision: str | None, prompts: list[str] | None, context_length: int,
            status: Status = lambda msg: None, loaded: tuple[object, Checkpoint] | None = None,
            min_context: int | None = None, forecast_s: float | None = None) -> Reference:
    """The shared reference: transformers fp32 and edgeslm fp32 observations, with the decoder built for the
    longest ``context_length`` and held-out chunks that fit the shortest (``min_context``). ``forecast_s``: the
    export forecast's share of this stage (for the progress display)."""
    source, ckpt = loaded or load(model, revision, status)
    family = family_for(ckpt.config)
    prompts = prompts or default_prompts()
    prompt_ids = [ckpt.tokenizer(p).input_ids for p in prompts]
    heldout = heldout_chunks(ckpt.tokenizer, min_context or context_length)
    status(Stage("running the transformers reference", forecast_s))
    t = time.perf_counter()
    filled: dict = {}
    ref = ckpt.reference_model(filled)
    obs_ref = observe(HFModel(ref), prompt_ids, heldout, on_step=counter(status, "prompts (transformers)"))
    # the fp32 decoder shares the reference's fp32 tensors (one fp32 model in memory, not two in turn)
    fp32 = build_decoder(ckpt, context_length, untie=False, weights=SharedWeights(ckpt.weights, filled))
    del ref, filled
    release_memory()  # what the transformers passes left (activations, caches) must not add to the next peak
    obs_fp32 = observe(EagerDecoder(fp32), prompt_ids, heldout, path=obs_ref.greedy,
                       on_step=counter(status, "prompts (edgeslm fp32)"))
    shape = _shape(fp32.spec)
    del fp32
    release_memory()
    return Reference(source, ckpt, family, prompts, prompt_ids, obs_ref, obs_fp32, shape, time.perf_counter() - t,
                     heldout_ids=heldout)


def _shape(spec) -> dict:
    """The decoder's dimensions, as the latency model needs them (bytes and FLOPs per token)."""
    keys = ("vocab_size", "hidden_size", "num_layers", "num_heads", "num_kv_heads", "head_dim", "intermediate_size")
    return {k: getattr(spec, k) for k in keys}


def prepare_adapters(ref: Reference, adapters: list, context_length: int, status: Status = lambda msg: None) \
        -> None:
    """One variant per adapter: the PEFT reference (base + adapter, unmerged) and the edgeslm decoder built from
    the merged weights, observed on the same prompts (the adapter stage compares them)."""
    for a in adapters:
        status(f"adapter {a.name}: transformers + PEFT reference, edgeslm merged decoder")
        model = peft_reference(ref.ckpt, a)
        obs_ref = observe(HFModel(model), ref.prompt_ids, ref.heldout_ids)
        del model
        release_memory()
        ckpt = adapted(ref.ckpt, a)
        fp32 = build_decoder(ckpt, context_length, untie=False)
        obs_fp32 = observe(EagerDecoder(fp32), ref.prompt_ids, ref.heldout_ids, path=obs_ref.greedy)
        del fp32
        release_memory()
        ref.variants.append(Variant(f"-{a.name}" if len(adapters) > 1 else "", ckpt, obs_ref, obs_fp32, a))


def prepare_draft(ref: Reference, draft: str, loaded: tuple[object, Checkpoint], prompts: list[str] | None,
                  ctxs: list[int], status: Status = lambda msg: None) -> None:
    """The draft model's own reference, and the two variants of a speculative pair: the base and the draft."""
    status("draft model: transformers reference and edgeslm fp32 decoder")
    dref = prepare(draft, None, prompts, max(ctxs), status, loaded, min(ctxs))
    ref.variants = [Variant("", ref.ckpt, ref.obs_ref, ref.obs_fp32),
                    Variant("-draft", dref.ckpt, dref.obs_ref, dref.obs_fp32, draft=dref)]
