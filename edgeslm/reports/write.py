"""Write a reports folder from bundles: each target's JSON reports, summary.json, junit.xml, summary.md and
index.html (all derived from the same flattened checks)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Callable

from edgeslm.bundle.files import atomic_folder
from edgeslm.errors import InputError
from edgeslm.records import FleetReport, Report
from edgeslm.reports.collect import REPORT_FILES, load_target, summarize
from edgeslm.reports.fleet import summary_rows
from edgeslm.reports.html import fleet_html, to_html
from edgeslm.reports.junit import fleet_junit, to_junit
from edgeslm.reports.markdown import fleet_markdown, to_markdown


def _write(outputs: list[tuple[Path, object]]) -> list[Path]:
    for path, fn in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fn())
    return [p for p, _ in outputs]


def render(report: Report, folder: Path, html: Path | None = None, junit: Path | None = None,
           markdown: Path | None = None) -> list[Path]:
    return _write([(html or folder / "index.html", lambda: to_html(report)),
                   (junit or folder / "junit.xml", lambda: to_junit(report)),
                   (markdown or folder / "summary.md", lambda: to_markdown(report))])


def render_fleet(fleet: FleetReport, folder: Path | None, html: Path | None = None, junit: Path | None = None,
                 markdown: Path | None = None) -> list[Path]:
    """The fleet's summary pages: index.html, junit.xml and summary.md in ``folder`` (the folder of job
    reports; never summary.json there, which would make it read as one report), or where given; without a
    ``folder`` (several REPORTS) only those given."""
    paths = [html, junit, markdown] if folder is None else \
        [html or folder / "index.html", junit or folder / "junit.xml", markdown or folder / "summary.md"]
    if not any(paths):
        raise InputError("several REPORTS folders, and nowhere to write their summary",
                         "pass --html, --junit and/or --markdown, or one folder that holds every job's reports")
    rows = summary_rows(fleet)

    def page() -> str:
        here = paths[0].parent
        links = {job: os.path.relpath(f / "index.html", here) for job, f in fleet.folders.items()
                 if (f / "index.html").is_file()}
        return fleet_html(fleet, rows, links)

    makers = (page, lambda: fleet_junit(fleet), lambda: fleet_markdown(fleet, rows))
    return _write([(p, fn) for p, fn in zip(paths, makers) if p is not None])


def write_reports(bundles: list[Path], folder: Path, force: bool = False,
                  status: Callable[[str], None] = lambda msg: None) -> list[Path]:
    """The reports folder, written beside ``folder`` and renamed into place (``force`` replaces an earlier
    reports folder, never anything else)."""
    targets = [load_target(b) for b in bundles]
    report = summarize(targets)
    with atomic_folder(folder, force, status) as tmp:
        for b, t in zip(bundles, targets):
            dst = tmp / t.target
            dst.mkdir(exist_ok=True)
            for name in REPORT_FILES:
                if (b / name).is_file():
                    shutil.copyfile(b / name, dst / name)
        (tmp / "summary.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
        render(report, tmp)
    return [folder / n for n in ("summary.json", "index.html", "junit.xml", "summary.md")]
