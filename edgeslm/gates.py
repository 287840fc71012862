"""Parity gates: the bounds a stage's metrics must meet, how they are judged, and how gate tables are read.

Torch-free on purpose: ``edgeslm gate`` and ``edgeslm report`` judge JSON reports without loading a model stack.

Near-ties. A reference that barely prefers one token over another (a flat distribution, or a tie between two
synonyms) gives no evidence when a candidate picks the other one, and small models, random-weight models above
all, are full of such positions. So:

- top-1 agreement is counted only where the reference is *decisive*: its top-1 log-probability beats its
  top-2 by more than ``DECISIVE_MARGIN`` nats (0.5: p1/p2 > 1.65); positions below it are reported as near-ties;
- a greedy divergence is accepted as a tie when the reference's own log-probability of the candidate's token is
  within the gate's ``tie_margin`` of the token it chose (the numerical noise the stage tolerates: twice its
  ``max_abs_logit_diff`` bound for exact stages, else ``DECISIVE_MARGIN``);
- scale-free figures sit beside KL, which shrinks with the reference's confidence: logit SQNR (dB) and the
  perplexity rise on a fixed held-out text.

Non-finite logits (NaN or ±inf at some position, in the candidate or the reference) are a failure of their own:
the figures they would corrupt are recorded as None and the count as ``non_finite_positions`` (prompts) and
``non_finite_heldout_positions`` (held-out text); :func:`judge` then fails the stage whatever its bounds. An
informational stage (or one with no gate) stays ungated but carries the failure, so it is shown.

A gate must bound something (or say ``informational = true``: the stage is then reported, never counted as
passed), and a gate none of whose bounds applies fails, so nothing passes silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from edgeslm.errors import InputError
from edgeslm.quant.recipes import ALIASES, RECIPES
from edgeslm.toml_kit import show, suggest, toml_key

DECISIVE_MARGIN = 0.5  # nats between the reference's top-1 and top-2 for a position to count in top-1 agreement
# Stages a target file gates per recipe (``[gates.RECIPE.STAGE]``); re-authoring is gated once (``[gates.reauthoring]``).
RECIPE_STAGES = ("quantization", "lowering", "runtime_agreement")
STAGES = ("reauthoring", *RECIPE_STAGES)


@dataclass(frozen=True)
class Thresholds:
    """One stage's gate. A None bound is not checked; ``informational`` reports the stage without gating it."""

    max_abs_logit_diff: float | None = None
    min_top1: float | None = None
    max_kl_mean: float | None = None
    min_greedy_prefix: float | None = None
    min_sqnr_db: float | None = None
    max_ppl_rise: float | None = None  # relative: 0.05 = perplexity may rise by 5%
    tie_margin: float | None = None  # nats; see the module docstring
    informational: bool = False

    @property
    def bounds(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name not in ("tie_margin", "informational") and getattr(self, f.name) is not None}

    def tie_tolerance(self) -> float:
        if self.tie_margin is not None:
            return self.tie_margin
        if self.max_abs_logit_diff is not None:
            return 2 * self.max_abs_logit_diff
        return DECISIVE_MARGIN

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# (bound, metric, direction, label, format)
_BOUNDS = (
    ("max_abs_logit_diff", "max_abs_logit_diff", "max", "max |Δlogit|", "{:.3g}"),
    ("min_top1", "top1_agreement", "min", "top-1 agreement (decisive positions)", "{:.3f}"),
    ("max_kl_mean", "kl_mean", "max", "mean KL", "{:.3g}"),
    ("min_greedy_prefix", "greedy_agreement", "min", "greedy agreement", "{:.3f}"),
    ("min_sqnr_db", "logit_sqnr_db", "min", "logit SQNR dB", "{:.1f}"),
    ("max_ppl_rise", "ppl_rise", "max", "perplexity rise", "{:+.1%}"),
)


