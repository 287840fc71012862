"""Built-in data files (targets, device profiles) found by name, or a user's file by path, with did-you-mean."""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from edgeslm.errors import InputError


def builtin(folder: str) -> dict[str, Path]:
    """name → path of every ``*.toml`` in the package folder ``folder``."""
    files = resources.files("edgeslm").joinpath(folder)
    return {p.name[:-5]: Path(str(p)) for p in files.iterdir() if p.name.endswith(".toml")}


def find(name_or_path: str | Path, folder: str, kind: str) -> Path:
    """The file for a built-in ``kind`` (e.g. "target") by name, or the user's .toml by path."""
    name = str(name_or_path)
    if name.endswith(".toml") or "/" in name:
        if not Path(name).is_file():
            raise InputError(f"{kind} file {name} does not exist", "check the path")
        return Path(name)
    known = builtin(folder)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown {kind} {name!r}",
                         f"{hint}built-in {kind}s are {', '.join(sorted(known))}; or pass a path to a .toml file")
    return known[name]
