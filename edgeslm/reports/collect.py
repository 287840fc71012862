"""One release report across targets and backends, built from the bundles' JSON reports (manifest.json,
parity.json, latency.json) and flattened into checks: one row per (target, artifact, check), which JUnit, the
Markdown summary, the HTML page and ``gate`` all read.

A reports folder holds ``summary.json`` plus each target's JSON reports in ``<target>/``; a bundle folder (or a
folder of bundles) reads the same way, so every command takes either.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.records import (ArtifactRow, Budget, Check, Manifest, Report, Row, Status, TargetReport, Validation,
                             artifact_name, ships, verdict)
from edgeslm.backends import get_backend
from edgeslm.bundle.inspect import read_artifact
from edgeslm.manifest import MANIFEST, read_manifest
from edgeslm.json_schemas import SCHEMAS, problems, reader_problems

REPORT_SCHEMA_VERSION = "1.0"
REPORT_FILES = ("manifest.json", "parity.json", "latency.json")


FIX = "re-run edgeslm export, or pass a folder written by edgeslm export or --report-dir"
_KINDS = {"manifest.json": "bundle manifest", "parity.json": "parity report", "latency.json": "latency report",
          "summary.json": "edgeslm report (summary.json)"}


class _HugeInt(ValueError):
    pass


def _int(text: str) -> int:
    value = int(text)
    if abs(value) >= 2 ** 63:  # beyond what any writer writes, and beyond a float
        raise _HugeInt(f"integer {text[:20]}{'...' if len(text) > 20 else ''} is out of range")
    return value


def _read(path: Path) -> dict:
    """``path`` parsed as JSON and checked against its published schema and what the readers use of it; anything
    else is an InputError naming the file, the first problem and the fix."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"), parse_int=_int)
    except (OSError, ValueError, RecursionError) as e:  # ValueError: bad JSON, not UTF-8, integer out of range
        why = e.strerror if isinstance(e, OSError) and e.strerror else "nested too deeply" \
            if isinstance(e, RecursionError) else str(e)
        raise InputError(f"cannot read {path}: {why}", FIX) from None
    kind = _KINDS.get(path.name, "edgeslm report")
    if not isinstance(doc, dict):
        raise InputError(f"{path} is not a valid {kind}: it holds a JSON {type(doc).__name__}, not an object", FIX)
    if path.name == "summary.json" and doc.get("kind") != "edgeslm-report":
        raise InputError(f"{path} is not an edgeslm report (its kind is {str(doc.get('kind'))[:40]!r})", FIX)
    _check(path, doc, problems(doc, SCHEMAS[path.name]) if path.name in SCHEMAS else [])
    return doc


def _check(path: Path, doc: dict, found: list[str] | None = None) -> None:
    """Raise on the first of ``found`` (published-schema problems), else of what the readers need of ``doc``
    (``READER_SHAPES``: the published schemas leave some types open that gate and report format or compare)."""
    found = found or (reader_problems(doc, SCHEMAS[path.name]) if path.name in SCHEMAS else [])
    if found:
        more = f" (and {len(found) - 1} more problem{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        raise InputError(f"{path} is not a valid {_KINDS.get(path.name, 'edgeslm report')}: {found[0]}{more}", FIX)


def _manifest(folder: Path) -> dict:
    """The bundle's manifest through the one manifest loader (edgeslm.bundle.manifest: published schema, schema
    version, paths kept inside the bundle), then held to what the readers use of it."""
    m = read_manifest(folder)
    _check(folder / MANIFEST, m)
    return m


def target_folders(folder: Path) -> list[Path]:
    """Folders holding one target's reports: ``folder`` itself if it is a bundle, else its subfolders that are."""
    if not folder.is_dir():
        raise InputError(f"{folder} does not exist or is not a folder",
                         "pass a bundle folder, a folder of bundles, or a --report-dir folder")
    if (folder / "parity.json").is_file():
        return [folder]
    found = sorted(p for p in folder.iterdir() if (p / "parity.json").is_file())
    if not found:
        raise InputError(f"no edgeslm reports in {folder} (no parity.json in it or its subfolders)",
                         "pass a folder written by edgeslm export or --report-dir")
    return found