def greedy_agreement(per_prompt: list[dict], tolerance: float) -> tuple[float | None, int]:
    """Mean fraction of greedy tokens that agree before the first divergence, counting a prompt as agreeing in
    full when its divergence is a tie (the reference's margin there ≤ ``tolerance``); and the number of ties."""
    rows = [p for p in per_prompt if p.get("greedy_tokens")]
    if not rows:
        return None, 0
    total, ties = 0.0, 0
    for p in rows:
        margin = p.get("divergence_margin")
        if p["greedy_prefix"] < p["greedy_tokens"] and margin is not None and margin <= tolerance:
            ties += 1
            total += 1.0
        else:
            total += p["greedy_prefix"] / p["greedy_tokens"]
    return total / len(rows), ties


def non_finite_failures(metrics: dict, positions: int | None = None) -> list[str]:
    """The failures non-finite logits make, whatever the bounds (see the module docstring)."""
    out = []
    if metrics.get("non_finite_positions"):
        of = f" of {positions}" if positions else ""
        out.append(f"non-finite logits at {metrics['non_finite_positions']}{of} positions (NaN/inf)")
    if metrics.get("non_finite_heldout_positions"):
        out.append(f"non-finite logits at {metrics['non_finite_heldout_positions']} held-out positions (NaN/inf): "
                   "perplexity not measured")
    return out


def judge(thresholds: Thresholds | None, metrics: dict, per_prompt: list[dict],
          positions: int | None = None) -> tuple[list[str], list[str]]:
    """(failures, notes) of ``metrics`` against ``thresholds``; fills ``metrics['greedy_agreement']`` and
    ``['greedy_ties']`` with this gate's tie tolerance. Notes say which bounds did not apply and why. Non-finite
    logits are failures even without thresholds (``positions``: the prompt positions compared, for the message)."""
    tol = thresholds.tie_tolerance() if thresholds else DECISIVE_MARGIN
    if per_prompt:  # else (a report row without per-prompt detail) the recorded figure stands
        metrics["greedy_agreement"], metrics["greedy_ties"] = greedy_agreement(per_prompt, tol)
    failures = non_finite_failures(metrics, positions)
    if thresholds is None:
        return failures, []
    notes, applied = [], 0
    for bound, metric, direction, label, fmt in _BOUNDS:
        limit = getattr(thresholds, bound)
        if limit is None:
            continue
        value = metrics.get(metric)
        if value is None:
            if metric == "ppl_rise" and metrics.get("non_finite_heldout_positions"):
                why = "non-finite logits on the held-out text"
            elif metric != "greedy_agreement" and metric != "ppl_rise" and metrics.get("non_finite_positions"):
                why = "non-finite logits"
            else:
                why = ("no position where the reference is decisive" if metric == "top1_agreement"
                       else f"{metric} not measured at this stage")
            notes.append(f"{label}: not applicable ({why})")
            continue
        applied += 1
        if (value > limit) if direction == "max" else (value < limit):
            failures.append(f"{label} {fmt.format(value)} {'>' if direction == 'max' else '<'} {fmt.format(limit)}")
    if not thresholds.informational and applied == 0 and not failures:
        failures.append("no bound of this gate applies to what was measured: " + "; ".join(notes))
    return failures, notes


_THRESHOLD_KEYS = tuple(f.name for f in fields(Thresholds))
# bound → (lowest, highest) it may be (None: unbounded on that side), what that range means, an example value.
# Fractions are fractions; KL, |Δlogit|, perplexity rise and a tie margin are never negative; SQNR is any finite dB.
_RANGES = {
    "min_top1": (0.0, 1.0, "a fraction between 0 and 1"),
    "min_greedy_prefix": (0.0, 1.0, "a fraction between 0 and 1"),
    "max_kl_mean": (0.0, None, "a number >= 0"),
    "max_abs_logit_diff": (0.0, None, "a number >= 0"),
    "max_ppl_rise": (0.0, None, "a number >= 0 (0.05 = perplexity may rise by 5%)"),
    "tie_margin": (0.0, None, "a number >= 0 (nats)"),
    "min_sqnr_db": (None, None, "a finite number of dB"),
}
_EXAMPLE = {"min_top1": 0.9, "min_greedy_prefix": 0.5, "max_kl_mean": 0.1, "max_abs_logit_diff": 0.001,
            "max_ppl_rise": 0.05, "tie_margin": 0.5, "min_sqnr_db": 5.0}


