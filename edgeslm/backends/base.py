"""What the pipeline hands each backend: the checkpoint, the shared reference observations, and the gates.

Loading, the transformers reference and the fp32 decoder's observations are computed once per export and
shared by every backend, so adding a backend adds only its own lowering and runtime work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

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

    def check(self, stage: str, recipe: str, reference: str, candidate: str, ref: Observations,
              cand: Observations, artifact: str | None, gated: bool = True) -> dict:
        thresholds = self.target.thresholds(recipe, stage) if gated else None
        c = dict(compare(stage, reference, candidate, ref, cand, self.prompts, thresholds), artifact=artifact)
        self.checks.append(c)
        return c

    def artifact_parity(self, artifact: str) -> str:
        gated = [c for c in self.checks if c["artifact"] == artifact and c["gate"]["thresholds"] is not None]
        return "passed" if all(c["gate"]["passed"] for c in gated) else "failed"
