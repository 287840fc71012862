"""File facts for manifests: a file's sha256 and its manifest entry (name, bytes, sha256).

Below both the backends (which list the files they write) and the bundle (which checks them before loading and in
``verify``): every hash edgeslm takes goes through :func:`sha256`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_entry(folder: Path, name: str) -> dict:
    p = folder / name
    return {"file": name, "bytes": p.stat().st_size, "sha256": sha256(p)}
