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
from edgeslm.gates import Thresholds, parse_gate_tables

from edgeslm.backends import BACKEND_NAMES as BACKENDS  # noqa: E402


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


def _reject_unknown(table: dict, allowed: set[str], where: str, path: Path) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise InputError(
            f"unknown key {unknown[0]!r} in {where} of target file {path}",
            f"supported keys are {', '.join(sorted(allowed))}",
        )


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
    gates = parse_gate_tables(data.get("gates", {}), path)
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


def check_gate_coverage(tgt: Target, pairs: list[tuple[str, str]]) -> None:
    """Every gated stage of every artifact ``tgt`` builds must resolve to a gate (the target's, or the backend's
    own for its internal checks), before any heavy work: an ungated stage would otherwise pass silently."""
    from edgeslm.backends import get_backend

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
