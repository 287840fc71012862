"""The three kinds of model parity compares, behind one interface: teacher-forced logits and greedy tokens.

- the original transformers model (the reference),
- the re-authored eager decoder (fp32 or quantized),
- an artifact run in its runtime (e.g. a .pte in ExecuTorch).
"""

from __future__ import annotations

from typing import Protocol

from typing import Callable

import torch


TOP_K = 5  # alternatives recorded per greedy step, to tell a near-tie divergence from a real one


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


class ParityModel(Protocol):
    def logits(self, ids: list[int]) -> torch.Tensor:
        """``[len(ids), vocab]`` logits, position i predicting token i+1."""

    def greedy(self, ids: list[int], n: int, tops: list | None = None) -> list[int]:
        """``n`` greedily chosen tokens after ``ids`` (eos does not stop it); see :func:`greedy_loop`."""


def logits_along(model: ParityModel, prompt: list[int], cont: list[int]) -> torch.Tensor:
    """``model``'s logits over ``prompt + cont``; a runtime model scores them the way an app runs them
    (``logits_along``: the prompt prefilled, the continuation decoded), any other in one pass."""
    along = getattr(model, "logits_along", None)
    return along(prompt, cont) if along is not None else model.logits(list(prompt) + list(cont))


class HFModel:
    def __init__(self, model):
        self.model = model

    @torch.no_grad()
    def logits(self, ids):
        return self.model(torch.tensor([ids])).logits[0].float()

    @torch.no_grad()
    def greedy(self, ids, n, tops=None):
        state = {}

        def run(tokens, past=None):
            out = self.model(torch.tensor([tokens]), past_key_values=past, use_cache=True)
            state["past"] = out.past_key_values
            return out.logits[0, -1]

        return greedy_loop(run, lambda tok, pos: run([tok], state["past"]), ids, n, tops)

    @torch.no_grad()
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
        self.decoder = decoder

    @torch.no_grad()
    def logits(self, ids):
        self.decoder.full_logits = True
        try:
            return self.decoder(torch.tensor([ids]), torch.arange(len(ids)))[0].float()
        finally:
            self.decoder.full_logits = False

    @torch.no_grad()
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
        if prefill is not None:
            return prefill(list(ids)).float()
        return torch.stack([self.rt.step([t], i) for i, t in enumerate(ids)]).float()

    def logits_along(self, prompt, cont):
        """The app's path: ``prompt`` prefilled, then ``cont`` decoded a token at a time (both kernels scored)."""
        if getattr(self.rt, "prefill", None) is None:
            return self.logits(list(prompt) + list(cont))
        rows = [self.rt.prefill(list(prompt))]
        rows += [self.rt.step([t], len(prompt) + i)[None] for i, t in enumerate(cont)]
        return torch.cat(rows).float()

    def greedy(self, ids, n, tops=None):
        # prefill in one call (the runner's prefill path), then one token per step
        return greedy_loop(lambda t: self.rt.step(t, 0), lambda tok, pos: self.rt.step([tok], pos), ids, n, tops)
