"""Run an ONNX bundle folder here: plain onnxruntime (parity, CPU EP) and onnxruntime-genai (generation)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgeslm.backends.onnx.export import MODEL_FILE
from edgeslm.backends.stream import load_tokenizer, stream_text
from edgeslm.errors import InputError


class OrtModel:
    """``step(tokens, start_pos) -> last logits`` over an onnxruntime session, carrying past/present KV."""

    def __init__(self, folder: Path):
        import onnxruntime as ort

        cfg = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
        self.sess = ort.InferenceSession(str(folder / MODEL_FILE), providers=["CPUExecutionProvider"])
        self.n_layers, self.n_kv, self.hd = cfg["num_hidden_layers"], cfg["num_key_value_heads"], cfg["head_size"]
        kv_type = next(i.type for i in self.sess.get_inputs() if i.name == "past_key_values.0.key")
        # the traced graph takes position_ids; the written one derives positions from attention_mask
        self.positions = any(i.name == "position_ids" for i in self.sess.get_inputs())
        self.kv_dtype = np.float16 if "float16" in kv_type else np.float32
        self.past: list[np.ndarray] = []

    def step(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        return self._run(tokens, start_pos)[-1]

    def prefill(self, tokens: list[int]) -> torch.Tensor:
        """Every position's logits ``[len(tokens), vocab]`` of one pass from an empty cache (the prefill path),
        the cache kept for the decode steps that follow."""
        return self._run(tokens, 0)

    def _run(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        if start_pos == 0:
            self.past = [np.zeros((1, self.n_kv, 0, self.hd), self.kv_dtype) for _ in range(2 * self.n_layers)]
        elif self.past[0].shape[2] != start_pos:
            raise ValueError(f"step at {start_pos} but the cache holds {self.past[0].shape[2]} positions")
        logits, *self.past = self.sess.run(None, self.feeds(tokens, start_pos))
        return torch.from_numpy(logits[0].astype(np.float32))

    def feeds(self, tokens: list[int], start_pos: int) -> dict:
        """The graph's inputs for ``tokens`` at ``start_pos`` over the cache held."""
        n = len(tokens)
        feeds = {"input_ids": np.array([tokens], np.int64), "attention_mask": np.ones((1, start_pos + n), np.int64)}
        if self.positions:
            feeds["position_ids"] = np.arange(start_pos, start_pos + n, dtype=np.int64)[None]
        for i in range(self.n_layers):
            feeds[f"past_key_values.{i}.key"] = self.past[2 * i]
            feeds[f"past_key_values.{i}.value"] = self.past[2 * i + 1]
        return feeds


def padded_length(folder: Path, n: int) -> int:
    """Positions a prompt of ``n`` tokens takes in onnxruntime-genai: with a sliding window (static-shape QNN
    models) the prompt is front-padded to a multiple of the window, and the pads count against max_length."""
    window = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"].get("sliding_window")
    return -(-n // window["window_size"]) * window["window_size"] if window else n


def load_genai_model(folder: Path, overlay: dict | None = None, all_cores: bool = False):
    """onnxruntime_genai.Model on this machine's CPU: the folder's configured EPs (CUDA, QNN, ...) are for the
    device and are not available here, so they are cleared for local runs (the files are left untouched).
    ``overlay`` is applied over the folder's genai_config.json first (e.g. speculative.json adding a draft).
    ``all_cores``: one intra-op thread per core this process may use, for the checks run here; genai's own default
    (half the hardware threads, as it assumes SMT) is what an app gets and what bench times. Thread count does not
    change MatMulNBits' or attention's arithmetic (each output is summed by one thread in the same order): greedy
    tokens and logits are the same bit for bit (tests/test_onnx_graph.py)."""
    import onnxruntime_genai as og

    config = og.Config(str(folder))
    if overlay is not None:
        config.overlay(json.dumps(overlay))
    if all_cores:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        config.overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
    config.clear_providers()
    return og.Model(config)


def generate_with_genai(folder: Path, prompt: str, max_new_tokens: int, temperature: float = 0.0,
                        on_token: Callable[[str], None] | None = None, eos_ids: list[int] | None = None) -> str:
    """Generate through onnxruntime_genai (the runtime the mobile and Jetson apps link): its tokenizer encodes
    the prompt and its generator picks the tokens; their ids stream as whole characters through
    :class:`edgeslm.backends.stream.TextStream` (the folder's tokenizer.json), stopping at ``eos_ids`` (default:
    genai_config's eos_token_id). genai's own ``TokenizerStream`` also holds back partial characters and skips
    special tokens (onnxruntime-genai 0.18), but every runtime's text goes through the one shared helper."""
    import onnxruntime_genai as og

    model = load_genai_model(folder)
    cfg = json.loads((folder / "genai_config.json").read_text())["model"]
    if eos_ids is None:
        eos = cfg.get("eos_token_id", [])
        eos_ids = eos if isinstance(eos, list) else [eos]
    ids = og.Tokenizer(model).encode(prompt)
    if not 0 < padded_length(folder, len(ids)) < cfg["context_length"]:
        raise InputError(f"the prompt is {len(ids)} tokens; the context length is {cfg['context_length']}",
                         "pass a non-empty prompt shorter than the context, or export with a larger --context-length")
    params = og.GeneratorParams(model)
    opts = {"max_length": min(padded_length(folder, len(ids)) + max_new_tokens, cfg["context_length"])}
    if temperature > 0:
        opts.update(do_sample=True, temperature=temperature)
    else:
        opts.update(do_sample=False)
    params.set_search_options(**opts)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)

    def tokens():
        while not gen.is_done():
            gen.generate_next_token()
            yield int(gen.get_next_tokens()[0])

    return stream_text(tokens(), load_tokenizer(folder / "tokenizer.json"), eos_ids, on_token)


