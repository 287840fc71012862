"""The fleet file: which models go to which targets with which recipes, read strictly into frozen records, and
the jobs it makes.

    targets = ["android", "jetson-orin"]       # built-in names or target files
    recipes = ["8da4w-asym", "int4"]            # optional: one job per recipe (else each target's own)
    bench = false                               # optional: time the artifacts on the runner [default: true]
    context_length = 512                        # optional

    [[models]]
    hub = "HuggingFaceTB/SmolLM2-135M"          # a Hub id, or path = "a local folder or .gguf file"
    revision = "main"                           # optional (Hub ids); gguf_file = "x.gguf" too
    adapters = ["my-org/support-lora"]          # optional: LoRA adapters (Hub ids or folders)
    draft = "HuggingFaceTB/SmolLM2-135M"        # optional: a speculative-decoding draft
    name = "smollm2"                            # optional: the model's part of its job names
    targets = ["android"]                       # optional: this model's own targets (or recipes)

Each (model, target, recipe) is one job: ``edgeslm export … -o out/<job> --report-dir reports/<job>``, named
``<model>-<target>[-<recipe>]`` (lowercase letters, digits, ``.``, ``_``, ``-``: safe as a folder, an artifact
and a CI job name) and unique, or the file is refused. Paths are relative to the folder the jobs run in (the
repository root in CI). Anything unknown or mistyped is one InputError naming the key and the fix.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from edgeslm.backends import backend_names
from edgeslm.datafiles import read_toml
from edgeslm.errors import InputError
from edgeslm.quant.recipes import AUTO, get_recipe
from edgeslm.target import load_target
from edgeslm.toml_kit import bad, flag, reject_unknown, text, whole

TOP_KEYS = ("targets", "recipes", "bench", "context_length", "models")
MODEL_KEYS = ("name", "hub", "path", "revision", "gguf_file", "adapters", "draft", "targets", "recipes")
OUT, REPORTS = "out", "reports"  # each job writes out/<job> and reports/<job>
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
HINT = 'a fleet file holds targets = [...] and [[models]] tables with hub = "org/name" or path = "folder"'


def slug(text: str) -> str:
    """``text`` as a job-name part: lowercase, runs of anything but letters, digits, ``.``, ``_`` as one ``-``."""
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-._")


@dataclass(frozen=True)
class FleetModel:
    """One ``[[models]]`` table: ``source`` is the export's MODEL argument (a Hub id or a path)."""

    name: str
    source: str
    targets: tuple[str, ...]
    recipes: tuple[str | None, ...] = (None,)  # None: the target's own
    revision: str | None = None
    gguf_file: str | None = None
    adapters: tuple[str, ...] = ()
    draft: str | None = None


@dataclass(frozen=True)
class Job:
    """One export of one model to one target (with one recipe, or the target's own)."""

    name: str
    model: FleetModel
    target: str
    recipe: str | None
    bench: bool = True
    context_length: int | None = None

    @property
    def argv(self) -> tuple[str, ...]:
        m = self.model
        args = ["edgeslm", "export", m.source, "--target", self.target]
        args += ["--recipe", self.recipe] if self.recipe else []
        args += ["--revision", m.revision] if m.revision else []
        args += ["--gguf-file", m.gguf_file] if m.gguf_file else []
        for a in m.adapters:
            args += ["--adapter", a]
        args += ["--draft", m.draft] if m.draft else []
        args += ["--context-length", str(self.context_length)] if self.context_length else []
        args += [] if self.bench else ["--no-bench"]
        return (*args, "-o", f"{OUT}/{self.name}", "--report-dir", f"{REPORTS}/{self.name}")

    @property
    def command(self) -> str:
        """The job's command line, quoted for a POSIX shell (what a CI step runs)."""
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Fleet:
    """A fleet file's models and the jobs they make, in file order (model, then target, then recipe)."""

    path: Path
    models: tuple[FleetModel, ...]
    jobs: tuple[Job, ...]

    def job(self, name: str) -> Job:
        found = next((j for j in self.jobs if j.name == name), None)
        if found is None:
            raise InputError(f"fleet file {self.path} has no job {name!r}",
                             f"its jobs are {', '.join(j.name for j in self.jobs)}")
        return found


