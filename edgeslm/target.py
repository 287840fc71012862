"""Targets are data: ``edgeslm/targets/*.toml`` name the backends, default recipe, context length and gates.

Files are parsed into frozen dataclasses; an unknown key is an error that lists the supported keys, so a typo
never silently turns a gate off.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeslm.datafiles import builtin, find
from edgeslm.errors import InputError
from edgeslm.parity.stages import Thresholds

from edgeslm.backends import BACKEND_NAMES as BACKENDS  # noqa: E402

STAGES = ("reauthoring", "quantization", "lowering")


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
    onnx: dict = field(default_factory=dict)  # provider_options written into genai_config.json
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


_TOP_KEYS = {f.name for f in fields(Target)} - {"path"}
_THRESHOLD_KEYS = {f.name for f in fields(Thresholds)}


def _reject_unknown(table: dict, allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r} in {where} of target file {path}",
            f"supported keys are {', '.join(sorted(allowed))}",
        )


def _thresholds(table: dict, where: str, path: Path) -> Thresholds:
    if not isinstance(table, dict):
        raise InputError(f"{where} in {path} must be a table", f"supported keys are {', '.join(sorted(_THRESHOLD_KEYS))}")
    _reject_unknown(table, _THRESHOLD_KEYS, where, path)
    return Thresholds(**{k: float(v) for k, v in table.items()})


def _onnx_options(table: dict, path: Path) -> dict:
    _reject_unknown(table, {"provider_options"}, "onnx", path)
    return dict(table)


_LATENCY_KEYS = {"prompt_len", "gen_len", "max_ttft_ms", "min_prefill_tok_s", "min_decode_tok_s", "max_memory_mb"}


def _latency(table: dict, path: Path) -> dict:
    _reject_unknown(table, _LATENCY_KEYS, "latency", path)
    return {k: (int(v) if k.endswith("_len") else float(v)) for k, v in table.items()}


def parse_target(path: Path) -> Target:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"target file {path} is not valid TOML ({e})", "fix the syntax") from None
    _reject_unknown(data, _TOP_KEYS, "the top level", path)
    missing = sorted({"name", "backends", "recipe", "context_length"} - set(data))
    if missing:
        raise InputError(f"target file {path} lacks {', '.join(missing)}", "add them (see edgeslm/targets/android.toml)")
    for b in data["backends"]:
        if b not in BACKENDS:
            raise InputError(f"unknown backend {b!r} in {path}", f"supported backends are {', '.join(BACKENDS)}")
    gates: dict = {}
    for key, table in data.get("gates", {}).items():
        if key == "reauthoring":
            gates[key] = _thresholds(table, "gates.reauthoring", path)
            continue
        _reject_unknown(table, set(STAGES) - {"reauthoring"}, f"gates.{key}", path)
        gates[key] = {stage: _thresholds(t, f"gates.{key}.{stage}", path) for stage, t in table.items()}
    return Target(
        name=data["name"],
        description=data.get("description", ""),
        backends=tuple(data["backends"]),
        recipe=data["recipe"],
        context_length=int(data["context_length"]),
        group_size=data.get("group_size"),
        device=data.get("device"),
        gates=gates,
        onnx=_onnx_options(data.get("onnx", {}), path),
        latency=_latency(data.get("latency", {}), path),
        path=path,
    )


def builtin_targets() -> dict[str, Path]:
    return builtin("targets")


def load_target(name_or_path: str | Path) -> Target:
    """A built-in target by name, or a target file by path."""
    return parse_target(find(name_or_path, "targets", "target"))
