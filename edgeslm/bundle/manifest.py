"""The bundle manifest (what an app reads first), its validating loader, and ``verify`` (everything re-checked).

Every command that reads a bundle goes through :func:`load_manifest` (``read_manifest`` is the same function):
a manifest is used only if it parses, was written with this edgeslm's major schema version, follows the
published schema (edgeslm/schemas/manifest.schema.json) and keeps every path it names inside the bundle.
:func:`verify` reports every problem of a bundle as a list instead (schema, paths, symlinks, files not listed,
permissions, sizes and hashes); files are hashed there, and before loading by :mod:`edgeslm.bundle.integrity`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import stat
from importlib import metadata, resources
from pathlib import Path, PurePosixPath

from edgeslm.bundle import files as _files
from edgeslm.errors import InputError
from edgeslm.records import artifact_name  # noqa: F401  (re-exported: the one definition lives there)

SCHEMA_VERSION = "1.3"  # 1.1: size_bytes, validation; 1.2: per-artifact load, app (docs/apps.md); 1.3: not_built,
# adapters, speculative, artifact role / adapter / model_shape (docs/npu.md, docs/adapters.md)
SCHEMA_MAJOR = int(SCHEMA_VERSION.split(".")[0])
MANIFEST = "manifest.json"
_REEXPORT = "re-export the bundle with `edgeslm export`"


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


def _read_json(bundle: Path) -> dict:
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
        raise InputError(f"{p} is not valid JSON ({e})", _REEXPORT) from None
    if not isinstance(m, dict):
        raise InputError(f"{p} is not a manifest (a JSON {type(m).__name__}, not an object)", _REEXPORT)
    version = m.get("schema_version")
    found = re.fullmatch(r"(\d+)\.\d+", version) if isinstance(version, str) else None
    if found and int(found.group(1)) > SCHEMA_MAJOR:
        raise InputError(f"{p} was written by a newer edgeslm (manifest schema {version}; this edgeslm reads "
                         f"{SCHEMA_MAJOR}.x)", "upgrade edgeslm (pip install -U edgeslm), or re-export the bundle "
                         "with this version")
    if found and int(found.group(1)) < SCHEMA_MAJOR:
        raise InputError(f"{p} was written by an older edgeslm (manifest schema {version}; this edgeslm reads "
                         f"{SCHEMA_MAJOR}.x)", _REEXPORT)
    return m


def _entries(m: dict) -> list[dict]:
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
    out = [e["file"] for e in _entries(m) if isinstance(e.get("file"), str)]
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


def _schema_problems(bundle: Path, m: dict) -> list[str]:
    """Path problems first (in words), then the schema's own messages (path patterns already reported left out)."""
    import jsonschema

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
    m = _read_json(bundle)
    problems = _schema_problems(bundle, m)
    if not problems and not m["artifacts"]:  # the schema says so too (minItems 1): belt and braces
        problems = ["manifest: it lists no artifacts"]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        first = problems[0].removeprefix("manifest: ")
        raise InputError(f"{bundle / MANIFEST} is not a valid edgeslm manifest: {first}{more}",
                         f"run `edgeslm verify {bundle}` to see every problem; {_REEXPORT}")
    return m


read_manifest = load_manifest  # the name every reader has used: it validates too


def load_manifest_record(bundle: Path):
    """The bundle's manifest, validated as :func:`load_manifest` does, as the typed record (records.Manifest)."""
    from edgeslm.records import Manifest

    return Manifest.from_json(load_manifest(bundle))


def _mode_problem(rel: str, st: os.stat_result) -> str | None:
    """Files must be readable, and folders listable, by other users: apps run as another user after adb push."""
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode) and (mode & 0o005) != 0o005:
        return f"{rel}: folder not readable by other users (mode {mode:04o}): chmod a+rx"
    if stat.S_ISREG(st.st_mode) and not mode & stat.S_IROTH:
        return f"{rel}: not readable by other users (mode {mode:04o}): chmod a+r"
    return None


