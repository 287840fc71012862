"""Typed results: what parity checks, validations and artifacts produce, with one status vocabulary, one verdict
rule and one artifact size. The JSON reports (parity.json, manifest.json artifacts, summary.json rows) are
written from these records and read back into them; tests validate them against the published schemas.

Torch-free, so reading reports (``gate``, ``report``) never imports a model stack.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Iterable

from edgeslm.gates import Thresholds, judge


class Status(str, Enum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_RUN = "not_run"  # could not run on this machine: never counted as passed
    INFO = "info"  # reported, not gated (end-to-end, or a gate marked informational)

    def __str__(self) -> str:
        return self.value

    def describe(self, reason: str | None = None) -> str:
        """The per-stage summary word (a manifest artifact's ``validation``): the one place a status gets words."""
        if self is Status.INFO:
            return "informational, not gated"
        if self is Status.NOT_RUN and reason is not None:
            return f"not run: {reason}"
        return self.value

    @classmethod
    def of_description(cls, words: str) -> "Status":
        """The status a :meth:`describe` summary word (a manifest artifact's ``validation`` value) stands for."""
        if words == cls.INFO.describe():
            return cls.INFO
        if words.startswith(cls.NOT_RUN.value.replace("_", " ")):
            return cls.NOT_RUN
        return cls(words)

    @property
    def parity_word(self) -> str:
        """A manifest artifact's ``parity`` (schema 1.0 values: a stage that could not run is runtime_not_run)."""
        return "runtime_not_run" if self is Status.NOT_RUN else self.value

    @classmethod
    def of_parity_word(cls, word: str) -> "Status":
        return cls.NOT_RUN if word == "runtime_not_run" else cls(word)

    @classmethod
    def of(cls, passed: bool) -> "Status":
        """A yes/no fact (a budget held, a package fact matched) as a status."""
        return cls.PASSED if passed else cls.FAILED


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


def release(statuses: Iterable[Status]) -> Status:
    """A bundle's (or report's) pass/fail as the manifest states it: the one rule, :func:`verdict`, read by
    :func:`ships` (passed or failed; a stage that could not run here does not fail it)."""
    return Status.of(ships(verdict(statuses)))


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
        failures, notes = judge(thresholds, self.metrics, self.per_prompt, self.positions)
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
        return cls(artifact, stage, Status.of(all(c["passed"] for c in checks)), checks)

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


def stage_summary(artifact: str, checks: list[Check], validations: list[Validation]) -> dict:
    """Each stage of one artifact → its status in words (:meth:`Status.describe`)."""
    out = {}
    for c in checks:
        if c.artifact == artifact and c.stage != "end_to_end":
            out[c.stage] = c.status.describe()
    for v in validations:
        if v.artifact == artifact:
            out[v.stage] = v.status.describe(v.reason)
    return out


@dataclass(frozen=True)
class Caveat:
    """Why an artifact about to run here was not cleared at export: stages of it that failed their gate, a bundle
    that failed (another artifact, the model's re-authoring, a latency budget), or stages that could not run where
    it was exported. The demo apps refuse a failed bundle or artifact; ``run`` and ``bench`` warn, or refuse
    with ``--strict``."""

    artifact: str
    failed_stages: tuple[str, ...] = ()
    not_run_stages: dict = field(default_factory=dict)  # stage → why it could not run there
    bundle_failed: bool = False

    @property
    def failed(self) -> bool:
        """Whether the demo apps refuse it (a stage not run alone does not stop them)."""
        return bool(self.failed_stages) or self.bundle_failed

    def message(self) -> str:
        if self.failed_stages:
            parts = [f"failed parity at export ({', '.join(self.failed_stages)})"]
        elif self.bundle_failed:
            parts = ["is in a bundle that failed its export checks"]
        else:
            parts = []
        parts += [f"its {stage} stage was not run at export ({why})" for stage, why in self.not_run_stages.items()]
        then = "the demo apps refuse it" if self.failed else "its output in this runtime was never checked"
        see = "parity.md and latency.json" if self.bundle_failed and not self.failed_stages else "parity.md"
        return f"{self.artifact}: {'; '.join(parts)}; {then} (see {see} in the bundle)"

    def to_json(self) -> dict:
        return {"artifact": self.artifact, "failed_stages": list(self.failed_stages),
                "not_run_stages": dict(self.not_run_stages), "bundle_failed": self.bundle_failed,
                "message": self.message()}


# The manifest's per-artifact parity word (schema 1.0 values), derived from the one vocabulary.
PARITY_WORD = {s: s.parity_word for s in (Status.PASSED, Status.FAILED, Status.NOT_RUN)}


def artifact_size(entry: dict) -> int:
    """The one artifact size: bytes of every file the artifact consists of (what an app ships)."""
    return files_size(entry["bytes"], entry.get("files", []))


def files_size(main: int, files: list[dict]) -> int:
    return main + sum(f["bytes"] for f in files)


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
        return files_size(self.bytes, self.files)

    def to_json(self) -> dict:
        d = {"file": self.file, "bytes": self.bytes, "sha256": self.sha256}
        if self.package:
            d["package"] = self.package
        if self.files:
            d["files"] = self.files
        d.update(backend=self.backend, runtime=self.runtime, recipe=self.recipe, quantization=self.quantization,
                 parity=self.status.parity_word, size_bytes=self.size, validation=self.validation, **self.facts)
        if self.reused_from_target:
            d["reused_from_target"] = self.reused_from_target
        return d

    _OWN = ("file", "bytes", "sha256", "package", "files", "backend", "runtime", "recipe", "quantization", "parity",
            "size_bytes", "validation", "reused_from_target")

    @classmethod
    def from_json(cls, d: dict) -> "Artifact":
        return cls(d["file"], d["bytes"], d.get("sha256"), d["backend"], d.get("runtime"), d["recipe"],
                   d.get("quantization", []), d.get("files", []), d.get("package"),
                   Status.of_parity_word(d["parity"]), d.get("validation", {}),
                   {k: v for k, v in d.items() if k not in cls._OWN}, d.get("reused_from_target"))


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
                "how": self.how, "quantization": self.quantization, "parity": self.status.parity_word,
                "validation": self.validation, **self.facts}

    @classmethod
    def from_json(cls, d: dict) -> "NotBuilt":
        own = ("name", "backend", "recipe", "reason", "how", "quantization", "parity", "validation")
        return cls(d["name"], d["backend"], d["recipe"], d["reason"], d["how"], d.get("quantization", []),
                   Status.of_parity_word(d["parity"]), d.get("validation", {}),
                   {k: v for k, v in d.items() if k not in own})


