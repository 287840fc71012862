"""``--recipe auto``: per backend, the smallest recipe whose gated stages pass on this model.

The backend names the recipes worth trying (``Backend.search``); they are ordered by the bytes each would store
for this model (every rule's bits per weight over the modules it matches, read from the decoder's meta shapes,
no weights). Candidates are built in that order from the export's shared reference observations (the
transformers reference and the fp32 decoder run once, whatever the number of candidates). A candidate stops at
its first failing gated stage: a failed quantization stage skips lowering and the runtime, which is most of an
export's cost, so a search costs one full export plus the quantization of each smaller candidate that fails.
The first candidate that passes is kept; when none does, the largest (the last tried) is built whole and fails
its gates as any recipe would.

Every candidate tried is recorded with its predicted bytes, its stage metrics and why it lost, in the
artifact's manifest facts (``search``) and in parity.json / parity.md; the artifact carries the chosen recipe's
name and rules, so the same result replays with ``--recipe NAME``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from edgeslm.backends.base import CandidateFailed, ExportJob
from edgeslm.backends.protocol import Backend
from edgeslm.errors import InputError
from edgeslm.model.build import meta_decoder
from edgeslm.quant.recipes import Recipe, get_recipe, plan
from edgeslm.records import Artifact, Status

AUTO = "auto"
METRICS = ("top1_agreement", "kl_mean", "logit_sqnr_db", "ppl_rise")


def predicted_bytes(meta, recipe: Recipe) -> int:
    """Bytes ``recipe`` would store for the (meta) decoder: quantized modules at their rule's bits per weight,
    everything else in fp32. For ordering candidates: runtime containers and tied tables aside."""
    chosen = plan(meta, recipe)
    total = 0.0
    for name, p in meta.named_parameters():
        rule = chosen.get(name.rpartition(".")[0])
        bits = rule.bits_per_weight if rule is not None and name.endswith("weight") else 32
        total += p.numel() * bits / 8
    return int(total)


def ladder(backend: Backend, job: ExportJob) -> list[tuple[str, int]]:
    """(recipe, predicted bytes) of the backend's search recipes, smallest first (ties keep the backend's order)."""
    if not backend.search:
        raise InputError(f"the {backend.name} backend has no recipe search",
                         f"pass --recipe {backend.name}=RECIPE (it supports {', '.join(backend.recipes)})")
    meta = meta_decoder(job.ckpt, job.context_length)
    sized = [(r, predicted_bytes(meta, get_recipe(r, job.group_size))) for r in backend.search]
    return sorted(sized, key=lambda rb: rb[1])


def _stages(job: ExportJob, first_check: int, first_validation: int) -> dict:
    """Each gated stage a candidate reached: its status, headline metrics and failed bounds."""
    out = {}
    for c in job.checks[first_check:]:
        if c.stage == "end_to_end":
            continue
        out[c.stage] = {"status": c.status.value, **{k: c.metrics.get(k) for k in METRICS if k in c.metrics},
                        "failures": list(c.gate.failures)}
    for v in job.validations[first_validation:]:
        out[v.stage] = {"status": v.status.value}
    return out


def _discard(tmp: Path, before: set[str]) -> None:
    """Remove what a losing candidate wrote into the bundle folder."""
    for p in tmp.iterdir():
        if p.name not in before:
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


def search(backend: Backend, job: ExportJob, tmp: Path) -> Artifact:
    """Build the backend's smallest passing recipe into ``tmp`` (see the module docstring); the artifact's facts
    hold the search record."""
    t0 = time.perf_counter()
    steps = ladder(backend, job)
    tried: list[dict] = []
    for i, (recipe, predicted) in enumerate(steps):
        last = i + 1 == len(steps)
        job.status(f"{backend.name}: recipe search, candidate {i + 1}/{len(steps)}: {recipe} "
                   f"(~{predicted / 1e6:.0f} MB)")
        marks, before = (len(job.checks), len(job.validations)), {p.name for p in tmp.iterdir()}
        job.searching = not last
        art, stopped = None, None
        try:
            art = job.finish(backend.export(job, recipe, tmp))
        except CandidateFailed as e:
            stopped = e.stage
        finally:
            job.searching = False
        entry = {"recipe": recipe, "rules": [r.describe() for r in get_recipe(recipe, job.group_size).rules],
                 "predicted_bytes": predicted, "bytes": art.size if art is not None else None,
                 "stages": _stages(job, *marks)}
        passed = art is not None and art.status is not Status.FAILED
        entry["outcome"] = ("chosen: the smallest candidate whose gated stages pass" if passed
                            else f"failed its {stopped} stage; later stages not run" if stopped
                            else "chosen as the largest candidate; it fails its gates" if last
                            else "failed its gates")
        tried.append(entry)
        if art is not None and (passed or last):
            art.facts["search"] = {"chosen": recipe, "candidates": tried,
                                   "seconds": round(time.perf_counter() - t0, 1)}
            return art
        del job.checks[marks[0]:], job.validations[marks[1]:]
        _discard(tmp, before)
    raise AssertionError("unreachable: the last candidate is built whole")
