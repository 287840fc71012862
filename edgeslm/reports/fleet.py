"""Several jobs' reports read as one: a fleet's ``reports/<job>`` folders, its models × targets summary and its
gate.

REPORTS name one report (a --report-dir folder, a bundle, or a folder of bundles: read as before) or a fleet:
several of them, or a folder whose subfolders are --report-dir folders (what a CI gate job downloads). Each job
is named by its folder, as ``edgeslm matrix`` named it; a baseline fleet is matched job by job.
"""

from __future__ import annotations

from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.records import FleetReport, FleetRow, Report, verdict
from edgeslm.reports.collect import latency_rows, load_report
from edgeslm.reports.gate import Tolerance, current_failures, regressions

PPL_STAGES = ("end_to_end", "quantization", "lowering")  # the ppl Δ shown: the first of these an artifact has


def _holds_one_report(folder: Path) -> bool:
    return (folder / "summary.json").is_file() or (folder / "parity.json").is_file()


def members(folder: Path) -> list[Path]:
    """The --report-dir folders inside ``folder`` when it is a folder of them (a fleet), else []."""
    if not folder.is_dir() or _holds_one_report(folder):
        return []
    return sorted(p for p in folder.iterdir() if (p / "summary.json").is_file())


def is_fleet(paths: list[Path]) -> bool:
    return len(paths) > 1 or bool(members(paths[0]))


def load_jobs(paths: list[Path], empty_ok: bool = False) -> FleetReport:
    """Every job in ``paths``: a fleet folder gives its members, any other folder is one job. ``empty_ok``: a
    folder holding no reports at all is a fleet with no jobs (every job the fleet file names is then missing)."""
    jobs: dict[str, Report] = {}
    where: dict[str, Path] = {}
    for path in paths:
        found = members(path)
        if not found and not (empty_ok and path.is_dir() and not _holds_one_report(path)):
            found = [path]
        for folder in found:
            name = folder.resolve().name
            if name in jobs:
                raise InputError(f"{where[name]} and {folder} are both job {name!r} (a job is named by its folder)",
                                 "pass report folders with different names, one per job")
            jobs[name], where[name] = load_report(folder), folder
    return FleetReport(jobs, where)


def load_reports(paths: list[Path]) -> Report | FleetReport:
    """One report, or a fleet's (see the module's docstring)."""
    return load_jobs(paths) if is_fleet(paths) else load_report(paths[0])


def _ppl(report_rows, artifact: str) -> float | None:
    by_stage = {c.check: c.metrics.get("ppl_rise") for c in report_rows if c.artifact == artifact}
    return next((by_stage[s] for s in PPL_STAGES if isinstance(by_stage.get(s), (int, float))), None)


def summary_rows(fleet: FleetReport) -> list[FleetRow]:
    """One row per (job, target, artifact): the fleet's models × targets table."""
    rows = []
    for job, report in fleet.jobs.items():
        for t in report.targets:
            here, there = latency_rows(t.latency)
            for a in t.artifacts:
                h, p = here.get(a.name, {}), there.get(a.name, {})
                rows.append(FleetRow(
                    job, t.model, t.target, t.device, a.name,
                    verdict(c.status for c in t.checks if c.artifact in (a.name, "model")), a.bytes,
                    _ppl(t.checks, a.name), h["decode_tok_s"]["median"] if h.get("measured") else None,
                    p["decode_tok_s"]["point"] if p.get("predicted") else None))
    return rows


def _missing(job: str) -> dict:
    return {"job": job, "target": "—", "artifact": "—", "backend": None, "check": "reports", "what": "missing",
            "baseline": None, "current": "no reports (the job failed before writing them, or they were not "
            "collected)", "limit": "every job of the fleet reports"}


def fleet_problems(fleet: FleetReport, gates: dict | None = None, baseline: FleetReport | None = None,
                   tolerance: Tolerance = Tolerance(), expected: list[str] | None = None) -> list[dict]:
    """Each job's failed checks and (against the baseline's job of the same name) regressions, each row naming
    its job; with ``expected`` (the fleet file's job names), a row for each of those that has no reports."""
    rows = [_missing(name) for name in expected or [] if name not in fleet.jobs]
    for job, report in fleet.jobs.items():
        found = current_failures(report, gates)
        if baseline is not None and job in baseline.jobs:
            found += regressions(report, baseline.jobs[job], tolerance)
        rows += [{"job": job, **r} for r in found]
    return rows