def _omit_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class ManifestTarget:
    name: str
    description: str | None = None
    device: str | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "description": self.description, "device": self.device}

    @classmethod
    def from_json(cls, d: dict) -> "ManifestTarget":
        return cls(d["name"], d.get("description"), d.get("device"))


@dataclass
class Manifest:
    """manifest.json: a bundle's contents and its verdict (``status``: passed / failed, :func:`release`).
    Built once by the pipeline, read by latency, then written once; ``from_json`` reads any 1.x manifest.
    Sections other than the target and the artifacts stay dicts (their shapes are the published schema's)."""

    schema_version: str
    status: Status
    created: str
    target: ManifestTarget
    model: dict
    artifacts: list[Artifact]
    tokenizer: dict
    special_tokens: dict
    chat_template: dict
    generation: dict | None
    context_length: int
    provenance: dict
    reports: list[dict]
    not_built: list[NotBuilt] = field(default_factory=list)
    adapters: list[dict] | None = None
    context_length_from: dict | None = None
    app: dict | None = None
    speculative: dict | None = None
    kind: str = "edgeslm-bundle"

    def to_json(self) -> dict:
        d = {"schema_version": self.schema_version, "kind": self.kind, "status": self.status.value,
             "created": self.created, "target": self.target.to_json(), "model": self.model,
             "artifacts": [a.to_json() for a in self.artifacts],
             "not_built": [a.to_json() for a in self.not_built] or None, "adapters": self.adapters,
             "tokenizer": self.tokenizer, "special_tokens": self.special_tokens,
             "chat_template": self.chat_template, "generation": self.generation,
             "context_length": self.context_length, "context_length_from": self.context_length_from,
             "provenance": self.provenance, "reports": self.reports, "app": self.app,
             "speculative": self.speculative}
        return _omit_none(d)

    def write(self, folder) -> None:
        (folder / "manifest.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, d: dict) -> "Manifest":
        return cls(d["schema_version"], Status(d["status"]), d.get("created"), ManifestTarget.from_json(d["target"]),
                   d["model"], [Artifact.from_json(a) for a in d["artifacts"]], d["tokenizer"], d["special_tokens"],
                   d["chat_template"], d.get("generation"), d["context_length"], d["provenance"], d["reports"],
                   [NotBuilt.from_json(a) for a in d.get("not_built", [])], d.get("adapters"),
                   d.get("context_length_from"), d.get("app"), d.get("speculative"), d.get("kind", "edgeslm-bundle"))


# --- latency.json ------------------------------------------------------------------------------------------------

CONTEXT_BUDGET = "max_context_mb"  # the accelerator's own limit: its row carries the reason it is over


@dataclass
class Budget:
    """One latency budget of one artifact: the pessimistic end of the prediction against the target's limit."""

    artifact: str
    device: str | None
    budget: str
    limit: float
    predicted: float
    passed: bool
    reason: str | None = None  # written for the accelerator's own limit (max_context_mb) only

    @property
    def status(self) -> Status:
        return Status.of(self.passed)

    def message(self) -> str:
        return "" if self.passed else \
            f"predicted {self.predicted:.3g} vs limit {self.limit:.3g} on {self.device}"

    def to_json(self) -> dict:
        d = {"artifact": self.artifact, "device": self.device, "budget": self.budget, "limit": self.limit,
             "predicted": self.predicted, "passed": self.passed}
        if self.budget == CONTEXT_BUDGET:
            d["reason"] = self.reason
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Budget":
        return cls(d["artifact"], d.get("device"), d["budget"], d["limit"], d["predicted"], d["passed"],
                   d.get("reason"))


@dataclass
class Measured:
    """One artifact timed on this machine (``figures``: the bench's spreads, RSS...), or why it was not."""

    artifact: str
    backend: str
    recipe: str | None
    runtime: str | None
    measured: bool
    reason: str | None = None
    figures: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        d = {"artifact": self.artifact, "backend": self.backend, "recipe": self.recipe, "runtime": self.runtime,
             "measured": self.measured}
        return {**d, "reason": self.reason} if not self.measured else {**d, **self.figures}

    @classmethod
    def from_json(cls, d: dict) -> "Measured":
        own = ("artifact", "backend", "recipe", "runtime", "measured", "reason")
        return cls(d["artifact"], d.get("backend"), d.get("recipe"), d.get("runtime"), d["measured"], d.get("reason"),
                   {k: v for k, v in d.items() if k not in own})


@dataclass
class Predicted:
    """One artifact predicted on the target device (``figures``: the performance model's output), or why not."""

    artifact: str
    predicted: bool
    recipe: str | None = None  # written when predicted
    backend: str | None = None  # written when not
    reason: str | None = None
    figures: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        if self.predicted:
            return {"artifact": self.artifact, "recipe": self.recipe, "predicted": True, **self.figures}
        return {"artifact": self.artifact, "backend": self.backend, "predicted": False, "reason": self.reason}

    @classmethod
    def from_json(cls, d: dict) -> "Predicted":
        own = ("artifact", "predicted", "recipe", "reason") if d["predicted"] else \
            ("artifact", "predicted", "backend", "reason")
        return cls(d["artifact"], d["predicted"], d.get("recipe") if d["predicted"] else None,
                   None if d["predicted"] else d.get("backend"), d.get("reason"),
                   {k: v for k, v in d.items() if k not in own})


@dataclass
class ExportCost:
    """The export's forecast (edgeslm/preflight.py) against what the export took, so the forecast can be
    recalibrated from real runs: wall time from the transformers reference to the bundle's reports (the latency
    bench, which the forecast leaves out, excluded) and the process's peak RSS since the export began."""

    backends: list[str]  # the artifacts forecast, one backend name each
    predicted_s: float
    measured_s: float
    predicted_peak_mib: float
    measured_peak_mib: float | None
    rss_method: str | None  # how the peak was read (edgeslm/latency/rss.py)
    cpu_count: int | None

    @property
    def seconds_error(self) -> float | None:
        return _error(self.predicted_s, self.measured_s)

    @property
    def peak_error(self) -> float | None:
        return _error(self.predicted_peak_mib, self.measured_peak_mib)

    def to_json(self) -> dict:
        return {"backends": self.backends, "cpu_count": self.cpu_count,
                "seconds": {"predicted": self.predicted_s, "measured": self.measured_s, "error": self.seconds_error},
                "peak_rss_mib": {"predicted": self.predicted_peak_mib, "measured": self.measured_peak_mib,
                                 "error": self.peak_error, "method": self.rss_method}}

    @classmethod
    def from_json(cls, d: dict) -> "ExportCost":
        t, m = d["seconds"], d["peak_rss_mib"]
        return cls(d["backends"], t["predicted"], t["measured"], m["predicted"], m["measured"], m.get("method"),
                   d.get("cpu_count"))


def _error(predicted: float, measured: float | None) -> float | None:
    """measured / predicted - 1 (+0.25: a quarter more than forecast); None without a measurement."""
    return None if measured is None or not predicted else round(measured / predicted - 1, 3)


@dataclass
class Latency:
    """latency.json: what was measured here and what is predicted on the target device, labelled apart, and the
    target's budgets; ``passed`` is :func:`release` over the budgets."""

    schema_version: str
    created: str | None
    bundle: str | None
    settings: dict
    host: dict | None
    measured: list[Measured] | None  # None: nothing timed here (--no-bench)
    device: str | None
    description: str | None
    predicted: list[Predicted]
    assumptions: list
    budgets: list[Budget]
    kind: str = "edgeslm-latency"
    export_cost: ExportCost | None = None  # 1.2; None: not written by an export (or before 1.2)

    @property
    def status(self) -> Status:
        return release(b.status for b in self.budgets)

    @property
    def passed(self) -> bool:
        return ships(self.status)

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "kind": self.kind,
            "created": self.created,
            "bundle": self.bundle,
            "settings": self.settings,
            "measured_here": {"host": self.host, "artifacts": [m.to_json() for m in self.measured]}
            if self.measured is not None else None,
            "predicted_on_device": {"device": self.device, "description": self.description,
                                    "artifacts": [p.to_json() for p in self.predicted],
                                    "assumptions": self.assumptions},
            "budgets": [b.to_json() for b in self.budgets],
            "passed": self.passed,
            **({"export_cost": self.export_cost.to_json()} if self.export_cost is not None else {}),
        }

    @classmethod
    def from_json(cls, d: dict) -> "Latency":
        here, there = d.get("measured_here"), d.get("predicted_on_device") or {}
        return cls(d["schema_version"], d.get("created"), d.get("bundle"), d["settings"],
                   here.get("host") if here else None,
                   [Measured.from_json(m) for m in here.get("artifacts") or []] if here else None,
                   there.get("device"), there.get("description"),
                   [Predicted.from_json(p) for p in there.get("artifacts", [])], there.get("assumptions", []),
                   [Budget.from_json(b) for b in d["budgets"]], d.get("kind", "edgeslm-latency"),
                   ExportCost.from_json(d["export_cost"]) if d.get("export_cost") else None)


