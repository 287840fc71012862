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
        try:
            exists = Path(name).is_file()
        except (OSError, ValueError):  # a name the file system refuses (NUL byte, too long)
            exists = False
        if not exists:
            raise InputError(f"{kind} file {name} does not exist", "check the path")
        return Path(name)
    known = builtin(folder)
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InputError(f"unknown {kind} {name!r}",
                         f"{hint}built-in {kind}s are {', '.join(sorted(known))}; or pass a path to a .toml file")
    return known[name]


def read_toml(path: Path, kind: str, hint: str) -> dict:
    """``path`` parsed as TOML; any way it cannot be (missing, a folder, not UTF-8, bad syntax, absurdly nested)
    is an ``InputError`` naming the ``kind`` of file ("target file") and ``hint`` (what a good one looks like)."""
    import tomllib

    try:
        text = Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise InputError(f"{kind} {path} is a folder, not a file", "pass the path of a .toml file") from None
    except FileNotFoundError:
        raise InputError(f"{kind} {path} does not exist", "check the path") from None
    except OSError as e:
        raise InputError(f"cannot read {kind} {path}: {e.strerror or e}",
                         "check the path and its permissions") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{kind} {path} is not UTF-8 text (byte {e.start})", "save it as UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{kind} {path} is not valid TOML ({e})", f"fix the syntax; {hint}") from None
    except RecursionError:
        raise InputError(f"{kind} {path} nests tables or arrays too deeply", hint) from None
