"""Write a reports folder from bundles: each target's JSON reports, summary.json, junit.xml, summary.md and
index.html (all derived from the same flattened checks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

from edgeslm.bundle.files import atomic_folder
from edgeslm.records import Report
from edgeslm.reports.collect import REPORT_FILES, load_target, summarize
from edgeslm.reports.html import to_html
from edgeslm.reports.junit import to_junit
from edgeslm.reports.markdown import to_markdown


def render(report: Report, folder: Path, html: Path | None = None, junit: Path | None = None,
           markdown: Path | None = None) -> list[Path]:
    outputs = [(html or folder / "index.html", to_html), (junit or folder / "junit.xml", to_junit),
               (markdown or folder / "summary.md", to_markdown)]
    for path, fn in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(fn(report))
    return [p for p, _ in outputs]


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
