"""Parity in stages, each comparing two models on the same fixed prompts, reported apart.

1. re-authoring: transformers fp32 vs our fp32 decoder (should be ~0: proves the weight mapping)
2. quantization: our fp32 decoder vs the quantized eager decoder (the recipe's damage)
3. lowering: quantized eager decoder vs the artifact run in its runtime (the compiler's and kernels' damage)

Observations (teacher-forced logits, greedy tokens with the alternatives at each step, and the negative
log-likelihood of a fixed held-out text) are computed once per model and reused across stages. Metrics and how
gates read them: edgeslm/gates.py.

Greedy agreement along one path: the transformers reference generates its greedy continuations freely; every
other model is run teacher-forced on prompt + that continuation (one forward per prompt instead of one per
token; a runtime model runs it as an app does, the prompt prefilled and the continuation decoded a token at a
time) and its greedy choice at each position is its argmax there. Up to the first position where a model's
argmax differs from the reference's token, its own free-running greedy output would be exactly the reference's,
and at that position it would choose that argmax, so the greedy prefix against the reference is exact. Between
two candidates (e.g. quantized eager vs the artifact), agreement is counted on the same contexts: the first
position where the two would choose differently. onnxruntime-genai's generator is fed the same path the same way
(ONNX runtime_agreement: equal logits to the bit); a free-running greedy run is kept only where two generators
are compared free (:func:`observe_free`, onnx-qnn), where a one-pass score along one generator's tokens would
differ from the other's decode kernels in the last bits and part them at near-ties. Eager models score their
sequences right-padded in batches (:func:`edgeslm.parity.models.logits_of`), their linears through oneDNN
(:mod:`edgeslm.parity.kernels`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources

import torch

from edgeslm.gates import Thresholds
from edgeslm.parity.metrics import compare_logits, divergence_margin, greedy_prefix, nll, non_finite_rows
from edgeslm.parity.models import ParityModel, logits_of, top_alternatives, torch_on_one_thread
from edgeslm.progress import Count, no_count
from edgeslm.records import Check

GREEDY_TOKENS = 32
HELDOUT_CHUNK = 128  # positions per teacher-forced pass over the held-out text
HELDOUT_TOKENS = 512  # at most this many held-out tokens are scored


def default_prompts() -> list[str]:
    text = resources.files("edgeslm.parity").joinpath("prompts.txt").read_text()
    return [line.strip() for line in text.splitlines() if line.strip()]


def heldout_text() -> str:
    """A fixed English text no prompt contains (CPython standard-library docstrings, PSF licence), for perplexity."""
    return resources.files("edgeslm.parity").joinpath("heldout.txt").read_text()


def adds_bos(tokenizer) -> bool:
    """Whether ``tokenizer`` starts what it encodes with its BOS token (Gemma, Llama 3: the model always saw it)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("x").input_ids
    return bos is not None and bool(ids) and ids[0] == bos


def heldout_chunks(tokenizer, context_length: int) -> list[list[int]]:
    """The held-out text as token-id chunks that fit the context (BOS included), each scored from position 0.

    The chunks are read the way the model is used: where the tokenizer adds a BOS token, every chunk starts with
    it (not the first alone), and since position 0 is never a prediction target (:func:`nll` scores ``ids[1:]``),
    BOS is context, never scored. A tokenizer that adds no BOS cuts the text as it comes."""
    ids = tokenizer(heldout_text()).input_ids[:HELDOUT_TOKENS]
    size = max(2, min(HELDOUT_CHUNK, context_length))
    if adds_bos(tokenizer) and ids and ids[0] == tokenizer.bos_token_id:
        bos, body = ids[:1], ids[1:]
        return [bos + c for c in (body[i:i + size - 1] for i in range(0, len(body), size - 1)) if c]
    return [c for c in (ids[i:i + size] for i in range(0, len(ids), size)) if len(c) >= 2]


@dataclass
class Observations:
    """What one model said on the prompts: teacher-forced logits, greedy continuations (with each step's top-k
    alternatives) and the held-out text's summed negative log-likelihood."""

    logits: list[torch.Tensor]
    greedy: list[list[int]]
    greedy_top: list[list[dict]] = field(default_factory=list)
    heldout_nll: float | None = None
    heldout_tokens: int = 0
    heldout_non_finite: tuple[int, ...] = ()  # scored held-out positions whose logits hold NaN or ±inf

    @property
    def perplexity(self) -> float | None:
        """exp(mean NLL) of the held-out text; None where not measured or not a number (non-finite logits)."""
        if not self.heldout_tokens or self.heldout_non_finite or not math.isfinite(self.heldout_nll):
            return None
        try:
            return math.exp(self.heldout_nll / self.heldout_tokens)
        except OverflowError:
            return None


