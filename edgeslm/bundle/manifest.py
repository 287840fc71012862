"""The bundle manifest's ``verify`` (everything re-checked) and the versions it records; its validating loader
lives in :mod:`edgeslm.manifest`.

:func:`verify` reports every problem of a bundle as a list instead (schema, paths, symlinks, files not listed,
permissions, sizes and hashes); files are hashed there, and before loading by :mod:`edgeslm.integrity`.
"""

from __future__ import annotations

import json
import os
import platform
import stat
from importlib import metadata
from pathlib import Path, PurePosixPath

from edgeslm import filefacts
from edgeslm.json_schemas import SCHEMAS
from edgeslm.json_schemas import problems as doc_problems
from edgeslm.manifest import MANIFEST, entries, listed_paths, path_problem, read_json, schema_problems


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
        if filefacts.sha256(p) != e["sha256"]:
            return f"{name}: sha256 differs from the manifest (file changed or corrupt)"
    except OSError as err:
        return f"{name}: cannot be read ({err.strerror})"
    return None


def verify(bundle: Path) -> list[str]:
    """Every problem of a bundle: schema violations, paths leaving the bundle, symlinks, files not listed in the
    manifest or not readable by other users, missing files, size or hash mismatches. Raises InputError only for
    a manifest that cannot be used at all (missing, unreadable, not JSON, another major schema version)."""
    bundle = Path(bundle)
    m = read_json(bundle)
    problems = schema_problems(bundle, m)
    listed = {PurePosixPath(n).as_posix() for n in listed_paths(m)}
    problems += _walk(bundle, listed)
    if problems and any(p.startswith("manifest:") for p in problems):
        return problems  # entries may lack their fields: nothing more can be checked safely
    unsafe = {n for n in listed_paths(m) if path_problem(bundle, n)}
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
            problems += [f"{r['file']}: {p}" for p in doc_problems(doc, SCHEMAS[r["file"]])]
    for e in entries(m):
        if e["file"] not in unsafe:
            problems += [x for x in [_file_problem(bundle, e)] if x]
    return problems
