"""What the pipeline hands each backend: the checkpoint, the shared reference observations, and the gates.

Loading, the transformers reference and the fp32 decoder's observations are computed once per export and
shared by every backend, so adding a backend adds only its own lowering and runtime work.
"""

from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgeslm.bundle.manifest import artifact_name
from edgeslm.model.checkpoint import Checkpoint
from edgeslm.parity.stages import Observations, compare
from edgeslm.target import Target


@dataclass
class ExportJob:
    ckpt: Checkpoint
    target: Target
    context_length: int
    prompts: list[str]
    prompt_ids: list[list[int]]
    obs_ref: Observations  # transformers fp32
    obs_fp32: Observations  # edgeslm fp32 eager decoder
    group_size: int | None = None
    status: Callable[[str], None] = lambda msg: None
    checks: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    validations: list[dict] = field(default_factory=list)  # checks that are not metric comparisons

    def check(self, stage: str, recipe: str, reference: str, candidate: str, ref: Observations,
              cand: Observations, artifact: str | None, gated: bool = True) -> dict:
        thresholds = self.target.thresholds(recipe, stage) if gated else None
        c = dict(compare(stage, reference, candidate, ref, cand, self.prompts, thresholds), artifact=artifact)
        self.checks.append(c)
        return c

    def validate(self, stage: str, artifact: str, checks: list[dict]) -> dict:
        """Record a pass/fail stage made of named facts (e.g. a package's structure read back from disk)."""
        v = {"artifact": artifact, "stage": stage, "status": "passed" if all(c["passed"] for c in checks)
             else "failed", "checks": checks}
        self.validations.append(v)
        return v

    def not_run(self, stage: str, artifact: str, reason: str, runs_on: str) -> dict:
        """Record a stage that could not run on this machine: reported as such, never as passed."""
        v = {"artifact": artifact, "stage": stage, "status": "not_run", "reason": reason, "runs_on": runs_on}
        self.validations.append(v)
        return v

    def artifact_parity(self, artifact: str) -> str:
        """passed / failed / runtime_not_run (every stage that ran passed, but the runtime stage did not run)."""
        gated = [c for c in self.checks if c["artifact"] == artifact and c["gate"]["thresholds"] is not None]
        vals = [v for v in self.validations if v["artifact"] == artifact]
        if not all(c["gate"]["passed"] for c in gated) or any(v["status"] == "failed" for v in vals):
            return "failed"
        return "runtime_not_run" if any(v["status"] == "not_run" for v in vals) else "passed"

    def validation_summary(self, artifact: str) -> dict:
        """Each stage of one artifact → passed / failed / not run (reason)."""
        out = {}
        for c in self.checks:
            if c["artifact"] == artifact and c["stage"] != "end_to_end":
                gated = c["gate"]["thresholds"] is not None
                out[c["stage"]] = ("passed" if c["gate"]["passed"] else "failed") if gated else "measured, no gate"
        for v in self.validations:
            if v["artifact"] == artifact:
                out[v["stage"]] = v["status"] if v["status"] != "not_run" else f"not run: {v['reason']}"
        return out

    def adopt(self, built: dict, tmp: Path) -> dict:
        """Reuse an artifact already built for another target of the same export (same backend, recipe, context
        and options): copy its files and take over its measurements, re-judged by this target's gates."""
        entry = copy.deepcopy(built["entry"])
        name = artifact_name(entry)
        for f in [entry, *entry.get("files", [])]:
            (tmp / f["file"]).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built["folder"] / f["file"], tmp / f["file"])
        for c in built["checks"]:
            c = copy.deepcopy(c)
            th = self.target.thresholds(c["recipe"], c["stage"]) if c["stage"] != "end_to_end" else None
            failures = th.failures(c["metrics"]) if th else []
            c["gate"] = {"thresholds": asdict(th) if th else None, "passed": not failures, "failures": failures}
            del c["recipe"]
            self.checks.append(c)
        self.validations += copy.deepcopy(built["validations"])
        entry["parity"] = self.artifact_parity(name)
        if "validation" in entry:
            entry["validation"] = self.validation_summary(name)
        entry["reused_from_target"] = built["target"]
        return entry

    def record(self, entry: dict, recipe: str) -> dict:
        """What :meth:`adopt` needs to reuse this artifact for another target (folder filled in once written)."""
        name = artifact_name(entry)
        return {"entry": entry, "target": self.target.name,
                "checks": [dict(c, recipe=recipe) for c in self.checks if c["artifact"] == name],
                "validations": [v for v in self.validations if v["artifact"] == name]}
