"""The three kinds of model parity compares, behind one interface: teacher-forced logits and greedy tokens.

- the original transformers model (the reference),
- the re-authored eager decoder (fp32 or quantized),
- an artifact run in its runtime (e.g. a .pte in ExecuTorch).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Callable, Iterator, Protocol

import torch

from edgeslm.parity.kernels import onednn_linears

TOP_K = 5  # alternatives recorded per greedy step, to tell a near-tie divergence from a real one
POSITIONS_PER_PASS = 512  # teacher-forced sequences share a forward up to this many padded positions


@contextmanager
def torch_on_one_thread() -> Iterator[None]:
    """torch on one thread while a runtime's own thread pool steps: after each parallel op torch's OpenMP workers
    spin-wait and take the cores the runtime's next step needs (SmolLM2-135M shape, onnxruntime on 2 cores: a
    greedy step with its top-k 9.1 ms with torch on 2 threads, 4.8 ms on one). The numbers are the same."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def top_alternatives(logits: torch.Tensor) -> dict:
    """The top-k token ids and log-probabilities of one position's logits."""
    top = torch.log_softmax(logits.double().reshape(-1), -1).topk(TOP_K)
    return {"ids": top.indices.tolist(), "logprobs": top.values.tolist()}


def greedy_loop(prefill: Callable[[list[int]], torch.Tensor], step: Callable[[int, int], torch.Tensor],
                ids: list[int], n: int, tops: list | None = None) -> list[int]:
    """``n`` argmax tokens: ``prefill(ids)`` gives the last logits, ``step(token, pos)`` the next ones. With
    ``tops``, each step's top-k token ids and log-probabilities are appended to it."""
    logits, toks = prefill(list(ids)), []
    for pos in range(len(ids), len(ids) + n):
        toks.append(int(logits.argmax()))
        if tops is not None:
            tops.append(top_alternatives(logits))
        if len(toks) < n:
            logits = step(toks[-1], pos)
    return toks


def _eager(method):
    """An eager model's method run without autograd and with its linears through oneDNN (parity/kernels.py)."""
    @functools.wraps(method)
    def run(self, *args, **kwargs):
        with torch.no_grad(), onednn_linears(self.module):
            return method(self, *args, **kwargs)
    return run


class ParityModel(Protocol):
    def logits(self, ids: list[int]) -> torch.Tensor:
        """``[len(ids), vocab]`` logits, position i predicting token i+1."""

    def greedy(self, ids: list[int], n: int, tops: list | None = None) -> list[int]:
        """``n`` greedily chosen tokens after ``ids`` (eos does not stop it); see :func:`greedy_loop`."""


def logits_of(model: ParityModel, seqs: list[list[int]]) -> Iterator[torch.Tensor]:
    """Each sequence's teacher-forced logits ``[len(seq), vocab]``, in order. A model with ``logits_batch``
    scores them right-padded in batches of at most :data:`POSITIONS_PER_PASS` positions (a causal model's rows
    before the padding do not see it; one pass each gives the same numbers: tests/test_parity_batching.py),
    any other one pass per sequence."""
    batch = getattr(model, "logits_batch", None)
    if batch is None:
        yield from (model.logits(s) for s in seqs)
        return
    group: list[list[int]] = []
    for s in seqs:
        if group and max(map(len, group + [s])) * (len(group) + 1) > POSITIONS_PER_PASS:
            yield from batch(group)
            group = []
        group.append(s)
    if group:
        yield from batch(group)


