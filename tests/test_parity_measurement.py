"""What parity measures is what it says: held-out chunks are read as the model is used (each starts with BOS where
the tokenizer adds one; BOS is never scored), and non-finite logits are a failure of their own, never a figure."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
import torch

from edgeslm.gates import Thresholds, judge
from edgeslm.json_schemas import problems
from edgeslm.parity.metrics import nll, non_finite_rows
from edgeslm.parity.stages import HELDOUT_TOKENS, Observations, adds_bos, compare, heldout_chunks, heldout_text, observe
from edgeslm.records import Check, Status


class WithBos:
    """``tok`` as a tokenizer that starts everything it encodes with its BOS token (as Gemma's, Llama 3's)."""

    def __init__(self, tok):
        self.tok, self.bos_token_id = tok, tok.bos_token_id

    def __call__(self, text):
        return SimpleNamespace(input_ids=[self.bos_token_id] + self.tok(text).input_ids)


def _old_chunks(tokenizer, context_length):
    """The chunks as cut before (one tokenization cut in pieces: only the first chunk starts with BOS)."""
    ids = tokenizer(heldout_text()).input_ids[:HELDOUT_TOKENS]
    size = max(2, min(128, context_length))
    return [c for c in (ids[i:i + size] for i in range(0, len(ids), size)) if len(c) >= 2]


def test_the_tiny_and_demo_tokenizers_add_no_bos(tokenizer):
    """So their chunks, and every figure measured with them, are as before."""
    from importlib import resources

    from transformers import AutoTokenizer

    assert not adds_bos(tokenizer) and adds_bos(WithBos(tokenizer))
    assert not adds_bos(AutoTokenizer.from_pretrained(str(resources.files("edgeslm").joinpath("demo"))))


@pytest.mark.parametrize("context", [128, 48, 2048])
def test_every_chunk_starts_with_bos_where_the_tokenizer_adds_one(tokenizer, context):
    tok = WithBos(tokenizer)
    bos = tok.bos_token_id
    chunks = heldout_chunks(tok, context)
    assert len(chunks) > 1
    assert all(c[0] == bos and bos not in c[1:] for c in chunks)
    assert all(2 <= len(c) <= min(128, context) for c in chunks)
    body = tok(heldout_text()).input_ids[1:HELDOUT_TOKENS]
    assert [t for c in chunks for t in c[1:]] == body  # the same text, every token scored once, BOS never
    # the old cut left every chunk after the first without BOS
    assert [c[0] == bos for c in _old_chunks(tok, context)][1:] == [False] * (len(_old_chunks(tok, context)) - 1)


@pytest.mark.parametrize("context", [128, 48, 2])
def test_a_tokenizer_without_bos_keeps_the_old_chunks(tokenizer, context):
    assert heldout_chunks(tokenizer, context) == _old_chunks(tokenizer, context)


def test_bos_never_scored_and_the_count_matches():
    logits = torch.randn(5, 10)
    s, k = nll(logits, [1, 4, 5, 6, 7])  # BOS (1) at position 0: context only
    lp = torch.log_softmax(logits.double(), -1)
    assert k == 4 and s == pytest.approx(-float(sum(lp[i, t] for i, t in enumerate([4, 5, 6, 7]))))



def test_nll_matches_a_full_fp64_log_softmax_at_vocabulary_size():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(128, 49152, generator=g) * 4
    ids = torch.randint(0, 49152, (128,), generator=g).tolist()
    lp = torch.log_softmax(logits.double()[:-1], -1)
    exact = -float(lp.gather(-1, torch.tensor(ids[1:])[:, None]).sum())
    s, k = nll(logits, ids)
    assert k == 127 and s == pytest.approx(exact, rel=1e-8)
    assert nll(logits.half(), ids)[0] == pytest.approx(-float(torch.log_softmax(logits.half().double()[:-1], -1)
                                                             .gather(-1, torch.tensor(ids[1:])[:, None]).sum()),
                                                     rel=1e-6)  # fp16 logits are scored in fp32, not fp16


def test_non_finite_rows_finds_nan_and_both_infinities_and_not_huge_finite_rows():
    logits = torch.randn(6, 1000)
    logits[1, 7], logits[3, 0], logits[4, 999] = math.nan, math.inf, -math.inf
    logits[2] = 3e38  # finite values whose sum overflows: not a non-finite row
    logits[5, :2] = torch.tensor([math.inf, -math.inf])  # the sum is NaN: still found
    assert non_finite_rows(logits) == [1, 3, 4, 5]
    assert non_finite_rows(torch.full((2, 70000), 60000.0).half()) == []  # fp16 sums overflow fp16, not fp32

@pytest.fixture(scope="module")
def llama(tiny_dir):
    from edgeslm.model.build import build_decoder
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    ckpt = load_checkpoint(resolve(str(tiny_dir("llama"))))
    return ckpt, build_decoder(ckpt, 64)


def test_reference_perplexity_reads_each_chunk_from_bos(llama):
    from edgeslm.parity.models import EagerDecoder

    ckpt, dec = llama
    tok = WithBos(ckpt.tokenizer)
    fixed, old = heldout_chunks(tok, 64), _old_chunks(tok, 64)
    model = EagerDecoder(dec)
    a, b = observe(model, [], fixed), observe(model, [], old)
    assert a.heldout_tokens == sum(len(c) - 1 for c in fixed) == HELDOUT_TOKENS - 1
    assert b.heldout_tokens == sum(len(c) - 1 for c in old)
    # later chunks without BOS: the same tokens read in another context, so another perplexity
    assert a.perplexity != pytest.approx(b.perplexity, rel=1e-6)
    # the same tokens (the second chunk's), scored after BOS and without it: another NLL
    assert fixed[0] == old[0] and fixed[1][1:] == old[1][:-1]
    with_bos = torch.log_softmax(model.logits(fixed[1][:3]).double(), -1)[1, fixed[1][2]]
    without = torch.log_softmax(model.logits(old[1][:2]).double(), -1)[0, old[1][1]]
    assert float(with_bos) != pytest.approx(float(without), rel=1e-6)


def _obs(logits, greedy=None) -> Observations:
    greedy = greedy or [[int(x.argmax()) for x in lg] for lg in logits]
    return Observations(logits, greedy, [[] for _ in logits])


def _parity_doc(check: Check) -> dict:
    return {"schema_version": "1.3", "kind": "edgeslm-parity", "model": "m", "target": "t",
            "passed": check.status is not Status.FAILED, "checks": [check.to_json()]}


def _assert_no_lying_figures(check: Check):
    m = check.metrics
    for k in ("max_abs_logit_diff", "top1_agreement", "top1_exact", "decisive_fraction", "kl_mean", "kl_max",
              "logit_sqnr_db"):
        assert m[k] is None, k
    text = json.dumps(check.to_json(), allow_nan=False)  # no NaN / Infinity in the JSON
    assert "300.0" not in text
    assert problems(_parity_doc(check), "parity") == []


def test_non_finite_candidate_logits_fail_whatever_the_bounds():
    torch.manual_seed(0)
    ref = [torch.randn(6, 16), torch.randn(4, 16)]
    cand = [r.clone() for r in ref]
    cand[0][1, 3] = math.nan
    cand[0][4] = math.nan
    cand[1][2, 0] = math.inf
    cand[1][3, 5] = -math.inf
    for th in (Thresholds(max_kl_mean=0.1), Thresholds(max_abs_logit_diff=1e-3, min_sqnr_db=5.0),
               Thresholds(min_greedy_prefix=0.0)):
        c = compare("lowering", "r", "c", _obs(ref), _obs(cand, [[int(x.argmax()) for x in r] for r in ref]),
                    ["p", "q"], th)
        assert c.status is Status.FAILED
        assert c.gate.failures[0] == "non-finite logits at 4 of 10 positions (NaN/inf)"
        assert c.metrics["non_finite_positions"] == 4
        _assert_no_lying_figures(c)
        assert [p["non_finite_positions"] for p in c.per_prompt] == [2, 2]
        assert all(p["max_abs_logit_diff"] is None and p["kl_mean"] is None for p in c.per_prompt)
        assert c.kl_by_position[1] is None and c.kl_by_position[0] is not None
        assert c.top1_by_position[4] is None
    # informational, or no gate: not gated, but the failure is carried (shown), never a pass
    for th in (Thresholds(informational=True), None):
        c = compare("end_to_end", "r", "c", _obs(ref), _obs(cand), ["p", "q"], th)
        assert c.status is Status.INFO and "non-finite logits at 4 of 10" in c.gate.failures[0]
        _assert_no_lying_figures(c)
    # re-judged from the JSON (edgeslm gate): the failure stands
    d = Check.from_json(c.to_json()).judge(Thresholds(max_kl_mean=0.1))
    assert d.status is Status.FAILED and "non-finite" in d.gate.failures[0]
    failures, _ = judge(Thresholds(max_kl_mean=0.1), dict(c.metrics), [])
    assert failures == ["non-finite logits at 4 positions (NaN/inf)"]


def test_non_finite_reference_logits_fail_too():
    ref = [torch.randn(3, 8)]
    ref[0][0] = math.inf
    c = compare("reauthoring", "r", "c", _obs(ref), _obs([torch.randn(3, 8)]), ["p"], Thresholds(max_kl_mean=1e9))
    assert c.status is Status.FAILED and c.metrics["non_finite_positions"] == 1
    _assert_no_lying_figures(c)


def test_finite_reports_unchanged():
    torch.manual_seed(1)
    ref = [torch.randn(5, 16)]
    c = compare("quantization", "r", "c", _obs(ref), _obs([ref[0] + 0.01 * torch.randn(5, 16)]), ["p"],
                Thresholds(max_kl_mean=0.1))
    assert c.status is Status.PASSED
    assert list(c.metrics) == ["max_abs_logit_diff", "top1_agreement", "top1_exact", "decisive_fraction", "kl_mean",
                               "kl_max", "logit_sqnr_db", "perplexity_reference", "perplexity_candidate", "ppl_rise",
                               "greedy_prefix_mean", "greedy_exact", "greedy_agreement", "greedy_ties"]
    assert "non_finite_positions" not in c.per_prompt[0]
    same = compare("lowering", "r", "c", _obs(ref), _obs(ref), ["p"], Thresholds(max_abs_logit_diff=1e-3))
    assert same.metrics["logit_sqnr_db"] == 300.0 and same.metrics["max_abs_logit_diff"] == 0.0
    assert same.status is Status.PASSED


def test_an_eager_decoder_emitting_inf_fails(llama, monkeypatch):
    from edgeslm.parity.models import EagerDecoder

    ckpt, dec = llama
    prompt_ids = [ckpt.tokenizer(p).input_ids for p in ("The quick brown fox", "def main():")]
    heldout = heldout_chunks(ckpt.tokenizer, 64)[:2]
    ref = observe(EagerDecoder(dec), prompt_ids, heldout, n=4)
    logits = dec._logits  # both paths' last step (one sequence, or a batch of them)
    monkeypatch.setattr(dec, "_logits", lambda *a, **k: logits(*a, **k) * math.inf)
    bad = observe(EagerDecoder(dec), prompt_ids, heldout, path=ref.greedy)
    assert bad.perplexity is None and bad.heldout_non_finite
    c = compare("lowering", "fp32", "broken", ref, bad, ["a", "b"], Thresholds(max_abs_logit_diff=1e-3))
    positions = sum(map(len, prompt_ids))
    assert c.status is Status.FAILED
    assert c.gate.failures[0] == f"non-finite logits at {positions} of {positions} positions (NaN/inf)"
    assert "held-out" in c.gate.failures[1]
    assert c.metrics["perplexity_candidate"] is None and c.metrics["ppl_rise"] is None
    assert c.metrics["perplexity_reference"] is not None
    _assert_no_lying_figures(c)
