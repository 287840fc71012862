"""Speculative decoding pairs: a small draft model proposes k tokens, the target verifies them in one pass.

What is checked and measured, in the artifacts' own runtimes:
- before any heavy work, that the two tokenizers agree (:func:`check_tokenizers`): the same special tokens and the
  same token for every id both models can emit, else the first differing id is named;
- greedy speculative decoding on the parity prompts for several k (:func:`speculative_greedy`): acceptance rate,
  mean tokens per target pass, and whether the output equals the target's own greedy output (speculation must
  not change what greedy decoding says; a difference is reported with the target's margin there);
- the speed-up this acceptance buys on the target device (:func:`predicted_speedup`), from the latency model:
  a round costs k draft decode steps plus one target pass over k+1 tokens and yields (accepted + 1) tokens.

Each backend gives a verifier (``verifier(bundle, artifact)``): ``score(tokens, start) -> logits [len, vocab]``
for every position, and ``truncate(length)`` to drop rejected positions from its cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from edgeslm.errors import InputError
from edgeslm.backends import get_backend, unavailable_here
from edgeslm.filefacts import file_entry
from edgeslm.latency.devices import load_device
from edgeslm.latency.perf import decode_seconds, prefill_seconds
from edgeslm.latency.workload import from_artifact
from edgeslm.parity.stages import GREEDY_TOKENS

K_VALUES = (2, 4, 6)
# A divergence from the target's own greedy output is accepted only where the target's top-2 margin is this small:
# verifying k+1 tokens in one pass and one token per pass differ by float rounding (batched kernels), which int8
# activation kernels (MatMulNBits at accuracy level 4) turn into flipped roundings: on the demo model such flips
# move a logit by up to 0.11 (its ONNX lowering stage, eager twin vs onnxruntime).
NEAR_TIE = 0.25


def check_tokenizers(target_tok, draft_tok, target_vocab: int, draft_vocab: int, target_special,
                     draft_special) -> dict:
    """Refuse a pair whose tokenizers differ where it matters, naming the first difference."""
    for what in ("bos_id", "eos_ids", "pad_id"):
        a, b = getattr(target_special, what), getattr(draft_special, what)
        if (set(a) if what == "eos_ids" else a) != (set(b) if what == "eos_ids" else b):
            raise InputError(f"the draft's special tokens differ from the target's: {what} {b!r} (draft) vs {a!r} "
                             "(target)", "pick a draft from the same model family (same tokenizer)")
    shared = min(target_vocab, draft_vocab, len(target_tok), len(draft_tok))
    ta = target_tok.convert_ids_to_tokens(list(range(shared)))
    da = draft_tok.convert_ids_to_tokens(list(range(shared)))
    first = next((i for i, (x, y) in enumerate(zip(ta, da)) if x != y), None)
    if first is not None:
        raise InputError(f"the draft's tokenizer differs from the target's at id {first}: {da[first]!r} (draft) vs "
                         f"{ta[first]!r} (target)", "a draft must share the target's vocabulary: pick one from the "
                         "same family (e.g. Qwen2.5-0.5B for Qwen2.5-7B)")
    if len(target_tok) != len(draft_tok):
        raise InputError(f"the draft's tokenizer has {len(draft_tok)} tokens, the target's {len(target_tok)}",
                         "pick a draft with the target's tokenizer")
    return {"shared_ids": shared, "target_vocab": target_vocab, "draft_vocab": draft_vocab}


@dataclass
class Run:
    tokens: list[int]
    rounds: int  # target verification passes
    proposed: int
    accepted: int


def speculative_greedy(target, draft, prompt: list[int], n: int, k: int) -> Run:
    """Greedy speculative decoding of ``n`` tokens: each round the draft proposes ``k`` tokens after the last one,
    the target scores [last, proposals] in one pass, the longest prefix the target's greedy agrees with is kept
    plus the target's own next token. Both caches are cut back to what was kept."""
    seq = list(prompt)
    for m in (target, draft):
        m.truncate(0)
        if len(seq) > 1:
            m.score(seq[:-1], 0)
    d_len = len(seq) - 1
    rounds = proposed = accepted = 0
    while len(seq) - len(prompt) < n:
        pos = len(seq) - 1  # position of the last token, not yet in either cache
        if d_len < pos:
            draft.score(seq[d_len:pos], d_len)
        props, x = [], seq[-1]
        for i in range(k):
            x = int(draft.score([x], pos + i)[-1].argmax())
            props.append(x)
        rows = target.score([seq[-1], *props], pos)
        j = 0
        while j < k and props[j] == int(rows[j].argmax()):
            j += 1
        seq += props[:j] + [int(rows[j].argmax())]
        target.truncate(pos + j + 1)
        d_len = pos + 1 + min(j, k - 1)
        draft.truncate(d_len)
        rounds, proposed, accepted = rounds + 1, proposed + k, accepted + j
    return Run(seq[len(prompt):len(prompt) + n], rounds, proposed, accepted)


