"""File facts for manifests, and the atomic write of a bundle folder."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgeslm.errors import InputError


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(folder: Path, name: str) -> dict:
    p = folder / name
    return {"file": name, "bytes": p.stat().st_size, "sha256": sha256(p)}


def check_output(out: Path, force: bool) -> None:
    if out.exists() and not force:
        raise InputError(f"output {out} already exists", "pass --force to replace it, or choose another -o folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder", "choose another -o path")


@contextmanager
def atomic_folder(out: Path, force: bool):
    """Yield a temp folder beside ``out``; on success it replaces ``out`` in one rename, on error it vanishes."""
    check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{tmp.name.rsplit('.', 1)[-1]}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