def _genai_greedy(model, folder: Path, ids: list[int], n: int):
    """onnxruntime_genai's own greedy generator over a tokenized prompt: (at most ``n`` token ids, generator)."""
    import onnxruntime_genai as og

    params = og.GeneratorParams(model)
    params.set_search_options(do_sample=False, max_length=padded_length(folder, len(ids)) + n)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    out = []
    while not gen.is_done() and len(out) < n:
        gen.generate_next_token()
        out.append(int(gen.get_next_tokens()[0]))
    return out, gen


def genai_greedy_tokens(folder: Path, prompt_ids: list[list[int]], lengths: list[int]) -> list[list[int]]:
    """Greedy token ids from onnxruntime_genai's own generator for each tokenized prompt, the model loaded once:
    at most ``lengths[i]``, fewer when it stops at an eos token (forcing ``min_length`` instead would mask eos and
    change what greedy picks)."""
    model = load_genai_model(folder, all_cores=True)
    return [_genai_greedy(model, folder, ids, n)[0] for ids, n in zip(prompt_ids, lengths, strict=True)]


def genai_speculative_tokens(folder: Path, overlay: dict, ids: list[int], n: int) -> tuple[list[int], dict]:
    """Greedy tokens from onnxruntime-genai's native speculative decoding (the folder's config with ``overlay``
    adding the draft), and its speculative statistics."""
    out, gen = _genai_greedy(load_genai_model(folder, overlay, all_cores=True), folder, ids, n)
    return out, dict(gen.get_speculative_stats())


class GenaiModel:
    """``step(tokens, start_pos) -> last logits`` and ``prefill(tokens) -> every position's logits`` through
    onnxruntime-genai's own generator (``append_tokens``, the call an app feeds its prompt and each chosen token
    through), for any folder it loads (ours or another exporter's), so parity is measured on exactly what an app
    runs."""

    def __init__(self, folder: Path):
        import onnxruntime_genai as og

        self.og = og
        self.model = load_genai_model(folder, all_cores=True)
        self.context = json.loads((folder / "genai_config.json").read_text())["model"]["context_length"]
        self.gen = None

    def step(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        return self._append(tokens, start_pos)[-1]

    def prefill(self, tokens: list[int]) -> torch.Tensor:
        return self._append(tokens, 0)

    def _append(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        if start_pos == 0:
            params = self.og.GeneratorParams(self.model)
            params.set_search_options(do_sample=False, max_length=self.context)
            self.gen = self.og.Generator(self.model, params)
        self.gen.append_tokens(tokens)
        logits = np.asarray(self.gen.get_output("logits"))
        return torch.from_numpy(logits.reshape(-1, logits.shape[-1]).astype(np.float32, copy=True))


class OrtVerifier(OrtModel):
    """Every position's logits of a multi-token pass, and a cache that can be cut back (speculative decoding:
    the target verifies k draft tokens in one onnxruntime run, then drops the rejected ones)."""

    batched = True

    def score(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        if start_pos == 0 or not self.past:
            self.past = [np.zeros((1, self.n_kv, 0, self.hd), self.kv_dtype) for _ in range(2 * self.n_layers)]
        if self.past[0].shape[2] != start_pos:
            raise ValueError(f"score at {start_pos} but the cache holds {self.past[0].shape[2]} positions")
        logits, *self.past = self.sess.run(None, self.feeds(tokens, start_pos))
        return torch.from_numpy(logits[0].astype(np.float32))

    def truncate(self, length: int) -> None:
        self.past = [p[:, :, :length] for p in self.past] if self.past else []