def observe(model: ParityModel, prompt_ids: list[list[int]], heldout: list[list[int]] = (),
            n: int = GREEDY_TOKENS, path: list[list[int]] | None = None,
            on_step: Count = no_count) -> Observations:
    """What ``model`` says on the prompts and the held-out text. Without ``path`` it generates ``n`` greedy tokens
    per prompt freely; with ``path`` (the reference's greedy tokens) it is teacher-forced along them instead: a
    runtime as an app runs it, prompt by prompt, an eager model in batches (see the module docstring). ``on_step(done, total)`` after each prompt and held-out chunk."""
    total = len(prompt_ids) + len(heldout)
    if path is None:
        free = observe_free(model, prompt_ids, n, on_step=lambda i, _: on_step(i, total))
        logits = free.logits or [model.logits(ids) for ids in prompt_ids]
        greedy, tops = free.greedy, free.greedy_top
    else:
        logits, greedy, tops = [], [], []
        if hasattr(model, "logits_along"):  # a runtime: the app's path, prompt by prompt
            fulls = (model.logits_along(ids, p[:-1]) for ids, p in zip(prompt_ids, path))
        else:
            fulls = logits_of(model, [list(ids) + list(p[:-1]) for ids, p in zip(prompt_ids, path)])
        for i, (ids, p, full) in enumerate(zip(prompt_ids, path, fulls)):
            logits.append(full[:len(ids)].clone())  # a copy: the rest of a batch's logits is not kept alive
            rows = full[len(ids) - 1:len(ids) - 1 + len(p)]
            with torch_on_one_thread():  # row by row: faster on one (and a runtime's spinning pool took the other)
                greedy.append([int(r.argmax()) for r in rows])
                tops.append([top_alternatives(r) for r in rows])
            on_step(i + 1, total)
    nll_sum, count, bad = 0.0, 0, []
    for i, (chunk, lg) in enumerate(zip(heldout, logits_of(model, list(heldout)))):
        with torch_on_one_thread():
            bad += [count + j for j in non_finite_rows(lg[:-1])]  # the rows nll reads
            s, k = nll(lg, chunk)
        nll_sum, count = nll_sum + s, count + k
        on_step(len(prompt_ids) + i + 1, total)
    return Observations(logits, greedy, tops, nll_sum if count else None, count, tuple(bad))


def observe_free(model: ParityModel, prompt_ids: list[list[int]], n: int = GREEDY_TOKENS,
                 on_step: Count = no_count) -> Observations:
    """``n`` freely generated greedy tokens per prompt with each step's alternatives (no perplexity; the prompts'
    logits only where a batched generator gives them for free); ``on_step(done, total)`` after each prompt."""
    if hasattr(model, "greedy_batch"):  # the transformers reference: all prompts in one batch
        greedy, tops, logits = model.greedy_batch(prompt_ids, n)
        on_step(len(prompt_ids), len(prompt_ids))
        return Observations(logits, greedy, tops)
    greedy, tops = [], []
    for i, ids in enumerate(prompt_ids):
        t: list[dict] = []
        greedy.append(model.greedy(ids, n, t))
        tops.append(t)
        on_step(i + 1, len(prompt_ids))
    return Observations([], greedy, tops)


def _mean(xs: list) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _divergence(ref: Observations, i: int, rg: list[int], cg: list[int]) -> tuple[int, float | None]:
    """Greedy tokens agreeing before the first divergence of prompt ``i``, and the reference's margin there."""
    prefix = greedy_prefix(rg, cg)
    margin = (divergence_margin(ref.greedy_top[i], prefix, cg[prefix])
              if prefix < min(len(rg), len(cg)) and ref.greedy_top else None)
    return prefix, margin if margin is None or math.isfinite(margin) else None  # a NaN reference: no margin


# Figures computed from the logits: meaningless (NaN read as 0, SQNR as 300 dB) where any logit is not finite.
_LOGIT_METRICS = ("max_abs_logit_diff", "top1_agreement", "top1_exact", "decisive_fraction", "kl_mean", "kl_max",
                  "logit_sqnr_db")
_PROMPT_LOGIT_METRICS = ("max_abs_logit_diff", "top1_exact", "kl_mean", "kl_max")


def _non_finite(metrics: dict, per_prompt: list[dict], bad: list[list[int]], ref: Observations,
                cand: Observations) -> None:
    """Blank (None) every figure that non-finite logits would turn into a plausible number, and count them:
    ``non_finite_positions`` (prompt positions where the reference's or the candidate's logits hold NaN or
    ±inf) and ``non_finite_heldout_positions`` (held-out positions; perplexity then not measured). The gate fails
    on either, whatever its bounds (:func:`edgeslm.gates.judge`). Absent when everything is finite."""
    for row, b in zip(per_prompt, bad):
        if b:
            row.update({k: None for k in _PROMPT_LOGIT_METRICS}, non_finite_positions=len(b))
    if any(bad):
        metrics.update({k: None for k in _LOGIT_METRICS}, non_finite_positions=sum(map(len, bad)))
    heldout = set(ref.heldout_non_finite) | set(cand.heldout_non_finite)
    if heldout:
        metrics["non_finite_heldout_positions"] = len(heldout)
        metrics["ppl_rise"] = None


