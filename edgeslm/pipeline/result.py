"""What an export returns for each target: :class:`ExportResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeslm.records import Artifact, Latency, Manifest


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