# --- summary.json (the release report) ---------------------------------------------------------------------------

@dataclass
class Row:
    """One (target, artifact, check) of the release report: what JUnit, Markdown, HTML and ``gate`` read."""

    target: str
    artifact: str
    backend: str
    recipe: str | None
    check: str
    kind: str  # parity / structure / latency
    status: Status
    metrics: dict
    message: str

    def to_json(self) -> dict:
        return {"target": self.target, "artifact": self.artifact, "backend": self.backend, "recipe": self.recipe,
                "check": self.check, "kind": self.kind, "status": self.status.value, "metrics": self.metrics,
                "message": self.message}

    @classmethod
    def from_json(cls, d: dict) -> "Row":
        return cls(d["target"], d["artifact"], d["backend"], d.get("recipe"), d["check"], d["kind"],
                   Status(d["status"]), d["metrics"], d["message"])


@dataclass
class ArtifactRow:
    name: str
    backend: str
    recipe: str | None
    bytes: int
    parity: str  # the manifest's word
    weight_bytes_by_dtype: dict | None = None

    def to_json(self) -> dict:
        d = {"name": self.name, "backend": self.backend, "recipe": self.recipe, "bytes": self.bytes,
             "parity": self.parity}
        return d if self.weight_bytes_by_dtype is None else {**d, "weight_bytes_by_dtype": self.weight_bytes_by_dtype}

    @classmethod
    def from_json(cls, d: dict) -> "ArtifactRow":
        return cls(d["name"], d["backend"], d.get("recipe"), d["bytes"], d["parity"], d.get("weight_bytes_by_dtype"))


