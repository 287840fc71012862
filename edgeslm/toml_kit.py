"""The strict-TOML kit every file parser uses (target files, device files, gate files, backends' option sections):
one wording for every message, so a user reads the same kind of error whatever file it is in.

``where`` names the place a key sits, as the message shows it: ``f"target file {path}"``, ``f"device file
{path}"``; ``key`` the key as the file writes it (``latency.gen_len``).
"""

from __future__ import annotations

import difflib
import json
import math
import re

from edgeslm.errors import InputError


def show(v) -> str:
    """A value as a message shows it: its repr, cut short (a whole table in a message helps nobody)."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def suggest(word: str, choices) -> str:
    """``did you mean 'x'? `` for the closest of ``choices`` (case-insensitive), or ""."""
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]!r}? " if close else ""


def toml_key(k: str) -> str:
    """A key as TOML writes it: bare when it can be, else quoted with escapes, so a message naming it stays on
    one line whatever the key holds."""
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k, ensure_ascii=False)


def reject_unknown(table: dict, allowed, where: str) -> None:
    """Refuse the first (sorted) key of ``table`` not in ``allowed``: "supported keys are ..."."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise InputError(f"unknown key {unknown[0]!r} in {where}", f"supported keys are {', '.join(sorted(allowed))}")


def bad(key: str, where: str, want: str, got, example: str) -> InputError:
    """The error for ``key`` in ``where`` holding ``got`` instead of ``want``, with an example to write."""
    return InputError(f"{key} in {where} must be {want}, not {show(got)}", f"write e.g. {example}")


def is_int(v) -> bool:
    """A TOML integer (not a boolean)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v) -> bool:
    """A TOML integer or float (not a boolean)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def text(v, key: str, where: str, example: str, empty_ok: bool = True) -> str:
    """``v`` as a string (non-blank unless ``empty_ok``)."""
    if not isinstance(v, str) or (not empty_ok and not v.strip()):
        raise bad(key, where, "a string" if empty_ok else "a non-empty string", v, example)
    return v


def whole(v, key: str, where: str, low: int, high: int | None, want: str, example: str) -> int:
    """``v`` as an integer in [low, high] (no upper bound when ``high`` is None)."""
    if not is_int(v) or v < low or (high is not None and v > high):
        raise bad(key, where, want, v, example)
    return v


def number(v, key: str, where: str, low: float, high: float | None, want: str, example: str,
           low_inclusive: bool = False) -> float:
    """``v`` as a finite float in (low, high] (or [low, high] with ``low_inclusive``; no upper bound when
    ``high`` is None)."""
    ok = is_number(v)
    try:
        x = float(v) if ok else math.nan
    except OverflowError:  # an integer too large for a float
        x = math.inf
    if not ok or not math.isfinite(x) or (x < low if low_inclusive else x <= low) or (high is not None and x > high):
        raise bad(key, where, want, v, example)
    return x


def flag(v, key: str, where: str, example: str) -> bool:
    """``v`` as true or false."""
    if not isinstance(v, bool):
        raise bad(key, where, "true or false", v, example)
    return v
