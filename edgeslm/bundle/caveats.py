"""What ``run`` and ``bench`` say before running an artifact the export did not clear: read from the manifest
(the bundle's ``status``, the artifact's ``parity`` and per-stage ``validation``), as the demo apps read it.
``strict`` turns the warning into a refusal (exit 1), before anything runs."""

from __future__ import annotations

from typing import Callable, Iterable

from edgeslm.errors import GateFailed
from edgeslm.records import Caveat, Status, artifact_name

NOT_RUN_PREFIX = Status.NOT_RUN.describe("")  # "not run: " before the reason


def _stages(entry: dict) -> dict[str, Status]:
    """The artifact's ``validation`` (stage → summary words) as statuses; words no edgeslm writes are left out
    (the published schema leaves that object open)."""
    stages = entry.get("validation")
    out = {}
    for stage, words in (stages.items() if isinstance(stages, dict) else ()):
        try:
            out[stage] = Status.of_description(words)
        except (ValueError, AttributeError):
            continue
    return out


def caveat(manifest: dict, entry: dict) -> Caveat | None:
    """Why ``entry`` (one of ``manifest``'s artifacts) was not cleared at export, or None when it was."""
    stages = _stages(entry)
    failed = tuple(s for s, status in stages.items() if status is Status.FAILED)
    if not failed and entry.get("parity") == Status.FAILED.parity_word:
        failed = ("parity",)  # failed, though no stage summary says which (parity.md does)
    not_run = {s: entry["validation"][s].removeprefix(NOT_RUN_PREFIX) for s, status in stages.items()
               if status is Status.NOT_RUN}
    if not not_run and entry.get("parity") == Status.NOT_RUN.parity_word:
        not_run = {"runtime": "parity.md says why"}
    found = Caveat(artifact_name(entry), failed, not_run, manifest.get("status") == Status.FAILED.value)
    return found if found.failed or found.not_run_stages else None


def clear(manifest: dict, entries: Iterable[dict], strict: bool = False,
          warn: Callable[[str], None] = lambda msg: None) -> list[Caveat]:
    """The caveats of the artifacts about to run, each passed to ``warn``; with ``strict`` the first one is
    raised instead (GateFailed, exit 1) so that nothing runs."""
    found = [c for c in (caveat(manifest, e) for e in entries) if c is not None]
    if strict and found:
        more = f" (and {len(found) - 1} more artifact{'s' if len(found) > 2 else ''})" if len(found) > 1 else ""
        raise GateFailed(f"refused under --strict: {found[0].message()}{more}",
                         "export it again so that every stage runs and passes (parity.md says what failed and "
                         "where a stage runs), or leave out --strict")
    for c in found:
        warn(c.message())
    return found
