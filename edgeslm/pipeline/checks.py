"""Everything about a request checked before the model's weights are read, each refusal one InputError: the
plans, gates and devices of the targets and their output folders (:func:`check_request`, before the checkpoint
is opened), then what needs the checkpoint's config and tokenizer (:func:`context_lengths`,
:func:`check_model_fits`) and the memory forecast (:func:`check_memory`)."""

from __future__ import annotations

from dataclasses import astuple
from pathlib import Path

from edgeslm import preflight
from edgeslm.backends import get_backend, not_built_here
from edgeslm.backends.protocol import LoweringCost
from edgeslm.bundle.files import check_output
from edgeslm.errors import InputError
from edgeslm.model.build import meta_decoder
from edgeslm.model.checkpoint import Checkpoint
from edgeslm.parity.stages import GREEDY_TOKENS, default_prompts
from edgeslm.pipeline.plan import Recipes, Status, candidates, plan_target
from edgeslm.progress import Note, Plan
from edgeslm.quant.recipes import get_recipe
from edgeslm.quant.recipes import plan as plan_recipe
from edgeslm.target import Target, check_gate_coverage, check_target_device


def check_request(tgts: list[tuple[Target, Path]], backends, recipe: Recipes, group_size: int | None,
                  force: bool, status: Status = lambda msg: None,
                  extra_outputs: tuple[tuple[Path, str], ...] = ()) -> list[list[tuple[str, str]]]:
    """Everything about a request that can be checked before the checkpoint is read (its plain values were
    checked by ``ExportRequest``): each target's plan, gates and device, and the output folders (writable,
    replaceable, not colliding). ``extra_outputs``: other folders the run will write, as (path, what).
    Returns the plans."""
    plans = [plan_target(t, backends, recipe, group_size, status) for t, _ in tgts]
    for (t, _), plan in zip(tgts, plans):
        check_gate_coverage(t, candidates(plan))  # an ungated stage would pass silently: refuse it before work
        check_target_device(t)
        check_something_built(t, plan)
    check_outputs(tgts, force, extra_outputs)
    return plans


def check_outputs(tgts: list[tuple[Target, Path]], force: bool, extra_outputs: tuple[tuple[Path, str], ...] = ()) \
        -> None:
    """Each output folder writable and replaceable (``force``), and no two the same or one inside another."""
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
            status(Note(f"target {t.name}: context length {t.context_length} is above the model's "
                   f"max_position_embeddings ({limit}); using {limit}"))
            out.append((limit, {"source": "model", "target": t.context_length, "max_position_embeddings": limit}))
        else:
            out.append((t.context_length, {"source": "target"}))
    return out


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
        for _, recipe_name in candidates(plan):
            plan_recipe(meta, get_recipe(recipe_name, tgt.group_size if group_size is None else group_size))


def check_memory(ckpt: Checkpoint, tgts: list, plans, memory_check: bool, status: Status) -> preflight.Forecast:
    """Predict peak memory and time from the checkpoint's shape; refuse before any heavy work when this machine's
    memory cannot hold the export (unless ``memory_check`` is off). A backend that two targets or two recipes
    send down different paths is forecast by the costlier one."""
    cfg = ckpt.config
    artifacts = sorted({pair for plan in plans for pair in plan})
    costs: dict = {}
    for tgt, plan in zip(tgts, plans):
        for b, recipe in candidates(plan):
            c = get_backend(b).lowering_cost(tgt, recipe)
            costs[b] = c if b not in costs else LoweringCost(*map(max, zip(astuple(costs[b]), astuple(c))))
    fc = preflight.forecast(ckpt.parameters, cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers,
                            bool(getattr(cfg, "tie_word_embeddings", False)), [b for b, _ in artifacts],
                            preflight.env_available(), costs)
    status(Plan(fc.describe(), fc.seconds))
    if memory_check and not fc.fits:
        need = fc.peak_bytes / preflight.GiB
        raise InputError(
            f"this export needs about {need:.1f} GiB of memory at its peak (fp32 model "
            f"{fc.fp32_bytes / preflight.GiB:.1f} GiB) but this machine has {fc.available_bytes / preflight.GiB:.1f} "
            "GiB available",
            f"free memory or use a machine with at least {need:.0f} GiB; pass --no-memory-check to try anyway")
    return fc
