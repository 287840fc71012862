"""The three kinds of model parity compares, behind one interface: teacher-forced logits and greedy tokens.

- the original transformers model (the reference),
- the re-authored eager decoder (fp32 or quantized),
- an artifact run in its runtime (e.g. a .pte in ExecuTorch).
"""

from __future__ import annotations

from typing import Protocol

import torch


class ParityModel(Protocol):
    def logits(self, ids: list[int]) -> torch.Tensor:
        """``[len(ids), vocab]`` logits, position i predicting token i+1."""

    def greedy(self, ids: list[int], n: int) -> list[int]:
        """``n`` greedily chosen tokens after ``ids`` (eos does not stop it)."""


class HFModel:
    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def logits(self, ids):
        return self.model(torch.tensor([ids])).logits[0].float()

    @torch.no_grad()
    def greedy(self, ids, n):
        out = self.model(torch.tensor([ids]), use_cache=True)
        past, toks = out.past_key_values, []
        nxt = int(out.logits[0, -1].argmax())
        for _ in range(n):
            toks.append(nxt)
            if len(toks) == n:
                break
            out = self.model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, nxt = out.past_key_values, int(out.logits[0, -1].argmax())
        return toks


class EagerDecoder:
    """Our decoder run eagerly in PyTorch (prefill all positions at once, then one token per step)."""

    def __init__(self, decoder):
        self.decoder = decoder

    @torch.no_grad()
    def logits(self, ids):
        self.decoder.full_logits = True
        try:
            return self.decoder(torch.tensor([ids]), torch.arange(len(ids)))[0].float()
        finally:
            self.decoder.full_logits = False

    @torch.no_grad()
    def greedy(self, ids, n):
        d = self.decoder
        logits = d(torch.tensor([ids]), torch.arange(len(ids)))[0]
        toks, pos = [], len(ids)
        for _ in range(n):
            toks.append(int(logits.argmax()))
            if len(toks) == n:
                break
            logits = d(torch.tensor([[toks[-1]]]), torch.tensor([pos]))[0]
            pos += 1
        return toks


class RuntimeStepModel:
    """An artifact whose runtime exposes ``step(tokens, start_pos) -> last logits`` (the decode path)."""

    def __init__(self, runtime):
        self.rt = runtime

    def logits(self, ids):
        # Token by token: every position's logits go through the decode path the app uses.
        return torch.stack([self.rt.step([t], i) for i, t in enumerate(ids)]).float()

    def greedy(self, ids, n):
        logits = self.rt.step(list(ids), 0)  # the prefill path
        toks, pos = [], len(ids)
        for _ in range(n):
            toks.append(int(logits.argmax()))
            if len(toks) == n:
                break
            logits = self.rt.step([toks[-1]], pos)
            pos += 1
        return toks