def _strings(v, key: str, where: str, example: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(s, str) and s.strip() for s in v):
        raise bad(key, where, "a non-empty list of non-empty strings", v, example)
    return tuple(v)


def _target_stem(target: str, where: str) -> str:
    """The target's part of a job name (its bundle folder's name: a built-in's name or a target file's stem),
    after checking the target loads, so a misspelt target fails the plan instead of every job."""
    try:
        load_target(target)
    except InputError as e:
        raise InputError(f"{where}: {e.problem}", e.hint) from None
    return slug(Path(target).stem)


def _check_recipe(recipe: str, where: str) -> None:
    """``RECIPE`` or ``BACKEND=RECIPE`` (as ``--recipe`` takes it) naming a backend and a recipe that exist."""
    backend, eq, name = recipe.rpartition("=")
    if eq and backend not in backend_names():
        raise InputError(f"recipe {recipe!r} in {where} names an unknown backend {backend!r}",
                         f"supported backends are {', '.join(backend_names())}")
    if name != AUTO:
        try:
            get_recipe(name)
        except InputError as e:
            raise InputError(f"{where}: {e.problem}", e.hint) from None


def _check_recipes(recipes: tuple[str, ...], where: str) -> None:
    for r in recipes:
        _check_recipe(r, where)


EXAMPLES = {"targets": 'targets = ["android"]', "recipes": 'recipes = ["int4"]'}


def _axis(table: dict, key: str, where: str, inherited):
    """``targets`` or ``recipes`` in ``table`` (the fleet's, or a model's own), else ``inherited``."""
    return _strings(table[key], key, where, EXAMPLES[key]) if key in table else inherited


def _source(t: dict, where: str) -> str:
    if ("hub" in t) == ("path" in t):
        raise InputError(f"{where} must name its model with exactly one of hub or path",
                         'write hub = "org/name" (a Hub id) or path = "folder" (a local folder or .gguf file)')
    if "hub" in t:
        hub = text(t["hub"], "hub", where, 'hub = "HuggingFaceTB/SmolLM2-135M"', empty_ok=False)
        if not _HUB_ID.fullmatch(hub):
            raise bad("hub", where, "a Hub id like org/name", hub, 'hub = "HuggingFaceTB/SmolLM2-135M"')
        return hub
    for key in ("revision", "gguf_file"):
        if key in t:
            raise InputError(f"{key} in {where} applies to Hub models, but it names a path",
                             f"leave {key} out, or name the model with hub = \"org/name\"")
    return text(t["path"], "path", where, 'path = "models/my-model"', empty_ok=False)


