"""Parity in stages, each comparing two models on the same fixed prompts, reported apart.

1. re-authoring: transformers fp32 vs our fp32 decoder (should be ~0: proves the weight mapping)
2. quantization: our fp32 decoder vs the quantized eager decoder (the recipe's damage)
3. lowering: quantized eager decoder vs the artifact run in its runtime (the compiler's and kernels' damage)

Observations (logits and greedy tokens per prompt) are computed once per model and reused across stages.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from importlib import resources

import torch

from edgeslm.parity.metrics import compare_logits, greedy_prefix
from edgeslm.parity.models import ParityModel

GREEDY_TOKENS = 32


def default_prompts() -> list[str]:
    text = resources.files("edgeslm.parity").joinpath("prompts.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


@dataclass
class Observations:
    """What one model said on the prompts: teacher-forced logits and greedy continuations."""

    logits: list[torch.Tensor]
    greedy: list[list[int]]


def observe(model: ParityModel, prompt_ids: list[list[int]], n: int = GREEDY_TOKENS) -> Observations:
    return Observations([model.logits(ids) for ids in prompt_ids], [model.greedy(ids, n) for ids in prompt_ids])


@dataclass(frozen=True)
class Thresholds:
    """A stage's gate; a None bound is not checked."""

    max_abs_logit_diff: float | None = None
    min_top1: float | None = None
    max_kl_mean: float | None = None
    min_greedy_prefix: float | None = None

    def failures(self, m: dict) -> list[str]:
        out = []
        if self.max_abs_logit_diff is not None and m["max_abs_logit_diff"] > self.max_abs_logit_diff:
            out.append(f"max |Δlogit| {m['max_abs_logit_diff']:.3g} > {self.max_abs_logit_diff:.3g}")
        if self.min_top1 is not None and m["top1_agreement"] < self.min_top1:
            out.append(f"top-1 agreement {m['top1_agreement']:.3f} < {self.min_top1:.3f}")
        if self.max_kl_mean is not None and m["kl_mean"] > self.max_kl_mean:
            out.append(f"mean KL {m['kl_mean']:.3g} > {self.max_kl_mean:.3g}")
        if self.min_greedy_prefix is not None and m["greedy_prefix_mean"] < self.min_greedy_prefix:
            out.append(f"greedy agreement {m['greedy_prefix_mean']:.3f} < {self.min_greedy_prefix:.3f}")
        return out


def compare(stage: str, reference: str, candidate: str, ref: Observations, cand: Observations,
            prompts: list[str], thresholds: Thresholds | None) -> dict:
    per_prompt, top1_all, kl_all, max_abs, by_pos, kl_pos = [], [], [], 0.0, {}, {}
    for p, rl, cl, rg, cg in zip(prompts, ref.logits, cand.logits, ref.greedy, cand.greedy):
        c = compare_logits(rl, cl)
        max_abs = max(max_abs, c.max_abs)
        top1_all += c.top1
        kl_all += c.kl
        for i, ok in enumerate(c.top1):
            by_pos.setdefault(i, []).append(ok)
        for i, kl in enumerate(c.kl):
            kl_pos.setdefault(i, []).append(kl)
        prefix = greedy_prefix(rg, cg)
        per_prompt.append({
            "prompt": p, "positions": len(c.top1), "max_abs_logit_diff": c.max_abs,
            "top1_agreement": sum(c.top1) / len(c.top1), "kl_mean": sum(c.kl) / len(c.kl), "kl_max": max(c.kl),
            "greedy_prefix": prefix, "greedy_tokens": len(rg),
            "greedy_reference": rg, "greedy_candidate": cg,
        })
    n_greedy = max(len(g) for g in ref.greedy)
    metrics = {
        "max_abs_logit_diff": max_abs,
        "top1_agreement": sum(top1_all) / len(top1_all),
        "kl_mean": sum(kl_all) / len(kl_all),
        "kl_max": max(kl_all),
        "greedy_prefix_mean": sum(x["greedy_prefix"] for x in per_prompt) / (len(per_prompt) * n_greedy),
        "greedy_exact": sum(x["greedy_prefix"] == x["greedy_tokens"] for x in per_prompt),
    }
    failures = thresholds.failures(metrics) if thresholds else []
    return {
        "stage": stage,
        "reference": reference,
        "candidate": candidate,
        "prompts": len(prompts),
        "positions": len(top1_all),
        "greedy_tokens": n_greedy,
        "metrics": metrics,
        "top1_by_position": [sum(v) / len(v) for _, v in sorted(by_pos.items())],
        "kl_by_position": [sum(v) / len(v) for _, v in sorted(kl_pos.items())],
        "gate": {
            "thresholds": asdict(thresholds) if thresholds else None,
            "passed": not failures,
            "failures": failures,
        },
        "per_prompt": per_prompt,
    }
