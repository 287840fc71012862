"""Gates users can trust: near-ties never fail a healthy model, nothing passes silently, typos are refused."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.gates import DECISIVE_MARGIN, Thresholds, greedy_agreement, judge, parse_gate_tables
from edgeslm.parity.stages import Observations, compare
from edgeslm.records import Status


def _obs(logits: list[torch.Tensor], greedy=None, tops=None) -> Observations:
    greedy = greedy or [[int(x.argmax()) for x in lg] for lg in logits]
    return Observations(logits, greedy, tops or [[] for _ in logits])


def test_near_ties_do_not_count_against_top1():
    # Reference: position 0 decisive (margin 2), position 1 a near-tie (margin 0.01).
    ref = torch.tensor([[2.0, 0.0, -1.0], [1.0, 0.99, -1.0]])
    cand = torch.tensor([[2.0, 0.1, -1.0], [0.99, 1.0, -1.0]])  # flips the near-tie only
    c = compare("quantization", "r", "c", _obs([ref]), _obs([cand]), ["p"], Thresholds(min_top1=1.0))
    assert c.metrics["top1_exact"] == 0.5
    assert c.metrics["top1_agreement"] == 1.0 and c.metrics["decisive_fraction"] == 0.5
    assert c.status is Status.PASSED
    flipped = torch.tensor([[0.0, 2.0, -1.0], [1.0, 0.99, -1.0]])  # flips the decisive position
    c = compare("quantization", "r", "c", _obs([ref]), _obs([flipped]), ["p"], Thresholds(min_top1=1.0))
    assert c.metrics["top1_agreement"] == 0.0 and c.status is Status.FAILED


def test_flat_reference_top1_not_applicable_but_never_a_silent_pass():
    ref = torch.zeros(4, 8) + torch.linspace(0, 0.01, 8)  # a flat distribution: no decisive position
    cand = ref.flip(-1)
    c = compare("quantization", "r", "c", _obs([ref]), _obs([cand]), ["p"], Thresholds(min_top1=0.9))
    assert c.metrics["top1_agreement"] is None
    assert c.status is Status.FAILED and "no bound of this gate applies" in c.gate.failures[0]
    c = compare("quantization", "r", "c", _obs([ref]), _obs([cand]), ["p"], Thresholds(min_top1=0.9, max_kl_mean=0.1))
    assert c.status is Status.PASSED and "not applicable" in c.gate.notes[0]


def test_sqnr_is_scale_free_and_catches_large_relative_damage():
    torch.manual_seed(0)
    ref = torch.randn(16, 64) * 0.05  # a random-weight model's flat logits: KL is tiny whatever happens
    noisy = ref + torch.randn(16, 64) * 0.05  # damage as large as the signal
    c = compare("quantization", "r", "c", _obs([ref]), _obs([noisy]), ["p"],
                Thresholds(max_kl_mean=0.1, min_sqnr_db=5.0))
    assert c.metrics["kl_mean"] < 0.01 and abs(c.metrics["logit_sqnr_db"]) < 2
    assert c.status is Status.FAILED and "SQNR" in c.gate.failures[0]
    mild = ref + torch.randn(16, 64) * 0.005
    c2 = compare("quantization", "r", "c", _obs([ref]), _obs([mild]), ["p"], Thresholds(min_sqnr_db=5.0))
    assert 15 < c2.metrics["logit_sqnr_db"] < 25 and c2.status is Status.PASSED


def test_greedy_divergence_accepted_only_within_the_tie_margin():
    rows = [{"greedy_prefix": 3, "greedy_tokens": 8, "divergence_margin": 1e-6},
            {"greedy_prefix": 8, "greedy_tokens": 8, "divergence_margin": None},
            {"greedy_prefix": 2, "greedy_tokens": 8, "divergence_margin": 0.3},
            {"greedy_prefix": 0, "greedy_tokens": 8, "divergence_margin": None}]  # token outside the top-k
    mean, ties = greedy_agreement(rows, 1e-3)
    assert ties == 1 and mean == pytest.approx((1 + 1 + 2 / 8 + 0) / 4)
    mean, ties = greedy_agreement(rows, DECISIVE_MARGIN)
    assert ties == 2
    # an exact stage's tolerance is twice its max |Δlogit| bound
    assert Thresholds(max_abs_logit_diff=1e-3).tie_tolerance() == 2e-3
    assert Thresholds(min_top1=0.9).tie_tolerance() == DECISIVE_MARGIN


def test_greedy_tie_from_recorded_alternatives():
    ref_logits = [torch.tensor([[0.0, 1.0, 0.0]])]
    ref = Observations(ref_logits, [[1, 1, 1]],
                       [[{"ids": [1, 2], "logprobs": [-0.5, -0.5000001]}] * 3])
    cand = Observations(ref_logits, [[2, 2, 2]], [[]])
    c = compare("lowering", "r", "c", ref, cand, ["p"], Thresholds(max_abs_logit_diff=1e-3, min_greedy_prefix=1.0))
    assert c.per_prompt[0]["divergence_margin"] == pytest.approx(1e-7)
    assert c.metrics["greedy_ties"] == 1 and c.status is Status.PASSED
    far = Observations(ref_logits, [[1, 1, 1]], [[{"ids": [1, 2], "logprobs": [-0.1, -3.0]}] * 3])
    c = compare("lowering", "r", "c", far, cand, ["p"], Thresholds(max_abs_logit_diff=1e-3, min_greedy_prefix=1.0))
    assert c.metrics["greedy_ties"] == 0 and c.status is Status.FAILED


def test_informational_gate_is_reported_not_passed():
    m = {"kl_mean": 5.0}
    th = Thresholds(max_kl_mean=0.1, informational=True)
    failures, _ = judge(th, m, [])
    from edgeslm.records import GateResult

    assert GateResult(th, failures).status is Status.INFO
    assert GateResult(None).status is Status.INFO


@pytest.mark.parametrize("tables, needles", [
    ({"8da4W": {"quantization": {"min_top1": 0.9}}}, ["unknown recipe '8da4W'", "did you mean '8da4w'"]),
    ({"int4-block32": {"quantization": {"min_top1": 0.9}}}, ["alias of recipe 'int4'", "[gates.int4."]),
    ({"int4": {"quantisation": {"min_top1": 0.9}}}, ["unknown stage 'quantisation'", "did you mean 'quantization'"]),
    ({"int4": {"quantization": {"min_top": 0.9}}}, ["unknown key 'min_top'", "did you mean 'min_top1'"]),
    ({"int4": {"quantization": {}}}, ["sets no bound"]),
    ({"int4": {"quantization": {"min_top1": "high"}}}, ["must be a number"]),
    ({"reauthoring": 5}, ["must be a table"]),
])
def test_gate_tables_are_validated(tables, needles):
    with pytest.raises(InputError) as e:
        parse_gate_tables(tables, "t.toml")
    for n in needles:
        assert n in str(e.value), str(e.value)


def _target(tmp_path, gates: str, backends='["executorch"]', recipe='"8da4w"'):
    t = tmp_path / "t.toml"
    t.write_text(f'name = "t"\nbackends = {backends}\nrecipe = {recipe}\ncontext_length = 128\n'
                 '[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n' + gates)
    return t


@pytest.mark.parametrize("gates, needles", [
    ('[gates.8da4W.quantization]\nmin_top1 = 0.9\n[gates.8da4w.lowering]\nmin_top1 = 0.9\n',
     ["unknown recipe '8da4W'", "did you mean '8da4w'"]),
    ('[gates.int4-block32.quantization]\nmin_top1 = 0.9\n', ["alias of recipe 'int4'"]),
    ('[gates.8da4w.lowering]\nmin_top1 = 0.9\n', ["no gate for the quantization stage of recipe 8da4w",
                                                    "informational = true"]),
])
def test_cli_refuses_mistyped_aliased_or_missing_gates_before_any_work(tmp_path, gates, needles):
    t = _target(tmp_path, gates)
    res = CliRunner().invoke(main, ["export", "./no-such-model", "--target", str(t), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    for n in needles:
        assert n in res.stderr, res.stderr
    assert not (tmp_path / "o").exists()


def test_informational_stage_is_reported_never_passed(tiny_dir, tmp_path):
    import json

    t = _target(tmp_path, '[gates.8da4w.quantization]\ninformational = true\n'
                          '[gates.8da4w.lowering]\nmin_top1 = 0.9\nmax_kl_mean = 0.05\n')
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "--target", str(t), "-o", str(out),
                                    "--no-bench"])
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "parity.json").read_text())
    q = next(c for c in doc["checks"] if c["stage"] == "quantization")
    assert q["status"] == "info" and q["gate"]["passed"] is False
    assert "Reported, not gated" in (out / "parity.md").read_text()
    m = json.loads((out / "manifest.json").read_text())
    assert m["artifacts"][0]["validation"]["quantization"] == "informational, not gated"
    assert math.isfinite(q["metrics"]["logit_sqnr_db"])
