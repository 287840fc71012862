"""The atomic write of a bundle folder, and what may be written over (file facts: :mod:`edgeslm.filefacts`)."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from edgeslm.errors import InputError, Interrupted


def _kind(folder: Path) -> str | None:
    """What edgeslm wrote ``folder`` as: "edgeslm-bundle" (manifest.json) or "edgeslm-report" (summary.json)."""
    for name in ("manifest.json", "summary.json"):
        try:
            kind = json.loads((folder / name).read_text()).get("kind")
        except (OSError, ValueError, AttributeError):
            continue
        if kind in ("edgeslm-bundle", "edgeslm-report"):
            return kind
    return None


def replaceable(folder: Path) -> bool:
    """``--force`` may replace only what edgeslm wrote (a bundle or a reports folder) or an empty folder:
    never a user's own files."""
    return _kind(folder) is not None or not any(folder.iterdir())


def check_output(out: Path, force: bool, what: str = "output") -> None:
    """Refuse, before any work, an output path that cannot or must not be written: the current folder or one
    of its parents, an existing path without ``force``, with ``force`` anything edgeslm did not write, a path
    under a file, or a folder this user cannot write to."""
    resolved = out.expanduser().resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        raise InputError(f"{what} {out} is the current folder, your home folder or one of their parents",
                         "name a new folder for it, e.g. -o out/NAME")
    if out.exists() or out.is_symlink():
        if out.is_symlink() or not out.is_dir():
            raise InputError(f"{what} {out} exists and is not a folder", "choose another path")
        if not force:
            raise InputError(f"{what} {out} already exists", "pass --force to replace it, or choose another path")
        if not replaceable(out):
            raise InputError(f"{what} {out} exists and was not written by edgeslm (no bundle manifest.json or "
                             "report summary.json in it); --force replaces only edgeslm's own folders",
                             "choose another path, or move that folder away yourself")
    parent = resolved.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"{what} {out} lies under {parent}, which is a file", "choose another path")
    try:  # permissions, read-only and special file systems: only trying tells
        Path(tempfile.mkdtemp(prefix=".edgeslm-probe.", dir=parent)).rmdir()
    except OSError as e:
        raise InputError(f"cannot write {what} {out}: {parent} is not writable ({e.strerror})",
                         "choose another path") from None


def _publishable(folder: Path) -> None:
    """Files 0644, folders 0755 whatever the umask: a bundle is made to be copied and read by another user (an
    app after ``adb push``); mkdtemp makes 0700 and some writers 0600, and ``verify`` checks it."""
    for p in [folder, *folder.rglob("*")]:
        if not p.is_symlink():
            p.chmod(0o755 if p.is_dir() else 0o644)


def _old_copy(out: Path, suffix: str) -> Path:
    """Where ``out`` is moved while its replacement is renamed in, until it is removed."""
    return out.with_name(f".{out.name}.old-{suffix}")


def stale_copies(out: Path) -> list[Path]:
    """Folders ``.NAME.old-XXXXXXXX`` beside ``out``: earlier copies of ``out`` whose removal, after a replacement
    had finished, was interrupted (the suffix is mkdtemp's: 8 characters of ``[a-z0-9_]``)."""
    pattern = re.compile(re.escape(_old_copy(out, "").name) + r"[a-z0-9_]{8}")
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir()
                  if pattern.fullmatch(p.name) and p.is_dir() and not p.is_symlink())


@contextmanager
def atomic_folder(out: Path, force: bool, status: Callable[[str], None] = lambda msg: None):
    """Yield a temp folder beside ``out``; on success it replaces ``out`` in one rename, on any error or
    interrupt it vanishes and ``out`` is as it was. A replacement also removes the copies of ``out`` an earlier
    replacement was interrupted removing (:func:`stale_copies`), saying so through ``status``."""
    check_output(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old = None
    try:
        yield tmp
        _publishable(tmp)
        if out.exists():
            check_output(out, force)  # it may have appeared while we worked
            old = _old_copy(out, tmp.name.rsplit('.', 1)[-1])
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        if old is not None and not out.exists():
            old.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        try:
            shutil.rmtree(old, ignore_errors=True)
            for stale in stale_copies(out):
                shutil.rmtree(stale, ignore_errors=True)
                status(f"removed {stale}: an earlier copy of {out.name} left by an interrupted replacement")
        except Interrupted as e:  # out is already the new folder: say so, not "nothing was written"
            raise Interrupted(e.signum, f"{out} is written; what is left of its previous copy ({old.name}) is "
                                        "removed by the next replacement") from None
