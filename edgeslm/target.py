"""Targets are data: ``edgeslm/targets/*.toml`` name the backends, default recipe, context length and gates.

Files are parsed into frozen dataclasses; an unknown key is an error that lists the supported keys, so a typo
never silently turns a gate off.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeslm.backends import backend_names, get_backend, option_sections
from edgeslm.datafiles import builtin, find, read_toml
from edgeslm.errors import InputError
from edgeslm.gates import Thresholds, parse_gate_tables
from edgeslm.latency.devices import builtin_devices, load_device
from edgeslm.quant.recipes import is_group_size
from edgeslm.toml_kit import bad, number, reject_unknown, suggest, text, whole


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    backends: tuple[str, ...]
    recipe: str | dict  # one recipe, or {backend: recipe}
    context_length: int
    group_size: int | None = None
    device: str | None = None
    gates: dict = field(default_factory=dict)  # {"reauthoring": Thresholds, recipe: {stage: Thresholds}}
    # each backend's [section] of options, parsed by the backend (its option_section / parse_options)
    options: dict = field(default_factory=dict)
    latency: dict = field(default_factory=dict)  # budgets on the device prediction, + prompt_len / gen_len
    path: Path | None = None

    def recipe_for(self, backend: str) -> str:
        if isinstance(self.recipe, str):
            return self.recipe
        if backend not in self.recipe:
            raise InputError(f"target {self.name} names no recipe for backend {backend}",
                             f"add {backend} = \"...\" to its [recipe] table or pass --recipe")
        return self.recipe[backend]

    def thresholds(self, recipe: str, stage: str) -> Thresholds | None:
        if stage == "reauthoring":
            return self.gates.get("reauthoring")
        return self.gates.get(recipe, {}).get(stage)


_FIELDS = {f.name for f in fields(Target)} - {"path", "options"}


def _top_keys() -> set[str]:
    return _FIELDS | set(option_sections())


def _reject_unknown(table: dict, allowed: set[str], where: str, path: Path) -> None:
    reject_unknown(table, allowed, f"{where} of target file {path}")


def _bad(path: Path, key: str, want: str, got, example: str) -> InputError:
    return bad(key, f"target file {path}", want, got, example)


def _text(data: dict, key: str, path: Path, example: str, empty_ok: bool = True) -> str | None:
    v = data.get(key)
    return None if v is None else text(v, key, f"target file {path}", example, empty_ok)


def _backends(v, path: Path) -> tuple[str, ...]:
    BACKENDS = backend_names()
    example = f"backends = {list(BACKENDS[:2])}".replace("'", '"')
    if not isinstance(v, list) or not v:
        raise _bad(path, "backends", "a non-empty list of backend names", v, example)
    for b in v:
        if not isinstance(b, str):
            raise _bad(path, "backends", "a list of backend names (strings)", b, example)
        if b not in BACKENDS:
            raise InputError(f"unknown backend {b!r} in backends of target file {path}",
                             f"{suggest(b, BACKENDS)}supported backends are {', '.join(BACKENDS)}")
    dup = next((b for i, b in enumerate(v) if b in v[:i]), None)
    if dup is not None:
        raise InputError(f"backend {dup!r} is listed twice in backends of target file {path}", "list it once")
    return tuple(v)


def _recipe(v, path: Path) -> str | dict:
    BACKENDS = backend_names()
    (b0, r0), (b1, r1) = [(b, get_backend(b).recipes[-1]) for b in BACKENDS[:2]]
    example = f'recipe = "{r1}", or recipe = {{ {b0} = "{r0}", {b1} = "{r1}" }}'
    if isinstance(v, str):
        if not v.strip():
            raise _bad(path, "recipe", "a recipe name", v, example)
        return v
    if not isinstance(v, dict) or not v:
        raise _bad(path, "recipe", "a recipe name or a table {backend = recipe}", v, example)
    for backend, r in v.items():
        if backend not in BACKENDS:
            raise InputError(f"unknown backend {backend!r} in the recipe table of target file {path}",
                             f"{suggest(backend, BACKENDS)}supported backends are {', '.join(BACKENDS)}")
        if not isinstance(r, str) or not r.strip():
            raise _bad(path, f"recipe.{backend}", "a recipe name (a string)", r,
                       f'{backend} = "{get_backend(backend).recipes[-1]}"')
    return dict(v)


def _context_length(v, path: Path) -> int:
    # Only a floor here; whether the model supports this many positions is checked against the model itself.
    return whole(v, "context_length", f"target file {path}", 1, None, "a whole number of tokens >= 1",
                 "context_length = 512")


def _group_size(v, path: Path) -> int | None:
    if v is None:
        return None
    if not is_group_size(v):
        raise _bad(path, "group_size", "a power of two >= 16 (the 4-bit block size)", v, "group_size = 32")
    return v


_LATENCY_LENS = ("prompt_len", "gen_len")
_LATENCY_BUDGETS = ("max_ttft_ms", "min_prefill_tok_s", "min_decode_tok_s", "max_memory_mb")
_LATENCY_KEYS = {*_LATENCY_LENS, *_LATENCY_BUDGETS}


def _latency(table, path: Path) -> dict:
    if not isinstance(table, dict):
        raise _bad(path, "latency", "a table ([latency])", table, "[latency] with min_decode_tok_s = 20")
    _reject_unknown(table, _LATENCY_KEYS, "latency", path)
    out: dict = {}
    for k, v in table.items():
        if k in _LATENCY_LENS:
            out[k] = whole(v, f"latency.{k}", f"target file {path}", 1, None, "a whole number of tokens >= 1",
                           f"{k} = 64")
        else:
            out[k] = number(v, f"latency.{k}", f"target file {path}", 0.0, None, "a finite number > 0", f"{k} = 20")
    return out


def parse_target(path: Path) -> Target:
    data = read_toml(path, "target file", "see edgeslm/targets/android.toml")
    _reject_unknown(data, _top_keys(), "the top level", path)
    missing = sorted({"name", "backends", "recipe", "context_length"} - set(data))
    if missing:
        raise InputError(f"target file {path} lacks {', '.join(missing)}", "add them (see edgeslm/targets/android.toml)")
    name = _text(data, "name", path, 'name = "my-phone"', empty_ok=False)
    description = _text(data, "description", path, 'description = "what it runs on"') or ""
    device = _text(data, "device", path, 'device = "snapdragon-8-gen-3"', empty_ok=False)
    backends = _backends(data["backends"], path)
    recipe = _recipe(data["recipe"], path)
    context_length = _context_length(data["context_length"], path)
    group_size = _group_size(data.get("group_size"), path)
    gates = parse_gate_tables(data.get("gates", {}), path)
    return Target(
        name=name,
        description=description,
        backends=backends,
        recipe=recipe,
        context_length=context_length,
        group_size=group_size,
        device=device,
        gates=gates,
        options={section: backend.parse_options(data.get(section, {}), path)
                 for section, backend in option_sections().items()},
        latency=_latency(data.get("latency", {}), path),
        path=path,
    )


def check_target_device(tgt: Target) -> None:
    """Refuse a target whose ``device`` profile cannot be loaded (unknown name, missing or invalid file) before
    any export work, naming the target file and the built-in devices."""
    if tgt.device is None:
        return
    where = tgt.path or tgt.name
    try:
        load_device(tgt.device)
    except InputError as e:
        known = sorted(builtin_devices())
        if e.problem.startswith("unknown device"):
            raise InputError(f"target {where} names device {tgt.device!r}, which is not a known device profile",
                             f"{suggest(tgt.device, known)}built-in devices are {', '.join(known)}; or set device "
                             "to the path of a device .toml") from None
        raise InputError(f"target {where} names device {tgt.device!r}, which cannot be used: {e.problem}",
                         e.hint or f"built-in devices are {', '.join(known)}") from None


def check_gate_coverage(tgt: Target, pairs: list[tuple[str, str]]) -> None:
    """Every gated stage of every artifact ``tgt`` builds must resolve to a gate (the target's, or the backend's
    own for its internal checks), before any heavy work: an ungated stage would otherwise pass silently."""
    where = tgt.path or tgt.name
    if tgt.gates.get("reauthoring") is None:
        raise InputError(f"target {tgt.name} ({where}) has no [gates.reauthoring] table",
                         "add one (e.g. max_abs_logit_diff = 1e-3), or informational = true to report it only")
    for backend, recipe in pairs:
        for stage, default in get_backend(backend).gated_stages(recipe).items():
            if tgt.thresholds(recipe, stage) is None and default is None:
                raise InputError(
                    f"target {tgt.name} ({where}) has no gate for the {stage} stage of recipe {recipe} ({backend})",
                    f"add [gates.{recipe}.{stage}] with bounds (e.g. min_top1, max_kl_mean), or informational = "
                    "true to report the stage without gating it")


def builtin_targets() -> dict[str, Path]:
    return builtin("targets")


def load_target(name_or_path: str | Path) -> Target:
    """A built-in target by name, or a target file by path."""
    return parse_target(find(name_or_path, "targets", "target"))
