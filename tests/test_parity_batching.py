"""Eager models score teacher-forced sequences right-padded in batches (parity's speed at real size): each
sequence's logits are the ones a pass of its own gives, in every family, and runtimes step with torch on one
thread without that changing a number."""

from __future__ import annotations

import pytest
import torch

from edgeslm.model.build import build_decoder
from edgeslm.parity import models
from edgeslm.parity.models import EagerDecoder, HFModel, logits_of, torch_on_one_thread
from edgeslm.pipeline.reference import load
from edgeslm.quant.recipes import get_recipe
from edgeslm.testing.tiny import CONFIGS

LENGTHS = (5, 17, 9, 30, 12)  # past gemma's 8-position sliding window, unequal so most rows are padded


def _sequences(vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(0)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in LENGTHS]


def _same_as_one_by_one(model, seqs, monkeypatch, atol):
    monkeypatch.setattr(models, "POSITIONS_PER_PASS", 64)  # several batches, so their seams are crossed
    assert model.logits_batch is not None
    batched = list(logits_of(model, seqs))
    assert [b.shape[0] for b in batched] == [len(s) for s in seqs]
    for s, b in zip(seqs, batched, strict=True):
        torch.testing.assert_close(b, model.logits(s), atol=atol, rtol=0)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_batched_eager_logits_are_each_sequences_own(family, tiny_dir, monkeypatch):
    _, ckpt = load(str(tiny_dir(family)), None)
    seqs = _sequences(ckpt.config.vocab_size)
    _same_as_one_by_one(EagerDecoder(build_decoder(ckpt, 64)), seqs, monkeypatch, atol=1e-5)
    _same_as_one_by_one(HFModel(ckpt.reference_model()), seqs, monkeypatch, atol=1e-5)


def test_batched_quantized_eager_logits_are_each_sequences_own(tiny_dir, monkeypatch):
    _, ckpt = load(str(tiny_dir("llama")), None)
    dec = build_decoder(ckpt, 64, recipe=get_recipe("int4", 32))
    _same_as_one_by_one(EagerDecoder(dec), _sequences(ckpt.config.vocab_size), monkeypatch, atol=1e-5)


def test_executorchs_custom_op_attention_is_scored_one_sequence_at_a_time(tiny_dir):
    """Its cache holds one sequence: no batch path is offered, and logits_of falls back to one pass each."""
    _, ckpt = load(str(tiny_dir("llama")), None)
    model = EagerDecoder(build_decoder(ckpt, 64, use_custom_ops=True))
    assert model.logits_batch is None
    seqs = _sequences(ckpt.config.vocab_size)[:2]
    for s, got in zip(seqs, logits_of(model, seqs), strict=True):
        torch.testing.assert_close(got, model.logits(s), atol=0, rtol=0)


def test_torch_on_one_thread_gives_the_threads_back():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_on_one_thread():
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before