@dataclass
class TargetReport:
    """One target's part of the release report; ``status`` is its manifest's (passed / failed)."""

    target: str
    device: str | None
    folder: str | None
    model: str | None
    status: Status
    artifacts: list[ArtifactRow]
    checks: list[Row]
    parity: dict  # parity.json as read (any 1.x)
    latency: dict | None  # latency.json as read (any 1.x)

    @property
    def passed(self) -> bool:
        return ships(self.status)

    def to_json(self) -> dict:
        return {"target": self.target, "device": self.device, "folder": self.folder, "model": self.model,
                "status": self.status.value, "passed": self.passed,
                "artifacts": [a.to_json() for a in self.artifacts], "checks": [c.to_json() for c in self.checks],
                "parity": self.parity, "latency": self.latency}

    @classmethod
    def from_json(cls, d: dict) -> "TargetReport":
        status = Status(d["status"]) if "status" in d else Status.of(d["passed"])
        return cls(d["target"], d.get("device"), d.get("folder"), d.get("model"), status,
                   [ArtifactRow.from_json(a) for a in d["artifacts"]], [Row.from_json(c) for c in d["checks"]],
                   d["parity"], d.get("latency"))


@dataclass
class Report:
    """summary.json: every target's rows; ``status`` is :func:`verdict` over all rows, ``passed`` read from it."""

    schema_version: str
    created: str | None
    model: str | None
    targets: list[TargetReport]
    kind: str = "edgeslm-report"

    @property
    def rows(self) -> list[Row]:
        return [c for t in self.targets for c in t.checks]

    @property
    def status(self) -> Status:
        return verdict(c.status for c in self.rows)

    @property
    def passed(self) -> bool:
        return ships(self.status)

    @property
    def counts(self) -> dict:
        return {s.value: sum(c.status is s for c in self.rows) for s in Status}

    def to_json(self) -> dict:
        return {"schema_version": self.schema_version, "kind": self.kind, "created": self.created,
                "model": self.model, "passed": self.passed, "status": self.status.value, "counts": self.counts,
                "targets": [t.to_json() for t in self.targets]}

    @classmethod
    def from_json(cls, d: dict) -> "Report":
        return cls(d["schema_version"], d.get("created"), d.get("model"),
                   [TargetReport.from_json(t) for t in d["targets"]], d.get("kind", "edgeslm-report"))