class HFModel:
    def __init__(self, model):
        self.model = self.module = model

    @_eager
    def logits(self, ids):
        return self.model(torch.tensor([ids])).logits[0].float()

    @_eager
    def logits_batch(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """:meth:`logits` of each sequence from one right-padded forward (causal: no mask needed)."""
        out = self.model(_right_padded(seqs)).logits
        return [out[i, :len(s)].float() for i, s in enumerate(seqs)]

    @_eager
    def greedy(self, ids, n, tops=None):
        state = {}

        def run(tokens, past=None):
            out = self.model(torch.tensor([tokens]), past_key_values=past, use_cache=True)
            state["past"] = out.past_key_values
            return out.logits[0, -1]

        return greedy_loop(run, lambda tok, pos: run([tok], state["past"]), ids, n, tops)

    @_eager
    def greedy_batch(self, prompts: list[list[int]], n: int) -> tuple[list[list[int]], list[list[dict]],
                                                                     list[torch.Tensor]]:
        """Greedy tokens (and each step's alternatives) for all prompts at once, left-padded under an attention
        mask: one forward per step for the batch instead of one per prompt and step. Also each prompt's own
        logits from that first forward (its teacher-forced logits, without a pass of its own)."""
        width = max(map(len, prompts))
        ids = torch.tensor([[0] * (width - len(p)) + list(p) for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(ids, attention_mask=mask, position_ids=pos, use_cache=True)
        prompt_logits = [out.logits[i, width - len(p):].float() for i, p in enumerate(prompts)]
        toks: list[list[int]] = [[] for _ in prompts]
        tops: list[list[dict]] = [[] for _ in prompts]
        for step in range(n):
            logits = out.logits[:, -1].float()
            nxt = logits.argmax(-1)
            for i, row in enumerate(logits):
                toks[i].append(int(nxt[i]))
                tops[i].append(top_alternatives(row))
            if step + 1 == n:
                break
            mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], dim=1)
            pos = pos[:, -1:] + 1
            out = self.model(nxt[:, None], attention_mask=mask, position_ids=pos, past_key_values=out.past_key_values,
                             use_cache=True)
        return toks, tops, prompt_logits


class EagerDecoder:
    """Our decoder run eagerly in PyTorch (prefill all positions at once, then one token per step)."""

    def __init__(self, decoder):
        self.decoder = self.module = decoder

    @_eager
    def logits(self, ids):
        self.decoder.full_logits = True
        try:
            return self.decoder(torch.tensor([ids]), torch.arange(len(ids)))[0].float()
        finally:
            self.decoder.full_logits = False

    @property
    def logits_batch(self):
        """:meth:`logits` of many sequences in one right-padded pass through the functional (cache in, cache
        out) path; None where attention runs executorch's custom ops, which hold a batch-1 cache."""
        if any(layer.self_attn.use_custom_ops for layer in self.decoder.layers):
            return None
        return self._logits_batch

    @_eager
    def _logits_batch(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        d, n = self.decoder, len(seqs)
        ids = _right_padded(seqs)
        past = [torch.zeros(n, layer.self_attn.n_kv, 0, layer.self_attn.hd, dtype=layer.self_attn.k_cache.dtype)
                for layer in d.layers for _ in "kv"]
        logits, _ = d.forward_with_past(ids, torch.arange(ids.shape[1]), past)
        return [logits[i, :len(s)].float() for i, s in enumerate(seqs)]

    @_eager
    def greedy(self, ids, n, tops=None):
        d = self.decoder
        return greedy_loop(lambda t: d(torch.tensor([t]), torch.arange(len(t)))[0],
                           lambda tok, pos: d(torch.tensor([[tok]]), torch.tensor([pos]))[0], ids, n, tops)


class RuntimeStepModel:
    """An artifact whose runtime exposes ``step(tokens, start_pos) -> last logits`` (the decode path)."""

    def __init__(self, runtime):
        self.rt = runtime

    def logits(self, ids):
        # A runtime that returns every position's logits scores ``ids`` in one prefill pass; otherwise token by
        # token, through the decode path.
        prefill = getattr(self.rt, "prefill", None)
        with torch_on_one_thread():
            if prefill is not None:
                return prefill(list(ids)).float()
            return torch.stack([self.rt.step([t], i) for i, t in enumerate(ids)]).float()

    def logits_along(self, prompt, cont):
        """The app's path: ``prompt`` prefilled, then ``cont`` decoded a token at a time (both kernels scored)."""
        if getattr(self.rt, "prefill", None) is None:
            return self.logits(list(prompt) + list(cont))
        with torch_on_one_thread():
            rows = [self.rt.prefill(list(prompt))]
            rows += [self.rt.step([t], len(prompt) + i)[None] for i, t in enumerate(cont)]
            return torch.cat(rows).float()

    def greedy(self, ids, n, tops=None):
        # prefill in one call (the runner's prefill path), then one token per step
        with torch_on_one_thread():
            return greedy_loop(lambda t: self.rt.step(t, 0), lambda tok, pos: self.rt.step([tok], pos), ids, n,
                               tops)


def _right_padded(seqs: list[list[int]]) -> torch.Tensor:
    """``[len(seqs), longest]`` token ids, each sequence followed by zeros."""
    width = max(map(len, seqs))
    return torch.tensor([list(s) + [0] * (width - len(s)) for s in seqs])
