"""Agreement metrics between a reference model's logits and a candidate's, per position and per greedy run."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeslm.gates import DECISIVE_MARGIN


@dataclass(frozen=True)
class LogitComparison:
    max_abs: float
    top1: list[bool]  # per position: same argmax
    decisive: list[bool]  # per position: the reference's top-1 beats its top-2 by more than DECISIVE_MARGIN nats
    kl: list[float]  # KL(reference || candidate) per position, nats
    signal: float  # Σ over positions of |reference logits − their mean|² (logits are shift-invariant)
    noise: float  # Σ over positions of |(candidate − reference) − its mean|²
    finite: list[bool]  # per position: every reference and candidate logit is finite (no NaN, no ±inf)


def compare_logits(ref: torch.Tensor, cand: torch.Tensor) -> LogitComparison:
    """``ref`` and ``cand`` are ``[positions, vocab]`` logits for the same tokens."""
    ref, cand = ref.double(), cand.double()
    lp, lq = torch.log_softmax(ref, -1), torch.log_softmax(cand, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp_min(0.0)
    top2 = lp.topk(2, -1).values
    diff = cand - ref
    return LogitComparison(
        max_abs=float(diff.abs().max()),
        top1=(ref.argmax(-1) == cand.argmax(-1)).tolist(),
        decisive=((top2[:, 0] - top2[:, 1]) > DECISIVE_MARGIN).tolist(),
        kl=kl.tolist(),
        signal=float(((ref - ref.mean(-1, keepdim=True)) ** 2).sum()),
        noise=float(((diff - diff.mean(-1, keepdim=True)) ** 2).sum()),
        finite=(torch.isfinite(ref).all(-1) & torch.isfinite(cand).all(-1)).tolist(),
    )


def greedy_prefix(ref: list[int], cand: list[int]) -> int:
    """How many generated tokens agree before the first divergence."""
    n = 0
    for a, b in zip(ref, cand):
        if a != b:
            break
        n += 1
    return n


def divergence_margin(ref_top: list[dict], step: int, cand_token: int) -> float | None:
    """The reference's log-probability margin, at greedy step ``step``, between the token it chose and the
    candidate's token (None when that token is outside the reference's recorded top-k: not a near-tie)."""
    if step >= len(ref_top):
        return None
    top = ref_top[step]
    if cand_token not in top["ids"]:
        return None
    return float(top["logprobs"][0] - top["logprobs"][top["ids"].index(cand_token)])


def non_finite_rows(logits: torch.Tensor) -> list[int]:
    """Positions (rows of ``[positions, vocab]`` logits) holding a NaN or an infinity. A row's sum is finite
    unless the row holds one (or its values overflow the sum: those rows get the exact test), so one reduction
    finds them without a ``[positions, vocab]`` mask (1 against 15 ms for 128 × 49,152 on one thread)."""
    suspect = (~torch.isfinite(logits.sum(-1, dtype=torch.float32))).nonzero().flatten().tolist()
    return [i for i in suspect if not bool(torch.isfinite(logits[i]).all())]


def nll(logits: torch.Tensor, ids: list[int]) -> tuple[float, int]:
    """Summed negative log-likelihood of ``ids[1:]`` under teacher-forced ``logits`` (``[len(ids), vocab]``):
    each row's log-sum-exp (max-shifted, in fp32) less its target's logit, summed in fp64. Against a
    full fp64 log-softmax: 2e-9 relative on a chunk's sum, 5× faster (11 against 58 ms for 128 × 49,152)."""
    rows = logits[:-1].float()
    target = torch.tensor(ids[1:])[:, None]
    lse = torch.logsumexp(rows, -1).double()
    return float((lse - rows.gather(-1, target)[:, 0].double()).sum()), len(ids) - 1
