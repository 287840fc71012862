"""Small pure pieces: metrics, recipe rules, target parsing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeslm.errors import InputError
from edgeslm.parity.metrics import compare_logits, greedy_prefix
from edgeslm.gates import Thresholds, judge
from edgeslm.quant.recipes import Recipe, Rule, get_recipe, plan


def test_compare_identical_and_different_logits():
    a = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    same = compare_logits(a, a.clone())
    assert same.max_abs == 0 and all(same.top1) and max(same.kl) < 1e-12
    b = a.clone()
    b[1] = torch.tensor([3.0, 0.0, 1.0])
    diff = compare_logits(a, b)
    assert diff.top1 == [True, False] and diff.kl[1] > 0.5 and diff.max_abs == 3.0


def test_greedy_prefix_stops_at_first_divergence():
    assert greedy_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert greedy_prefix([1, 2], [1, 2]) == 2


def test_thresholds_report_each_failure():
    m = {"max_abs_logit_diff": 2.0, "top1_agreement": 0.5, "kl_mean": 0.3, "greedy_agreement": 0.1,
         "logit_sqnr_db": 3.0, "ppl_rise": 0.2}
    failures, notes = judge(Thresholds(1.0, 0.9, 0.1, 0.5, 6.0, 0.1), m, [])
    assert len(failures) == 6 and not notes
    assert judge(Thresholds(informational=True), m, []) == ([], [])


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(10, 64)
        self.proj = nn.Linear(64, 64)
        self.lm_head = nn.Linear(64, 10)


def test_recipe_first_matching_rule_wins():
    r = Recipe("x", (Rule("lm_head", "8w"), Rule("embed_tokens", "fp32"), Rule("*", "8da4w", 32)), "")
    chosen = plan(Tiny(), r)
    assert chosen["lm_head"].scheme == "8w" and chosen["proj"].scheme == "8da4w"
    assert "embed_tokens" not in chosen


def test_recipe_rejects_bad_group_and_scheme():
    with pytest.raises(InputError, match="not a multiple of group size 48"):
        plan(Tiny(), get_recipe("8da4w", group_size=48))
    with pytest.raises(InputError, match="cannot apply to embed_tokens"):
        plan(Tiny(), Recipe("x", (Rule("*", "8da4w", 32),), ""))


def test_group_size_override_changes_only_grouped_rules():
    r = get_recipe("8da4w", group_size=64)
    assert [(x.scheme, x.group_size) for x in r.rules] == [("8w", 0), ("8da8w", 0), ("8da4w", 64)]


def test_builtin_android_target_parses():
    from edgeslm.target import load_target

    t = load_target("android")
    assert t.backends == ("executorch", "onnx")
    assert t.recipe_for("executorch") == "8da4w-asym" and t.recipe_for("onnx") == "int4-asym"
    assert t.thresholds("8da4w-asym", "quantization").min_top1 is not None
    assert t.thresholds("int4-asym", "quantization").max_ppl_rise == 0.10
    assert t.options["onnx"]["provider_options"] == [{"xnnpack": {}}]
    assert t.thresholds("fp32", "reauthoring") == t.gates["reauthoring"]


def test_recipe_not_supported_by_backend(tiny_dir, tmp_path):
    from edgeslm.pipeline import export

    with pytest.raises(InputError, match="recipe '8da4w' is not available for the onnx backend"):
        export(str(tiny_dir("llama")), "jetson-orin", tmp_path / "o", recipe="8da4w")
    assert not (tmp_path / "o").exists()


def test_an_export_freezes_what_lives_long_and_hands_it_back(tmp_path, monkeypatch):
    """The collector skips the imports and the checkpoint while an export runs (full collections 3x cheaper),
    and gets them back when it ends, however it ends."""
    import gc

    from edgeslm import pipeline
    from edgeslm.request import ExportRequest

    seen = []

    def load(*args):
        seen.append(gc.get_freeze_count())
        raise InputError("no such model", "stop here")

    monkeypatch.setattr(pipeline, "load", load)
    before = gc.get_freeze_count()
    with pytest.raises(InputError):
        pipeline.export_targets(ExportRequest.of("whatever", ["android"], tmp_path / "out"))
    assert seen and seen[0] > before
    assert gc.get_freeze_count() == before == 0


def test_fp32_decoder_shares_the_reference_tensors(tiny_dir):
    """The parity reference's fp32 decoder is built from the transformers model's own fp32 tensors (no second read
    and conversion of the checkpoint): same storage, and the same logits as a decoder read from disk."""
    from edgeslm.model.build import build_decoder
    from edgeslm.model.checkpoint import SharedWeights, load_checkpoint
    from edgeslm.model.source import resolve
    from edgeslm.parity.models import EagerDecoder

    ckpt = load_checkpoint(resolve(str(tiny_dir("qwen2")), None))
    filled: dict = {}
    ref = ckpt.reference_model(filled)
    assert set(filled) == set(ckpt.weights)
    shared = build_decoder(ckpt, 64, untie=False, weights=SharedWeights(ckpt.weights, filled))
    assert shared.layers[0].mlp.up_proj.weight.data_ptr() == ref.model.layers[0].mlp.up_proj.weight.data_ptr()
    ids = [2, 7, 40, 11, 9, 30, 5, 8, 12, 3]
    assert torch.equal(EagerDecoder(shared).logits(ids), EagerDecoder(build_decoder(ckpt, 64, untie=False)).logits(ids))