def _walk(bundle: Path, listed: set[str]) -> list[str]:
    """What is on disk but should not be: symlinks (never followed), special files, files the manifest does
    not list, and anything other users cannot read."""
    problems = []
    try:
        root_problem = _mode_problem(f"{bundle} (the bundle)", os.stat(bundle))
    except OSError:
        root_problem = None
    if root_problem:
        problems.append(root_problem)
    for top, dirs, files in os.walk(bundle, followlinks=False, onerror=lambda e: problems.append(
            f"{Path(e.filename).relative_to(bundle).as_posix() if e.filename else bundle}: cannot be read "
            f"({e.strerror})")):
        for name in sorted(dirs + files):
            p = Path(top) / name
            rel = p.relative_to(bundle).as_posix()
            try:
                st = os.lstat(p)
            except OSError as e:
                problems.append(f"{rel}: cannot be read ({e.strerror})")
                continue
            if stat.S_ISLNK(st.st_mode):
                problems.append(f"{rel}: is a symlink (to {os.readlink(p)}); a bundle holds plain files only")
                continue
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                problems.append(f"{rel}: not a regular file; a bundle holds plain files only")
                continue
            mode = _mode_problem(rel, st)
            if mode:
                problems.append(mode)
            if stat.S_ISREG(st.st_mode) and rel not in listed and rel != MANIFEST:
                problems.append(f"{rel}: in the bundle but not listed in the manifest")
    return problems


def _file_problem(bundle: Path, e: dict) -> str | None:
    """Size and sha256 of one listed regular file (symlinks are not followed: reported by the walk)."""
    name = e["file"]
    p = bundle / name
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return f"{name}: listed in the manifest but missing"
    except OSError as err:
        return f"{name}: cannot be read ({err.strerror})"
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        return None if stat.S_ISLNK(st.st_mode) else f"{name}: listed in the manifest but not a file"
    if st.st_size != e["bytes"]:
        return f"{name}: {st.st_size} bytes, manifest says {e['bytes']}"
    try:
        if _files.sha256(p) != e["sha256"]:
            return f"{name}: sha256 differs from the manifest (file changed or corrupt)"
    except OSError as err:
        return f"{name}: cannot be read ({err.strerror})"
    return None


def verify(bundle: Path) -> list[str]:
    """Every problem of a bundle: schema violations, paths leaving the bundle, symlinks, files not listed in the
    manifest or not readable by other users, missing files, size or hash mismatches. Raises InputError only for
    a manifest that cannot be used at all (missing, unreadable, not JSON, another major schema version)."""
    bundle = Path(bundle)
    m = _read_json(bundle)
    problems = _schema_problems(bundle, m)
    listed = {PurePosixPath(n).as_posix() for n in listed_paths(m)}
    problems += _walk(bundle, listed)
    if problems and any(p.startswith("manifest:") for p in problems):
        return problems  # entries may lack their fields: nothing more can be checked safely
    unsafe = {n for n in listed_paths(m) if path_problem(bundle, n)}
    from edgeslm.reports.schemas import SCHEMAS
    from edgeslm.reports.schemas import problems as schema_problems

    for r in m["reports"]:  # the JSON reports follow their published schemas too
        p = bundle / r["file"]
        if r["file"] in SCHEMAS and r["file"] not in unsafe and p.is_file() and not p.is_symlink():
            try:
                doc = json.loads(p.read_bytes())
            except OSError:
                continue  # reported below, where the file is hashed
            except (ValueError, RecursionError) as e:
                problems.append(f"{r['file']}: not valid JSON ({e})")
                continue
            problems += [f"{r['file']}: {p}" for p in schema_problems(doc, SCHEMAS[r["file"]])]
    for e in _entries(m):
        if e["file"] not in unsafe:
            problems += [x for x in [_file_problem(bundle, e)] if x]
    return problems
