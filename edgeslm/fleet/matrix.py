"""A fleet's jobs in the form a CI engine's matrix takes.

GitHub Actions: ``{"include": [{job, model, target, recipe, cache, command}, ...]}`` on one line, for
``echo "matrix=$(edgeslm matrix fleet.toml)" >> "$GITHUB_OUTPUT"`` and ``strategy.matrix: ${{
fromJSON(needs.plan.outputs.matrix) }}``; a job runs ``${{ matrix.command }}``.

GitLab CI: a hidden job ``.edgeslm-matrix`` whose ``parallel:matrix`` lists ``EDGESLM_JOB`` and
``EDGESLM_CACHE`` per job, appended to the child pipeline that extends it. GitLab names a matrix job after all
its values and drops a pipeline whose job names exceed 255 characters, so the command line is not a value there:
each job reads it with ``edgeslm matrix fleet.toml --job "$EDGESLM_JOB"``.

``cache`` names what a job reads from the Hugging Face Hub (the model's name): every job of one model shares
one cache entry.
"""

from __future__ import annotations

import json
import re

from edgeslm.errors import InputError
from edgeslm.fleet.spec import Fleet

FORMATS = ("github", "gitlab")
# The engines' own ceilings: jobs per matrix.
MAX_JOBS = {"github": 256, "gitlab": 200}
ENGINE = {"github": "GitHub Actions matrix", "gitlab": "GitLab parallel:matrix"}
GITLAB_TEMPLATE = ".edgeslm-matrix"


def _check_size(fleet: Fleet, fmt: str) -> None:
    if len(fleet.jobs) > MAX_JOBS[fmt]:
        raise InputError(f"fleet file {fleet.path} makes {len(fleet.jobs)} jobs, but a {ENGINE[fmt]} runs at "
                         f"most {MAX_JOBS[fmt]}", "split the fleet into several files, one matrix each")


def github(fleet: Fleet) -> dict:
    _check_size(fleet, "github")
    return {"include": [{"job": j.name, "model": j.model.source, "target": j.target, "recipe": j.recipe,
                         "cache": j.model.name, "command": j.command} for j in fleet.jobs]}


def gitlab(fleet: Fleet) -> dict:
    _check_size(fleet, "gitlab")
    return {GITLAB_TEMPLATE: {"parallel": {"matrix": [{"EDGESLM_JOB": j.name, "EDGESLM_CACHE": j.model.name}
                                                      for j in fleet.jobs]}}}


def matrix(fleet: Fleet, fmt: str = "github") -> dict:
    if fmt not in FORMATS:
        raise InputError(f"unknown matrix format {fmt!r}", f"formats are {', '.join(FORMATS)}")
    return github(fleet) if fmt == "github" else gitlab(fleet)


def _yaml(value, indent: int = 0) -> list[str]:
    """Block-style YAML lines for dicts and lists; scalars JSON-quoted (valid YAML flow scalars)."""
    pad = " " * indent
    if not isinstance(value, (dict, list)):
        return [f"{pad}{json.dumps(value)}"]
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = k if re.fullmatch(r"[.\w-]+", k) else json.dumps(k)
            inner = _yaml(v, indent + 2)
            out += [f"{pad}{key}: {inner[0].lstrip()}"] if not isinstance(v, (dict, list)) else \
                [f"{pad}{key}:", *inner]
        return out
    for item in value:
        lines = _yaml(item, indent + 2)
        out.append(f"{pad}- {lines[0].lstrip()}")
        out += lines[1:]
    return out


def dump(doc: dict, fmt: str = "github") -> str:
    """The matrix as text: GitHub's JSON on one line (a ``$GITHUB_OUTPUT`` value), GitLab's as YAML that can be
    appended to a pipeline file."""
    return json.dumps(doc) if fmt == "github" else "\n".join(_yaml(doc))
