"""Typed results: what parity checks, validations and artifacts produce, with one status vocabulary, one verdict
rule and one artifact size. The JSON reports (parity.json, manifest.json artifacts, summary.json rows) are
written from these records and read back into them; tests validate them against the published schemas.

Torch-free, so reading reports (``gate``, ``report``) never imports a model stack.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Iterable

from edgeslm.gates import Thresholds, judge


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"  # could not run on this machine: never counted as passed
    INFO = "info"  # reported, not gated (end-to-end, or a gate marked informational)

    def __str__(self) -> str:
        return self.value


def verdict(statuses: Iterable[Status]) -> Status:
    """The one rule: failed if anything failed; else not_run if a gated stage could not run here; else passed.
    Informational rows never decide it."""
    s = set(statuses)
    if Status.FAILED in s:
        return Status.FAILED
    if Status.NOT_RUN in s:
        return Status.NOT_RUN
    return Status.PASSED


def ships(status: Status) -> bool:
    """Whether a bundle with this verdict passes its gates (a stage not runnable here does not stop it)."""
    return status is not Status.FAILED


@dataclass
class GateResult:
    thresholds: Thresholds | None
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> Status:
        if self.thresholds is None or self.thresholds.informational:
            return Status.INFO
        return Status.FAILED if self.failures else Status.PASSED

    def to_json(self) -> dict:
        return {"thresholds": self.thresholds.as_dict() if self.thresholds else None, "status": self.status.value,
                "passed": self.status is Status.PASSED, "failures": list(self.failures), "notes": list(self.notes)}

    @classmethod
    def from_json(cls, d: dict) -> "GateResult":
        th = d.get("thresholds")
        return cls(Thresholds(**th) if th else None, list(d.get("failures", [])), list(d.get("notes", [])))


@dataclass
class Check:
    """Two models compared on the same prompts (one parity stage of one artifact, or the model's re-authoring)."""

    stage: str
    artifact: str | None
    reference: str
    candidate: str
    prompts: int
    positions: int
    greedy_tokens: int
    metrics: dict
    per_prompt: list[dict]
    top1_by_position: list[float | None] = field(default_factory=list)
    kl_by_position: list[float] = field(default_factory=list)
    gate: GateResult = field(default_factory=lambda: GateResult(None))

    @property
    def status(self) -> Status:
        return self.gate.status

    def judge(self, thresholds: Thresholds | None) -> "Check":
        """(Re-)judge the metrics by ``thresholds`` (None: reported only)."""
        failures, notes = judge(thresholds, self.metrics, self.per_prompt)
        self.gate = GateResult(thresholds, failures, notes)
        return self

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "gate"}
        return {**d, "status": self.status.value, "gate": self.gate.to_json()}

    @classmethod
    def from_json(cls, d: dict) -> "Check":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names and k != "gate"},
                   gate=GateResult.from_json(d["gate"]))


@dataclass
class Validation:
    """A stage made of named facts (e.g. a package's structure read back), or a stage that could not run here."""

    artifact: str
    stage: str
    status: Status
    checks: list[dict] = field(default_factory=list)  # {check, expected, found, passed}
    reason: str | None = None
    runs_on: str | None = None

    @classmethod
    def of_facts(cls, artifact: str, stage: str, checks: list[dict]) -> "Validation":
        ok = all(c["passed"] for c in checks)
        return cls(artifact, stage, Status.PASSED if ok else Status.FAILED, checks)

    @classmethod
    def not_run(cls, artifact: str, stage: str, reason: str, runs_on: str) -> "Validation":
        return cls(artifact, stage, Status.NOT_RUN, reason=reason, runs_on=runs_on)

    def to_json(self) -> dict:
        d = {"artifact": self.artifact, "stage": self.stage, "status": self.status.value}
        if self.status is Status.NOT_RUN:
            return {**d, "reason": self.reason, "runs_on": self.runs_on}
        return {**d, "checks": self.checks}

    @classmethod
    def from_json(cls, d: dict) -> "Validation":
        return cls(d["artifact"], d["stage"], Status(d["status"]), d.get("checks", []), d.get("reason"),
                   d.get("runs_on"))

    def message(self) -> str:
        if self.reason:
            return self.reason
        return "; ".join(f"{c['check']}: expected {c['expected']}, found {c['found']}" for c in self.checks
                         if not c["passed"])


def artifact_verdict(artifact: str, checks: list[Check], validations: list[Validation]) -> Status:
    return verdict([c.status for c in checks if c.artifact == artifact]
                   + [v.status for v in validations if v.artifact == artifact])


# The manifest's per-artifact parity word (schema 1.0 values).
PARITY_WORD = {Status.PASSED: "passed", Status.FAILED: "failed", Status.NOT_RUN: "runtime_not_run"}


def artifact_size(entry: dict) -> int:
    """The one artifact size: bytes of every file the artifact consists of (what an app ships)."""
    return entry["bytes"] + sum(f["bytes"] for f in entry.get("files", []))


def artifact_name(entry: dict) -> str:
    """An artifact's name in its bundle: its package folder for Core ML, else its (main) file."""
    return entry.get("package", entry["file"])


@dataclass
class Artifact:
    """One artifact of a bundle as the manifest lists it. Backends fill in what they built and their own facts
    (``facts``: runner metadata, I/O, execution providers...); the pipeline sets the verdict and the per-stage
    summary from the checks, the same way for every backend."""

    file: str  # the main file (for Core ML, the package's model spec)
    bytes: int
    sha256: str
    backend: str
    runtime: str
    recipe: str
    quantization: list[str]
    files: list[dict] = field(default_factory=list)  # the artifact's other files: {file, bytes, sha256}
    package: str | None = None  # Core ML: the .mlpackage folder an app loads
    status: Status = Status.NOT_RUN  # set by the pipeline (artifact_verdict)
    validation: dict = field(default_factory=dict)  # stage → passed / failed / informational / not run (reason)
    facts: dict = field(default_factory=dict)
    reused_from_target: str | None = None

    @property
    def name(self) -> str:
        return self.package or self.file

    @property
    def size(self) -> int:
        return self.bytes + sum(f["bytes"] for f in self.files)

    def to_json(self) -> dict:
        d = {"file": self.file, "bytes": self.bytes, "sha256": self.sha256}
        if self.package:
            d["package"] = self.package
        if self.files:
            d["files"] = self.files
        d.update(backend=self.backend, runtime=self.runtime, recipe=self.recipe, quantization=self.quantization,
                 parity=PARITY_WORD[self.status], size_bytes=self.size, validation=self.validation, **self.facts)
        if self.reused_from_target:
            d["reused_from_target"] = self.reused_from_target
        return d


@dataclass
class NotBuilt:
    """An artifact whose stages ran as far as this machine allows but whose file cannot be built here (a QNN
    .pte needs Qualcomm's SDK): the manifest lists it under ``not_built`` with the reason and the command that
    builds it, its stages are in the parity report, and nothing in the bundle pretends to be it."""

    name: str
    backend: str
    recipe: str
    reason: str
    how: str  # what builds it (where the missing tool is)
    quantization: list[str]
    status: Status = Status.NOT_RUN
    validation: dict = field(default_factory=dict)
    facts: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"name": self.name, "backend": self.backend, "recipe": self.recipe, "reason": self.reason,
                "how": self.how, "quantization": self.quantization, "parity": PARITY_WORD[self.status],
                "validation": self.validation, **self.facts}