def _model(t, i: int, path: Path, targets, recipes) -> FleetModel:
    where = f"[[models]] #{i + 1} of fleet file {path}"
    if not isinstance(t, dict):
        raise InputError(f"models in fleet file {path} must be [[models]] tables, not {type(t).__name__}s", HINT)
    reject_unknown(t, MODEL_KEYS, where)
    source = _source(t, where)
    opt = {k: text(t[k], k, where, f'{k} = "..."', empty_ok=False) for k in ("revision", "gguf_file", "draft")
           if k in t}
    if "gguf_file" in opt and not opt["gguf_file"].lower().endswith(".gguf"):
        raise bad("gguf_file", where, "a .gguf file name", opt["gguf_file"], 'gguf_file = "model-Q8_0.gguf"')
    adapters = _strings(t["adapters"], "adapters", where, 'adapters = ["my-adapter"]') if "adapters" in t else ()
    if "name" in t:
        name = text(t["name"], "name", where, 'name = "smollm2-135m"')
        if not _NAME.fullmatch(name):
            raise bad("name", where, "lowercase letters, digits, '.', '_' or '-' (a job-name part)", name,
                      'name = "smollm2-135m"')
    else:  # the model's own name, and its adapters' (two variants of one base then differ)
        stem = Path(opt.get("gguf_file") or source).name.removesuffix(".gguf")
        name = "-".join(slug(p) for p in (stem, *(Path(a).name for a in adapters)))
        if not _NAME.fullmatch(name):
            raise InputError(f"{where} gets no usable job name from {source!r}", 'give it one: name = "my-model"')
    own_targets = _axis(t, "targets", where, targets)
    if own_targets is None:
        raise InputError(f"{where} has no targets, and the fleet file names none",
                         'add targets = ["android", ...] at the top of the file or in this table')
    own_recipes = _axis(t, "recipes", where, recipes)
    if "recipes" in t:
        _check_recipes(own_recipes, where)
    return FleetModel(name, source, own_targets, own_recipes, opt.get("revision"), opt.get("gguf_file"),
                      adapters, opt.get("draft"))


def _unique(items, what: str, where: str, fix: str) -> None:
    """Refuse two of ``items`` ((key, description) pairs) with the same key."""
    seen: dict[str, str] = {}
    for key, desc in items:
        if key in seen:
            raise InputError(f"{seen[key]} and {desc} in {where} both make {what} {key!r}", fix)
        seen[key] = desc


def _jobs(models: tuple[FleetModel, ...], bench: bool, ctx: int | None, path: Path) -> tuple[Job, ...]:
    where = f"fleet file {path}"
    _unique([(m.name, f"[[models]] #{i + 1} ({m.source})") for i, m in enumerate(models)], "the job-name part",
            where, "give one of them its own name = \"...\"")
    jobs = []
    stem_of: dict[str, str] = {}  # each target loaded once, however many models name it
    for m in models:
        for t in m.targets:
            if t not in stem_of:
                stem_of[t] = _target_stem(t, where)
        stems = [(stem_of[t], t) for t in m.targets]
        _unique([(s, f"target {t!r}") for s, t in stems], "the job-name part", where,
                "name each target once (target files are named by their file's stem)")
        parts = [(slug(r) if r else "", r) for r in m.recipes]
        _unique([(p, f"recipe {r!r}") for p, r in parts], "the job-name part", where, "name each recipe once")
        for stem, target in stems:
            for part, recipe in parts:
                name = "-".join(filter(None, (m.name, stem, part)))
                jobs.append(Job(name, m, target, recipe, bench, ctx))
    _unique([(j.name, f"{j.model.source} → {j.target}" + (f" ({j.recipe})" if j.recipe else "")) for j in jobs],
            "the job name", where, "give one of the models its own name = \"...\"")
    return tuple(jobs)


def load_fleet(path: Path) -> Fleet:
    """The fleet file at ``path``, checked whole: keys, types, targets (they load), recipes (they exist), job
    names (safe and unique)."""
    path = Path(path)
    data = read_toml(path, "fleet file", HINT)
    where = f"fleet file {path}"
    reject_unknown(data, TOP_KEYS, where)
    targets = _axis(data, "targets", where, None)
    recipes = _axis(data, "recipes", where, (None,))
    if "recipes" in data:
        _check_recipes(recipes, where)
    bench = flag(data.get("bench", True), "bench", where, "bench = false")
    ctx = whole(data["context_length"], "context_length", where, 1, None, "a positive number of positions",
                "context_length = 512") if "context_length" in data else None
    tables = data.get("models")
    if not isinstance(tables, list) or not tables:
        raise InputError(f"fleet file {path} names no models", HINT)
    models = tuple(_model(t, i, path, targets, recipes) for i, t in enumerate(tables))
    return Fleet(path, models, _jobs(models, bench, ctx, path))
