"""The plan of one target: which (backend, recipe) pairs to build, from the target file, ``--backend`` and
``--recipe``; refused with one InputError before any heavy work."""

from __future__ import annotations

from typing import Callable

from edgeslm.backends import backend_names, get_backend
from edgeslm.errors import InputError
from edgeslm.progress import Note
from edgeslm.quant.recipes import AUTO, canonical, get_recipe
from edgeslm.target import Target

Status = Callable[[str], None]
Recipes = str | dict | tuple | list | None  # "R", {backend: R}, or ("R", "backend=R", ...) as --recipe repeats


def split_recipes(recipe: Recipes) -> tuple[list[str], dict[str, str]]:
    """``recipe`` as (bare recipes, {backend: recipe}), names canonical: a bare ``R`` applies to every chosen
    backend that supports it, ``backend=R`` to that backend only."""
    if recipe is None:
        return [], {}
    if isinstance(recipe, dict):
        return [], {b: canonical(r) for b, r in recipe.items()}
    bare: list[str] = []
    per: dict[str, str] = {}
    for item in [recipe] if isinstance(recipe, str) else recipe:
        backend, eq, name = item.rpartition("=")
        if not name.strip() or (eq and not backend.strip()):
            raise InputError(f"--recipe {item!r} names no {'recipe' if not name.strip() else 'backend'}",
                             f"write --recipe RECIPE or --recipe BACKEND=RECIPE (backends: {', '.join(backend_names())})")
        if not eq:
            bare.append(canonical(name))
        elif per.get(backend, canonical(name)) != canonical(name):
            raise InputError(f"--recipe names two recipes for the {backend} backend ({per[backend]}, {name})",
                             f"pass --recipe {backend}=RECIPE once")
        else:
            per[backend] = canonical(name)
    return list(dict.fromkeys(bare)), per


def plan_target(tgt: Target, backends, recipe: Recipes, group_size, status: Status = lambda msg: None) \
        -> list[tuple[str, str]]:
    """(backend, recipe) pairs to build, checked before any heavy work.

    Each chosen backend takes its ``backend=R`` recipe if given, else a bare recipe it supports, else the
    target's. A bare recipe no chosen backend supports, or ``backend=R`` for a backend not being built or a
    recipe it lacks, is an error listing the backends and their recipes."""
    chosen = tuple(backends or tgt.backends)
    for b in chosen:
        if b not in backend_names():
            raise InputError(f"unknown backend {b!r}", f"supported backends are {', '.join(backend_names())}")
    bare, per = split_recipes(recipe)
    for r in [*bare, *per.values()]:
        if r != AUTO:
            get_recipe(r, group_size)
    offered = "; ".join(f"{b} supports {', '.join(_offers(b))}" for b in chosen)
    _check_per_backend(tgt, chosen, per, offered)
    takers = _bare_takers(chosen, bare, per, offered)
    pairs = []
    for b in chosen:
        r = per.get(b) or takers.get(b) or canonical(tgt.recipe_for(b))
        supported = _offers(b)
        if r != AUTO:
            get_recipe(r, group_size)
        if r not in supported:
            raise InputError(f"recipe {r!r} is not available for the {b} backend",
                             f"{b} supports {', '.join(supported)}")
        pairs.append((b, r))
    kept = [f"{b} keeps the target's {r}" for b, r in pairs if bare and b not in per and b not in takers]
    if kept:
        status(Note(f"target {tgt.name}: --recipe {', '.join(bare)} applies to "
                    f"{', '.join(b for b in chosen if b in takers) or 'no backend'}; {', '.join(kept)}"))
    return pairs


def _check_per_backend(tgt: Target, chosen: tuple[str, ...], per: dict[str, str], offered: str) -> None:
    """Each ``backend=R`` names a backend being built and a recipe it has."""
    for b, r in per.items():
        if b not in chosen:
            raise InputError(f"--recipe {b}={r}: the {b} backend is not being built (target {tgt.name} builds "
                             f"{', '.join(chosen)})", f"name one of them ({offered})")
        if r not in _offers(b):
            raise InputError(f"recipe {r!r} is not available for the {b} backend",
                             f"{b} supports {', '.join(_offers(b))}")


def _bare_takers(chosen: tuple[str, ...], bare: list[str], per: dict[str, str], offered: str) -> dict[str, str]:
    """{backend: bare recipe} for the chosen backends without ``backend=R`` that support a bare recipe; a bare
    recipe no chosen backend supports, or two that apply to one backend, is refused."""
    takers: dict[str, str] = {}
    for r in bare:
        takes = [b for b in chosen if b not in per and r in _offers(b)]
        if not takes and not any(r in _offers(b) for b in chosen):
            raise InputError(f"recipe {r!r} is not available for the {' or '.join(chosen)} backend"
                             f"{'s' if len(chosen) > 1 else ''} being built",
                             f"pass a recipe one of them supports ({offered}), or choose backends with --backend")
        for b in takes:
            if b in takers:
                raise InputError(f"recipes {takers[b]!r} and {r!r} both apply to the {b} backend",
                                 f"pass --recipe {b}=RECIPE to choose")
            takers[b] = r
    return takers


def _offers(backend: str) -> tuple[str, ...]:
    """The recipe names ``backend`` takes: its recipes, and ``auto`` where it has a search ladder."""
    b = get_backend(backend)
    return (*b.recipes, AUTO) if b.search else b.recipes


def candidates(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (backend, recipe) pairs a plan may build: ``auto`` stands for each recipe of the backend's search."""
    return [(b, c) for b, r in pairs for c in (get_backend(b).search if r == AUTO else (r,))]
