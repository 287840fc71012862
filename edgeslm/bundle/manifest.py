"""The bundle manifest (what an app reads first) and ``verify`` (hashes + schema, re-checked)."""

from __future__ import annotations

import json
import platform
from importlib import metadata, resources
from pathlib import Path

from edgeslm.bundle.files import sha256
from edgeslm.errors import InputError
from edgeslm.records import artifact_name  # noqa: F401  (re-exported: the one definition lives there)

SCHEMA_VERSION = "1.1"  # 1.1: artifacts carry size_bytes and validation (every backend)
MANIFEST = "manifest.json"


def versions() -> dict:
    out = {}
    for pkg in ("edgeslm", "torch", "executorch", "torchao", "transformers", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    out["python"] = platform.python_version()
    out["platform"] = f"{platform.system()}-{platform.machine()}"
    return out


def schema() -> dict:
    return json.loads(resources.files("edgeslm").joinpath("schemas/manifest.schema.json").read_text())


def read_manifest(bundle: Path) -> dict:
    p = bundle / MANIFEST
    if not p.is_file():
        raise InputError(f"{bundle} is not an edgeslm bundle (no {MANIFEST})", "pass a folder written by edgeslm export")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{p} is not valid JSON ({e})", "re-export the bundle") from None


def verify(bundle: Path) -> list[str]:
    """Problems found in a bundle: schema violations, missing files, size or hash mismatches."""
    import jsonschema

    m = read_manifest(bundle)
    problems = [f"manifest: {e.message} (at {'/'.join(map(str, e.absolute_path)) or 'top level'})"
                for e in jsonschema.Draft202012Validator(schema()).iter_errors(m)]
    if problems:
        return problems
    from edgeslm.reports.schemas import SCHEMAS
    from edgeslm.reports.schemas import problems as schema_problems

    for r in m["reports"]:  # the JSON reports follow their published schemas too
        if r["file"] in SCHEMAS and (bundle / r["file"]).is_file():
            try:
                doc = json.loads((bundle / r["file"]).read_text())
            except json.JSONDecodeError as e:
                problems.append(f"{r['file']}: not valid JSON ({e})")
                continue
            problems += [f"{r['file']}: {p}" for p in schema_problems(doc, SCHEMAS[r["file"]])]
    entries = [e for a in m["artifacts"] for e in [a, *a.get("files", [])]]
    entries += list(m["tokenizer"]["files"]) + list(m["reports"])
    for e in entries:
        p = bundle / e["file"]
        if not p.is_file():
            problems.append(f"{e['file']}: listed in the manifest but missing")
        elif p.stat().st_size != e["bytes"]:
            problems.append(f"{e['file']}: {p.stat().st_size} bytes, manifest says {e['bytes']}")
        elif sha256(p) != e["sha256"]:
            problems.append(f"{e['file']}: sha256 differs from the manifest (file changed or corrupt)")
    return problems
