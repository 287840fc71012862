"""JUnit XML: one test case per (target, artifact, check), so CI systems list failures natively; for a fleet, one
test suite per (job, target)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from edgeslm.records import FleetReport, Report, Status, TargetReport


def _suite(suites: ET.Element, name: str, prefix: str, t: TargetReport) -> None:
    """``t``'s checks as test suite ``name``; test classes are ``edgeslm.<prefix>.<backend>``."""
    cases = t.checks
    suite = ET.SubElement(suites, "testsuite", name=name, tests=str(len(cases)),
                          failures=str(sum(c.status is Status.FAILED for c in cases)),
                          skipped=str(sum(c.status is Status.NOT_RUN for c in cases)), errors="0")
    for c in cases:
        case = ET.SubElement(suite, "testcase", classname=f"edgeslm.{prefix}.{c.backend}",
                             name=f"{c.artifact}: {c.check}")
        if c.status is Status.FAILED:
            ET.SubElement(case, "failure", message=c.message or "failed", type=c.kind).text = c.message
        elif c.status is Status.NOT_RUN:
            ET.SubElement(case, "skipped", message=c.message)
        if c.metrics:
            ET.SubElement(case, "system-out").text = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in c.metrics.items())


def _xml(suites: ET.Element) -> str:
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def to_junit(report: Report) -> str:
    suites = ET.Element("testsuites", name=f"edgeslm {report.model or ''}".strip())
    for t in report.targets:
        _suite(suites, t.target, t.target, t)
    return _xml(suites)


def fleet_junit(fleet: FleetReport) -> str:
    suites = ET.Element("testsuites", name="edgeslm fleet")
    for job, report in fleet.jobs.items():
        for t in report.targets:
            _suite(suites, f"{job}/{t.target}", f"{job}.{t.target}", t)
    return _xml(suites)