# --- a fleet: several jobs' reports read as one ---------------------------------------------------------------

@dataclass
class FleetRow:
    """One artifact of one job in a fleet's models × targets summary: its verdict (its own checks and the
    model's), bytes, perplexity rise against fp32, decode speed measured on the runner and predicted on the
    target's device (None where there is none)."""

    job: str
    model: str | None
    target: str
    device: str | None
    artifact: str
    status: Status
    bytes: int
    ppl_rise: float | None
    decode_here: float | None
    decode_predicted: float | None

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status.value}


@dataclass
class FleetReport:
    """Each job's report under its job name (its --report-dir folder's name), in the order read, and the folder
    it was read from; ``status`` is :func:`verdict` over every job's rows."""

    jobs: dict[str, Report]
    folders: dict[str, Path] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return verdict(c.status for r in self.jobs.values() for c in r.rows)

    @property
    def passed(self) -> bool:
        return ships(self.status)

    @property
    def counts(self) -> dict:
        return {s.value: sum(r.counts[s.value] for r in self.jobs.values()) for s in Status}

    @property
    def failed_jobs(self) -> list[str]:
        return [name for name, r in self.jobs.items() if not r.passed]

    @property
    def failed_rows(self) -> list[tuple[str, Row]]:
        """(job, row) for every failed check."""
        return [(name, c) for name, r in self.jobs.items() for c in r.rows if c.status is Status.FAILED]
