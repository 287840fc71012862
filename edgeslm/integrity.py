"""The bytes a runtime loads are the bytes the manifest lists: checked before every load (``run``, ``bench``).

:func:`check_artifact` compares size and sha256 of every file of one artifact (its main file, its ``files``
entries: for Core ML every file of the package) and of the tokenizer files with the manifest, and refuses a
mismatch, a missing or truncated file, or a path leaving the bundle with an :class:`InputError` that points at
``edgeslm verify``.

Hashing a model on every ``run`` would cost seconds, so verified hashes are cached in
``$XDG_CACHE_HOME/edgeslm/hashes.json`` (default ``~/.cache``), keyed by the file's absolute path and valid only
while its (size, st_mtime_ns, st_ctime_ns, st_ino, st_dev) are unchanged. A user can set mtime back, but not
ctime: any write to the file (or replacing it) changes ctime or the inode, so a rewritten file always misses the
cache. A file changed within the clock tick of its hashing could keep its ctime, so files changed in the last
couple of seconds are hashed but not cached (as git does with its racily clean index entries). The cache is
written atomically (temp file + ``os.replace``); an unreadable or corrupt cache is ignored, an unwritable one
only costs the hashing again.

It sits below the backends (:meth:`edgeslm.backends.protocol.Backend.generate` checks before it runs) and
``bench``.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from pathlib import Path

from edgeslm import filefacts
from edgeslm.errors import InputError
from edgeslm.manifest import read_manifest

CACHE_VERSION = 1
MAX_ENTRIES = 4096
RACY_NS = 2_000_000_000  # files changed this recently are not cached (timestamp granularity)


def cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "edgeslm" / "hashes.json"


def _key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _load_cache() -> dict:
    try:
        doc = json.loads(cache_path().read_bytes())
    except (OSError, ValueError, RecursionError):
        return {}
    if not isinstance(doc, dict) or doc.get("version") != CACHE_VERSION or not isinstance(doc.get("files"), dict):
        return {}
    return {k: v for k, v in doc["files"].items() if isinstance(v, dict) and isinstance(v.get("stat"), list)
            and isinstance(v.get("sha256"), str)}


def _save_cache(entries: dict) -> None:
    """Merge ``entries`` into the cache on disk, dropping entries whose file is gone or changed; atomic."""
    path = cache_path()
    merged = {**_load_cache(), **entries}
    keep = {}
    for name, v in merged.items():
        try:
            if _key(os.stat(name)) == v["stat"]:
                keep[name] = v
        except OSError:
            continue
    if len(keep) > MAX_ENTRIES:  # the newest files are the likeliest to be run again
        keep = dict(sorted(keep.items(), key=lambda kv: kv[1]["stat"][2])[-MAX_ENTRIES:])
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hashes.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"version": CACHE_VERSION, "files": keep}, f)
        os.replace(tmp, path)
        tmp = None
    except OSError:
        pass  # a cache we cannot write only costs hashing again
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _mismatch(bundle: Path, name: str, why: str) -> InputError:
    return InputError(f"{bundle / name} does not match the manifest ({why})",
                      f"run `edgeslm verify {bundle}` to see every problem; re-export the bundle")


def _check_file(bundle: Path, e: dict, cache: dict, fresh: dict) -> None:
    """One listed file: a regular file inside the bundle with the manifest's size and sha256 (the hash from the
    cache when the file's stat is unchanged; new hashes go to ``fresh``)."""
    name = e["file"]
    full = os.path.realpath(bundle / name)
    root = os.path.realpath(bundle)
    if os.path.commonpath([root, full]) != root:
        raise _mismatch(bundle, name, f"the path resolves outside the bundle, to {full}")
    try:
        st = os.stat(full)
    except FileNotFoundError:
        raise _mismatch(bundle, name, "missing: listed in the manifest, not in the bundle") from None
    except OSError as err:
        raise _mismatch(bundle, name, f"cannot be read: {err.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _mismatch(bundle, name, "not a regular file")
    if st.st_size != e["bytes"]:
        raise _mismatch(bundle, name, f"{st.st_size} bytes, the manifest says {e['bytes']}: truncated or changed")
    hit = cache.get(full)
    if hit and hit["stat"] == _key(st):
        digest = hit["sha256"]
    else:
        try:
            digest = filefacts.sha256(Path(full))
            after = os.stat(full)
        except OSError as err:
            raise _mismatch(bundle, name, f"cannot be read: {err.strerror}") from None
        if _key(after) == _key(st) and time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            fresh[full] = {"stat": _key(st), "sha256": digest}
    if digest != e["sha256"]:
        raise _mismatch(bundle, name, "sha256 differs: changed or corrupt")


def check_artifact(bundle: Path, artifact: dict, manifest: dict | None = None) -> None:
    """Refuse (InputError) to load ``artifact`` of ``bundle`` unless every one of its files and the tokenizer
    files have the manifest's size and sha256. ``manifest``: the bundle's manifest if already loaded."""
    bundle = Path(bundle)
    m = manifest if manifest is not None else read_manifest(bundle)
    entries = [artifact, *artifact.get("files", []), *m["tokenizer"]["files"]]
    cache, fresh = _load_cache(), {}
    try:
        for e in entries:
            _check_file(bundle, e, cache, fresh)
    finally:
        if fresh:
            _save_cache(fresh)
