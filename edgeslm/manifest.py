"""Reading a bundle's manifest (what an app reads first): its validating loader, and the paths it names.

Every command that reads a bundle goes through :func:`load_manifest` (``read_manifest`` is the same function):
a manifest is used only if it parses, was written with this edgeslm's major schema version, follows the
published schema (edgeslm/schemas/manifest.schema.json) and keeps every path it names inside the bundle.
It sits below the backends (which read a bundle's special tokens to run an artifact) and the bundle package
(whose :func:`edgeslm.bundle.manifest.verify` reports every problem of a bundle).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path, PurePosixPath

import jsonschema

from edgeslm.errors import InputError
from edgeslm.records import Manifest

SCHEMA_VERSION = "1.3"  # 1.1: size_bytes, validation; 1.2: per-artifact load, app (docs/apps.md); 1.3: not_built,
# adapters, speculative, artifact role / adapter / model_shape (docs/npu.md, docs/adapters.md)
SCHEMA_MAJOR = int(SCHEMA_VERSION.split(".")[0])
MANIFEST = "manifest.json"
REEXPORT = "re-export the bundle with `edgeslm export`"


def schema() -> dict:
    return json.loads(resources.files("edgeslm").joinpath("schemas/manifest.schema.json").read_text())


def read_json(bundle: Path) -> dict:
    """manifest.json parsed, refused (InputError) if absent, unreadable, not a JSON object, or of another major
    schema version than this edgeslm writes."""
    p = bundle / MANIFEST
    if not p.is_file():
        raise InputError(f"{bundle} is not an edgeslm bundle (no {MANIFEST})", "pass a folder written by edgeslm export")
    try:
        m = json.loads(p.read_bytes())
    except OSError as e:
        raise InputError(f"{p} cannot be read ({e.strerror or e})", "check its permissions, or re-export the bundle") \
            from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError, bad UTF-8, absurd nesting
        raise InputError(f"{p} is not valid JSON ({e})", REEXPORT) from None
    if not isinstance(m, dict):
        raise InputError(f"{p} is not a manifest (a JSON {type(m).__name__}, not an object)", REEXPORT)
    version = m.get("schema_version")
    found = re.fullmatch(r"(\d+)\.\d+", version) if isinstance(version, str) else None
    if found and int(found.group(1)) > SCHEMA_MAJOR:
        raise InputError(f"{p} was written by a newer edgeslm (manifest schema {version}; this edgeslm reads "
                         f"{SCHEMA_MAJOR}.x)", "upgrade edgeslm (pip install -U edgeslm), or re-export the bundle "
                         "with this version")
    if found and int(found.group(1)) < SCHEMA_MAJOR:
        raise InputError(f"{p} was written by an older edgeslm (manifest schema {version}; this edgeslm reads "
                         f"{SCHEMA_MAJOR}.x)", REEXPORT)
    return m


def entries(m: dict) -> list[dict]:
    """Every file entry the manifest lists (artifacts, their files, tokenizer, reports), as far as they are
    well-formed (verify reports the rest as schema problems)."""
    def items(x):
        return [e for e in x if isinstance(e, dict)] if isinstance(x, list) else []

    arts = items(m.get("artifacts"))
    tok = m.get("tokenizer")
    app = m.get("app") if isinstance(m.get("app"), dict) else {}
    return ([e for a in arts for e in [a, *items(a.get("files"))]]
            + items(tok.get("files") if isinstance(tok, dict) else None) + items(m.get("reports"))
            + items([app.get("golden")]))


def listed_paths(m: dict) -> list[str]:
    """Every path the manifest names: each entry's ``file`` and each Core ML artifact's ``package`` folder."""
    out = [e["file"] for e in entries(m) if isinstance(e.get("file"), str)]
    arts = m.get("artifacts") if isinstance(m.get("artifacts"), list) else []
    out += [a["package"] for a in arts if isinstance(a, dict) and isinstance(a.get("package"), str)]
    loads = [a["load"] for a in arts if isinstance(a, dict) and isinstance(a.get("load"), dict)]
    return out + [v for ld in loads for k, v in ld.items() if k in ("path", "tokenizer") and isinstance(v, str)]


def path_problem(bundle: Path, name: str) -> str | None:
    """Why manifest path ``name`` does not name a place inside ``bundle`` (absolute, a ``..`` component, or
    resolving outside it through a symlink), or None."""
    if not name or name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or re.match(r"[A-Za-z]:", name):
        return f"{name or '(empty path)'}: absolute path in the manifest (paths must be relative to the bundle)"
    if ".." in re.split(r"[/\\]", name):
        return f"{name}: path with a '..' component in the manifest (it must stay inside the bundle)"
    root = bundle.resolve()
    full = (bundle / name).resolve()
    if full != root and root not in full.parents:
        return f"{name}: resolves outside the bundle (to {full}, through a symlink)"
    return None


def schema_problems(bundle: Path, m: dict) -> list[str]:
    """Path problems first (in words), then the schema's own messages (path patterns already reported left out)."""
    paths = {n: path_problem(bundle, n) for n in listed_paths(m)}
    out = [p for p in paths.values() if p]
    for e in jsonschema.Draft202012Validator(schema()).iter_errors(m):
        if e.validator == "pattern" and paths.get(e.instance):
            continue
        msg = e.message if len(e.message) <= 200 else e.message[:200] + "…"
        out.append(f"manifest: {msg} (at {'/'.join(map(str, e.absolute_path)) or 'top level'})")
    return out


def load_manifest(bundle: Path) -> dict:
    """The bundle's manifest, refused (InputError) unless it parses, has this edgeslm's major schema version,
    follows the published schema, lists at least one artifact and keeps every path inside the bundle."""
    bundle = Path(bundle)
    m = read_json(bundle)
    problems = schema_problems(bundle, m)
    if not problems and not m["artifacts"]:  # the schema says so too (minItems 1): belt and braces
        problems = ["manifest: it lists no artifacts"]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        first = problems[0].removeprefix("manifest: ")
        raise InputError(f"{bundle / MANIFEST} is not a valid edgeslm manifest: {first}{more}",
                         f"run `edgeslm verify {bundle}` to see every problem; {REEXPORT}")
    return m


read_manifest = load_manifest  # the name every reader has used: it validates too


def load_manifest_record(bundle: Path):
    """The bundle's manifest, validated as :func:`load_manifest` does, as the typed record (records.Manifest)."""
    return Manifest.from_json(load_manifest(bundle))
