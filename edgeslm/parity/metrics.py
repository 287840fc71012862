"""Agreement metrics between a reference model's logits and a candidate's, per position and per greedy run."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LogitComparison:
    max_abs: float
    top1: list[bool]  # per position
    kl: list[float]  # KL(reference || candidate) per position, nats


def compare_logits(ref: torch.Tensor, cand: torch.Tensor) -> LogitComparison:
    """``ref`` and ``cand`` are ``[positions, vocab]`` logits for the same tokens."""
    ref, cand = ref.double(), cand.double()
    lp, lq = torch.log_softmax(ref, -1), torch.log_softmax(cand, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)
    return LogitComparison(
        max_abs=float((ref - cand).abs().max()),
        top1=(ref.argmax(-1) == cand.argmax(-1)).tolist(),
        kl=kl.tolist(),
    )


def greedy_prefix(ref: list[int], cand: list[int]) -> int:
    """How many generated tokens agree before the first divergence."""
    n = 0
    for a, b in zip(ref, cand):
        if a != b:
            break
        n += 1
    return n