def compare(stage: str, reference: str, candidate: str, ref: Observations, cand: Observations,
            prompts: list[str], thresholds: Thresholds | None, artifact: str | None = None) -> Check:
    per_prompt, top1_all, decisive_all, kl_all, by_pos, kl_pos = [], [], [], [], {}, {}
    max_abs, signal, noise, bad, bad_pos = 0.0, 0.0, 0.0, [], set()
    for i, (p, rl, cl, rg, cg) in enumerate(zip(prompts, ref.logits, cand.logits, ref.greedy, cand.greedy)):
        c = compare_logits(rl, cl)
        bad.append([j for j, ok in enumerate(c.finite) if not ok])
        bad_pos.update(bad[-1])
        max_abs, signal, noise = max(max_abs, c.max_abs), signal + c.signal, noise + c.noise
        top1_all += c.top1
        decisive_all += c.decisive
        kl_all += c.kl
        for j, (ok, dec) in enumerate(zip(c.top1, c.decisive)):
            if dec:
                by_pos.setdefault(j, []).append(ok)
            else:
                by_pos.setdefault(j, [])
        for j, kl in enumerate(c.kl):
            kl_pos.setdefault(j, []).append(kl)
        prefix, margin = _divergence(ref, i, rg, cg)
        per_prompt.append({
            "prompt": p, "positions": len(c.top1), "max_abs_logit_diff": c.max_abs,
            "top1_exact": sum(c.top1) / len(c.top1), "decisive_positions": sum(c.decisive),
            "kl_mean": sum(c.kl) / len(c.kl), "kl_max": max(c.kl),
            "greedy_prefix": prefix, "greedy_tokens": len(rg), "divergence_margin": margin,
            "greedy_reference": rg, "greedy_candidate": cg,
        })
    n_greedy = max(len(g) for g in ref.greedy)
    decisive = [ok for ok, dec in zip(top1_all, decisive_all) if dec]
    ppl_r, ppl_c = ref.perplexity, cand.perplexity
    metrics = {
        "max_abs_logit_diff": max_abs,
        "top1_agreement": _mean(decisive),  # where the reference is decisive (None: nowhere)
        "top1_exact": sum(top1_all) / len(top1_all),
        "decisive_fraction": len(decisive) / len(top1_all),
        "kl_mean": sum(kl_all) / len(kl_all),
        "kl_max": max(kl_all),
        "logit_sqnr_db": 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else (
            math.inf if signal > 0 else None),
        "perplexity_reference": ppl_r,
        "perplexity_candidate": ppl_c,
        "ppl_rise": ppl_c / ppl_r - 1 if ppl_r and ppl_c else None,
        "greedy_prefix_mean": sum(x["greedy_prefix"] for x in per_prompt) / (len(per_prompt) * n_greedy),
        "greedy_exact": sum(x["greedy_prefix"] == x["greedy_tokens"] for x in per_prompt),
    }
    if metrics["logit_sqnr_db"] == math.inf:
        metrics["logit_sqnr_db"] = 300.0  # bit-identical logits; JSON has no infinity
    _non_finite(metrics, per_prompt, bad, ref, cand)
    check = Check(
        stage=stage, artifact=artifact, reference=reference, candidate=candidate, prompts=len(prompts),
        positions=len(top1_all), greedy_tokens=n_greedy, metrics=metrics, per_prompt=per_prompt,
        top1_by_position=[None if j in bad_pos else _mean(v) for j, v in sorted(by_pos.items())],
        kl_by_position=[None if j in bad_pos else sum(v) / len(v) for j, v in sorted(kl_pos.items())],
    )
    return check.judge(thresholds)


def compare_greedy(stage: str, reference: str, candidate: str, ref: Observations, cand_greedy: list[list[int]],
                   prompts: list[str], thresholds: Thresholds | None, artifact: str | None = None,
                   stop_ids: tuple[int, ...] = ()) -> Check:
    """Greedy tokens alone (a runtime that exposes no logits, e.g. onnxruntime-genai's generator) against a
    reference's observations: divergences where the reference's own margin is within the gate's tie tolerance
    are accepted as ties, the rest count. A candidate that stopped at a ``stop_ids`` token the reference chose
    too agrees in full (the reference's loop does not stop at eos)."""
    per_prompt = []
    for i, (p, rg, cg) in enumerate(zip(prompts, ref.greedy, cand_greedy)):
        prefix, margin = _divergence(ref, i, rg, cg)
        if prefix == len(cg) < len(rg) and cg and cg[-1] in stop_ids:
            prefix = len(rg)
        per_prompt.append({"prompt": p, "greedy_prefix": prefix, "greedy_tokens": len(rg),
                           "divergence_margin": margin, "greedy_reference": rg, "greedy_candidate": cg})
    n_greedy = max(len(g) for g in ref.greedy)
    metrics = {"greedy_prefix_mean": sum(x["greedy_prefix"] for x in per_prompt) / (len(per_prompt) * n_greedy),
               "greedy_exact": sum(x["greedy_prefix"] == x["greedy_tokens"] for x in per_prompt)}
    check = Check(stage=stage, artifact=artifact, reference=reference, candidate=candidate, prompts=len(prompts),
                  positions=0, greedy_tokens=n_greedy, metrics=metrics, per_prompt=per_prompt)
    return check.judge(thresholds)