def _flatten(target: str, manifest: Manifest, parity: dict, latency: dict | None) -> list[Row]:
    names = {a.name: a for a in manifest.artifacts}
    rows: list[Row] = []

    def row(art: str | None, check: str, kind: str, status: Status, metrics: dict, message: str) -> None:
        a = names.get(art)
        rows.append(Row(target, art or "model", a.backend if a else "model", a.recipe if a else None, check, kind,
                        status, metrics, message))

    for d in parity["checks"]:
        c = Check.from_json(d)  # status from the record (a 1.0 report's is derived from its gate)
        row(c.artifact, c.stage, "parity", c.status, c.metrics, "; ".join(c.gate.failures + c.gate.notes))
    for d in parity.get("validations", []):
        v = Validation.from_json(d)
        row(v.artifact, v.stage, "structure" if v.status is not Status.NOT_RUN else "parity", v.status, {},
            v.message())
    for b in (Budget.from_json(b) for b in (latency or {}).get("budgets", [])):
        row(b.artifact, f"latency {b.budget}", "latency", b.status, {"predicted": b.predicted, "limit": b.limit},
            b.message())
    return rows


def unexplained(manifest: Manifest, rows: list[Row]) -> list[str]:
    """Where the manifest's verdicts and the rows disagree: a failed artifact (or bundle) no failing row explains,
    or a bundle marked passed that a row fails. The rows are the one source of a verdict; a disagreement is a
    bug in the writer or a hand-edited report, never papered over."""
    out = [f"artifact {a.name} is marked failed but no failing check explains it" for a in manifest.artifacts
           if a.status is Status.FAILED
           and not any(r.artifact == a.name and r.status is Status.FAILED for r in rows)]
    if ships(manifest.status) != ships(verdict(r.status for r in rows)):
        out.append(f"the bundle is marked {manifest.status} but its checks say "
                   f"{'passed' if ships(verdict(r.status for r in rows)) else 'failed'}")
    return out


def _reads_weight_bytes(backend: str) -> bool:
    return get_backend(backend).artifact_format.reads_weight_bytes


def _size_by_dtype(folder: Path, art: dict) -> dict:
    """Artifact bytes by storage dtype, read from the artifact where its format's reader gives them (ONNX); a .pte
    stores its weights inside delegate blobs, so it is one figure."""
    if art.get("weight_bytes_by_dtype"):
        return art["weight_bytes_by_dtype"]
    path = folder / artifact_name(art)
    try:
        present = path.is_file()
    except (OSError, ValueError):  # a name the file system refuses (too long, ...): not a file here
        present = False
    if present and _reads_weight_bytes(art["backend"]):
        return read_artifact(folder, art["backend"], artifact_name(art))["weight_bytes_by_dtype"]
    return {"mixed (delegate blobs)": art["bytes"]}


def load_target(folder: Path) -> TargetReport:
    manifest = Manifest.from_json(_manifest(folder))
    parity = _read(folder / "parity.json")
    latency = _read(folder / "latency.json") if (folder / "latency.json").is_file() else None
    name = manifest.target.name
    checks = _flatten(name, manifest, parity, latency)
    wrong = unexplained(manifest, checks)
    if wrong:
        raise InputError(f"{folder} does not agree with itself: {wrong[0]} (manifest.json vs parity.json and "
                         "latency.json)", FIX)
    return TargetReport(name, manifest.target.device, folder.name, manifest.model["id"], manifest.status,
                        [ArtifactRow(a.name, a.backend, a.recipe, a.size, a.status.parity_word,
                                     _size_by_dtype(folder, a.to_json())) for a in manifest.artifacts],
                        checks, parity, latency)


def latency_rows(latency: dict | None) -> tuple[dict, dict]:
    """A target's latency.json as (measured here, predicted on the device): each's rows by artifact name."""
    lat = latency or {}
    here = {a["artifact"]: a for a in ((lat.get("measured_here") or {}).get("artifacts") or [])}
    there = {a["artifact"]: a for a in ((lat.get("predicted_on_device") or {}).get("artifacts") or [])}
    return here, there


def load_report(folder: Path) -> Report:
    """The whole report from a reports folder, a bundle, or a folder of bundles."""
    summary = folder / "summary.json"
    if summary.is_file():
        return Report.from_json(_read(summary))
    return summarize([load_target(f) for f in target_folders(folder)])


def summarize(targets: list[TargetReport]) -> Report:
    return Report(REPORT_SCHEMA_VERSION, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  targets[0].model if targets else None, targets)