def _in_range(key: str, v, where: str, path) -> float:
    lo, hi, meaning = _RANGES[key]
    try:
        x = float(v)
    except OverflowError:  # an integer too large for a float
        x = math.inf
    if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise InputError(f"{where}.{key} in {path} is {show(v)}; it must be {meaning}",
                         f"write e.g. {key} = {_EXAMPLE[key]}")
    return x


def parse_thresholds(table, where: str, path) -> Thresholds:
    if not isinstance(table, dict):
        raise InputError(f"[{where}] in {path} must be a table of bounds",
                         f"supported keys are {', '.join(_THRESHOLD_KEYS)}")
    for key in table:
        if key not in _THRESHOLD_KEYS:
            raise InputError(f"unknown key {key!r} in [{where}] of {path}",
                             f"{suggest(key, _THRESHOLD_KEYS)}supported keys are {', '.join(_THRESHOLD_KEYS)}")
    values: dict = {}
    for key, v in table.items():
        if key == "informational":
            if not isinstance(v, bool):
                raise InputError(f"{where}.informational in {path} must be true or false", "write informational = true")
            values[key] = v
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InputError(f"{where}.{key} in {path} must be a number, not {show(v)}",
                             f"write e.g. {key} = {_EXAMPLE[key]}")
        else:
            values[key] = _in_range(key, v, where, path)
    th = Thresholds(**values)
    if not th.bounds and not th.informational:
        raise InputError(f"[{where}] in {path} sets no bound, so it would pass anything",
                         "add a bound (e.g. max_kl_mean = 0.1), or informational = true to report the stage only")
    return th


def parse_gate_tables(gates, path) -> dict:
    """``[gates.*]`` tables → {"reauthoring": Thresholds, RECIPE: {STAGE: Thresholds}}; recipe and stage names are
    checked (did-you-mean; aliases name their recipe), so a typo never turns a gate off."""
    if not isinstance(gates, dict):
        raise InputError(f"gates in {path} must be tables like [gates.int4.quantization]",
                         "see edgeslm/targets/android.toml")
    out: dict = {}
    for key, table in gates.items():
        if key == "reauthoring":
            out[key] = parse_thresholds(table, "gates.reauthoring", path)
            continue
        if key in ALIASES:
            raise InputError(f"[gates.{key}] in {path} names an alias of recipe {ALIASES[key]!r}",
                             f"write [gates.{ALIASES[key]}.…]: gates are keyed by the recipe's own name")
        if key not in RECIPES:
            raise InputError(f"[gates.{toml_key(key)}] in {path}: unknown recipe {key!r}",
                             f"{suggest(key, [*RECIPES, 'reauthoring'])}gates are keyed by reauthoring or a recipe: "
                             f"{', '.join(RECIPES)}")
        if not isinstance(table, dict):
            raise InputError(f"[gates.{key}] in {path} must hold stage tables", f"stages are {', '.join(RECIPE_STAGES)}")
        stages = {}
        for stage, t in table.items():
            if stage not in RECIPE_STAGES:
                raise InputError(f"[gates.{key}.{toml_key(stage)}] in {path}: unknown stage {stage!r}",
                                 f"{suggest(stage, STAGES)}stages are {', '.join(RECIPE_STAGES)} "
                                 "(re-authoring is gated once, in [gates.reauthoring])")
            stages[stage] = parse_thresholds(t, f"gates.{key}.{stage}", path)
        out[key] = stages
    return out
