"""What the pipeline hands each backend: the checkpoint, the shared reference observations, and the gates.

Loading, the transformers reference and the fp32 decoder's observations are computed once per export and
shared by every backend, so adding a backend adds only its own lowering and runtime work. Results are typed
records (edgeslm/records.py): one status vocabulary, one verdict rule.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgeslm.gates import Thresholds
from edgeslm.model.checkpoint import Checkpoint
from edgeslm.parity.stages import Observations, compare, compare_greedy, observe, observe_free
from edgeslm.progress import Count, Stage, counter
from edgeslm.records import Artifact, Check, Status, Validation, artifact_verdict, stage_summary
if TYPE_CHECKING:  # annotations only: the pipeline builds jobs and targets; backends import neither
    from edgeslm.pipeline.reference import Reference, Variant
    from edgeslm.preflight import Forecast
    from edgeslm.target import Target


class CandidateFailed(Exception):
    """Raised by a searching job (``--recipe auto``) at a candidate's first failing gated stage: the rest of that
    candidate's work (lowering, runtime parity) would not change the outcome."""

    def __init__(self, stage: str, artifact: str | None):
        super().__init__(f"{artifact}: {stage} failed")
        self.stage, self.artifact = stage, artifact


@dataclass
class JobRecords:
    """What one target's jobs add to together (one object, shared by every job of the target): metric checks,
    stages that are not metric comparisons (validations), and timings."""

    checks: list[Check] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)
    timings: dict = field(default_factory=dict)