def greedy(model, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """The target alone, one token per pass; with each step's top-1 minus top-2 logit margin."""
    model.truncate(0)
    rows = model.score(list(prompt), 0)
    last, out, margins = rows[-1], [], []
    for i in range(n):
        top = torch.topk(last.float(), 2).values
        margins.append(float(top[0] - top[1]))
        out.append(int(last.argmax()))
        last = model.score([out[-1]], len(prompt) + i)[-1]
    return out, margins


def measure(target, draft, prompts: list[list[int]], n: int, ks=K_VALUES) -> dict:
    """Acceptance per k over ``prompts`` and the equality of the output with the target's greedy output."""
    ref = [greedy(target, p, n) for p in prompts]
    out = {}
    for k in ks:
        runs = [speculative_greedy(target, draft, p, n, k) for p in prompts]
        diffs = []
        for (want, margins), r in zip(ref, runs):
            i = next((i for i, (a, b) in enumerate(zip(want, r.tokens)) if a != b), None)
            if i is not None:
                diffs.append({"position": i, "target_margin": margins[i]})
        rounds = sum(r.rounds for r in runs)
        out[str(k)] = {"acceptance_rate": sum(r.accepted for r in runs) / sum(r.proposed for r in runs),
                       "tokens_per_target_pass": sum(len(r.tokens) for r in runs) / rounds,
                       "target_passes": rounds, "tokens": sum(len(r.tokens) for r in runs),
                       "equals_target_greedy": not diffs, "differences": diffs,
                       "kept_greedy_output": all(d["target_margin"] < NEAR_TIE for d in diffs)}
    return out


def predicted_speedup(k: int, tokens_per_pass: float, target_w, draft_w, device, backend: str,
                      prompt_len: int) -> float:
    """Decode speed with speculation over decode speed without, on ``device`` (performance model): a round is
    k draft steps + one target pass over k+1 tokens (the slower of reading the weights and computing k+1
    tokens) and yields ``tokens_per_pass`` tokens; without speculation each token costs one target step."""
    t_step = decode_seconds(target_w, device, backend, prompt_len, 1)
    verify = max(prefill_seconds(target_w, device, backend, k + 1), t_step)
    draft = decode_seconds(draft_w, device, backend, prompt_len, k)
    return tokens_per_pass * t_step / (verify + draft)


PROMPT_LEN = 64  # prompt length the predicted speed-up assumes (the cache a decode step reads)


def pair_section(bundle, artifacts: list, draft_ref, ref, tgt, context_length: int, status=lambda msg: None) -> dict:
    """The manifest's ``speculative`` section: the draft model, and per backend the (target, draft) artifact pair
    with acceptance measured in its runtime here and the speed-up predicted on the target's device."""
    drafts = {(a.backend, a.recipe): a for a in artifacts if a.facts.get("role") == "draft"}
    device = load_device(tgt.device) if tgt.device else None
    model = {"model": {"shape": ref.shape}, "context_length": context_length}
    pairs = []
    for t in (a for a in artifacts if a.facts.get("role") != "draft"):
        d = drafts.get((t.backend, t.recipe))
        if d is None:
            continue
        backend = get_backend(t.backend)
        entry = {"target": t.name, "draft": d.name, "backend": t.backend, "recipe": t.recipe}
        why = unavailable_here(t.backend) or (None if backend.has_verifier else
                                              f"the {t.backend} backend has no multi-token verifier here")
        if why:
            pairs.append({**entry, "measured": False, "reason": why})
            continue
        status(f"speculative decoding: {t.name} verifying {d.name}")
        tv, dv = backend.verifier(bundle, t.to_json()), backend.verifier(bundle, d.to_json())
        entry.update(measured=True, runtime=backend.runtime,
                     verification=("one pass over the k+1 tokens" if getattr(tv, "batched", False) else
                                   "one call per token (the artifact returns the last position's logits only)"),
                     prompts=len(ref.prompt_ids), new_tokens=GREEDY_TOKENS,
                     k=measure(tv, dv, ref.prompt_ids, GREEDY_TOKENS))
        if backend.has_native_speculative:
            status(f"speculative decoding: {t.name} with the runtime's own draft support")
            entry["native"] = backend.native_speculative(bundle, t.to_json(), d.to_json(), 4, ref.prompt_ids, GREEDY_TOKENS)
            t.files.append(file_entry(bundle, entry["native"]["file"]))
        if device is not None and t.backend in device.backends:
            tw, dw = from_artifact(model, t.to_json()), from_artifact(model, d.to_json())
            if tw.kind in device.perf(t.backend).bandwidth_efficiency:
                entry["predicted"] = {
                    "device": device.name, "prompt_len": PROMPT_LEN,
                    "speedup": {k: predicted_speedup(int(k), r["tokens_per_target_pass"], tw, dw, device, t.backend,
                                                     PROMPT_LEN) for k, r in entry["k"].items()}}
        pairs.append(entry)
    src = draft_ref.source
    return {"draft": {"id": src.model_id, "source": src.kind, "revision": src.revision, "commit": src.commit,
                      "parameters": draft_ref.ckpt.parameters, "shape": draft_ref.shape},
            "tokenizer": "identical to the target's (checked before export: special tokens and every shared id)",
            "pairs": pairs, "native": NATIVE}


# What the runtimes offer (checked against their 0.18 / 1.5 Python APIs; docs/adapters.md).
NATIVE = ("onnxruntime-genai (0.16+) runs a draft natively: the ONNX pair's speculative.json overlay (model.draft + "
          "speculative.max_draft_tokens), checked here; ExecuTorch's LLM runner has no draft mode, so an app drives "
          "the two .pte files itself (the manifest pairs them)")


def validation_checks(pair: dict) -> list[dict]:
    """The pair's gated facts: speculation left the target's greedy output unchanged (near-ties excepted) for
    every k, and the runtime's native speculative mode ran."""
    checks = [{"check": f"k={k}: speculative greedy output equals the target's own (near-ties < {NEAR_TIE} "
                        "excepted)", "expected": True,
               "found": r["equals_target_greedy"] or f"differs at {r['differences']}",
               "passed": r["kept_greedy_output"]} for k, r in pair["k"].items()]
    if "native" in pair:
        checks.append({"check": "the runtime's native speculative decoding runs with the bundled draft",
                       "expected": True, "found": pair["native"]["runs_here"], "passed": pair["native"]["runs_here"]})
    return checks