@dataclass(kw_only=True)
class ExportJob:
    """One model variant built for one target: what every backend reads (checkpoint, target, context length,
    prompts and the shared reference observations, gates) and the target's records it adds to."""

    ckpt: Checkpoint
    target: Target
    context_length: int
    prompts: list[str]
    prompt_ids: list[list[int]]
    obs_ref: Observations  # transformers fp32
    obs_fp32: Observations  # edgeslm fp32 eager decoder
    heldout_ids: list[list[int]] = field(default_factory=list)  # held-out text chunks (perplexity)
    group_size: int | None = None
    status: Callable[[str], None] = lambda msg: None
    records: JobRecords = field(default_factory=JobRecords)  # shared by the target's jobs
    tag: str = ""  # artifact name suffix: "-NAME" for each LoRA adapter when a bundle holds several
    role: str = "model"  # "draft": a speculative-decoding draft (a backend may place it beside its target)
    searching: bool = False  # a --recipe auto candidate: stop at its first failing gated stage
    forecast: Forecast | None = None  # the export's forecast: each stage's share of it (progress display)

    @classmethod
    def for_variant(cls, reference: Reference, variant: Variant, target: Target, context_length: int,
                    group_size: int | None, status: Callable[[str], None], records: JobRecords) -> ExportJob:
        """The job for one variant (base, adapter or draft) of the export's shared reference."""
        return cls(ckpt=variant.ckpt, target=target, context_length=context_length, prompts=reference.prompts,
                   prompt_ids=reference.prompt_ids, obs_ref=variant.obs_ref, obs_fp32=variant.obs_fp32,
                   heldout_ids=reference.heldout_ids, group_size=group_size, status=status, records=records,
                   tag=variant.tag, role="draft" if variant.draft is not None else "model",
                   forecast=reference.forecast)

    @property
    def checks(self) -> list[Check]:
        return self.records.checks

    @property
    def validations(self) -> list[Validation]:  # stages that are not metric comparisons
        return self.records.validations

    @property
    def timings(self) -> dict:
        return self.records.timings

    def stage(self, text: str, work: str | None = None) -> None:
        """A stage begins (the status message), with the forecast's share of it: ``work`` is ``"pass"`` (one
        parity pass over the prompts) or a backend's name (lowering with it); None: not forecast."""
        fc = self.forecast
        share = None if fc is None or work is None else fc.pass_s if work == "pass" else fc.lowering_s.get(work)
        self.status(Stage(text, share))

    def counter(self, unit: str) -> Count:
        """``count(done, total)`` for the current stage's countable work (modules quantized, ...)."""
        return counter(self.status, unit)

    def observe(self, model, heldout: bool = True) -> Observations:
        """What ``model`` says on this export's prompts and (``heldout``) held-out text, teacher-forced along the
        transformers reference's greedy path (exact greedy prefixes at one forward per prompt; see
        parity/stages.py)."""
        return observe(model, self.prompt_ids, self.heldout_ids if heldout else (), path=self.obs_ref.greedy,
                       on_step=self.counter("prompts"))

    def observe_free(self, model) -> Observations:
        """``model``'s own free-running greedy tokens (to compare a runtime's generator with the same graph)."""
        return observe_free(model, self.prompt_ids, max(map(len, self.obs_ref.greedy)),
                            on_step=self.counter("prompts"))

    def gate(self, recipe: str, stage: str, default: Thresholds | None = None) -> Thresholds | None:
        return self.target.thresholds(recipe, stage) or default

    def check(self, stage: str, recipe: str, reference: str, candidate: str, ref: Observations,
              cand: Observations, artifact: str | None, gated: bool = True,
              default: Thresholds | None = None) -> Check:
        c = compare(stage, reference, candidate, ref, cand, self.prompts,
                    self.gate(recipe, stage, default) if gated else None, artifact)
        return self._add(c)

    def _add(self, c: Check) -> Check:
        self.checks.append(c)
        if self.searching and c.status is Status.FAILED:
            raise CandidateFailed(c.stage, c.artifact)
        return c

    def check_greedy(self, stage: str, recipe: str, reference: str, candidate: str, ref: Observations,
                     cand_greedy: list[list[int]], artifact: str, default: Thresholds | None = None) -> Check:
        """A runtime that gives greedy tokens only (stopping at eos), against ``ref`` (near-tie divergences
        accepted)."""
        c = compare_greedy(stage, reference, candidate, ref, cand_greedy, self.prompts,
                           self.gate(recipe, stage, default), artifact, tuple(self.ckpt.special.eos_ids))
        return self._add(c)

    def validate(self, stage: str, artifact: str, checks: list[dict]) -> Validation:
        """Record a pass/fail stage made of named facts (e.g. a package's structure read back from disk)."""
        v = Validation.of_facts(artifact, stage, checks)
        self.validations.append(v)
        if self.searching and v.status is Status.FAILED:
            raise CandidateFailed(stage, artifact)
        return v

    def not_run(self, stage: str, artifact: str, reason: str, runs_on: str) -> Validation:
        """Record a stage that could not run on this machine: reported as such, never as passed."""
        v = Validation.not_run(artifact, stage, reason, runs_on)
        self.validations.append(v)
        return v

    def validation_summary(self, artifact: str) -> dict:
        """Each stage of one artifact → passed / failed / informational / not run (reason)."""
        return stage_summary(artifact, self.checks, self.validations)

    def finish(self, art: Artifact) -> Artifact:
        """Set the artifact's verdict and per-stage summary from this job's records (one rule, every backend)."""
        art.status = artifact_verdict(art.name, self.checks, self.validations)
        art.validation = self.validation_summary(art.name)
        return art

    def adopt(self, built: dict, tmp: Path) -> Artifact:
        """Reuse an artifact already built for another target of the same export (same backend, recipe, context
        and options): copy its files and take over its measurements, re-judged by this target's gates."""
        art: Artifact = copy.deepcopy(built["artifact"])
        for f in [art.file, *(f["file"] for f in art.files)]:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built["folder"] / f, tmp / f)
        for recipe, default, c in built["checks"]:
            c = copy.deepcopy(c)
            self.checks.append(c.judge(self.gate(recipe, c.stage, default) if c.stage != "end_to_end" else None))
        self.validations.extend(copy.deepcopy(built["validations"]))
        art.reused_from_target = built["target"]
        return self.finish(art)

    def record(self, art: Artifact, recipe: str, defaults: dict | None = None) -> dict:
        """What :meth:`adopt` needs to reuse this artifact for another target (folder filled in once written)."""
        defaults = defaults or {}
        return {"artifact": art, "target": self.target.name,
                "checks": [(recipe, defaults.get(c.stage), c) for c in self.checks if c.artifact == art.name],
                "validations": [v for v in self.validations if v.artifact == art.name]}
