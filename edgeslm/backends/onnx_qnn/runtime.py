"""Run the static (ctx/iter) graphs with plain onnxruntime on the CPU EP, following onnxruntime-genai's windowed
protocol exactly (static.py): the parity stages' view of the folder, and the calibration feeds' source.

On a QDQ folder this is the simulation of the HTP's integer arithmetic: onnxruntime's CPU EP applies the same
quantize/dequantize steps (rounding, clipping at 16-bit activations and 4/8-bit weights) the NPU computes with.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from edgeslm.backends.onnx_qnn.static import ZERO_POINT
from edgeslm.parity.models import greedy_loop


class WindowedModel:
    """A parity model (``logits``, ``greedy``) over ctx.onnx / iter.onnx in onnxruntime. ``record`` collects
    every feed (ctx, iter) for calibration."""

    def __init__(self, folder: Path, record: tuple[list, list] | None = None):
        import onnxruntime as ort

        cfg = json.loads((folder / "genai_config.json").read_text())["model"]
        self.window = cfg["decoder"]["sliding_window"]["window_size"]
        self.context, self.pad = cfg["context_length"], cfg["pad_token_id"]
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.ctx, self.iter = (ort.InferenceSession(str(folder / f"{g}.onnx"), so, providers=["CPUExecutionProvider"])
                               for g in ("ctx", "iter"))
        self.past_names = [i.name for i in self.ctx.get_inputs()[3:]]
        self.shape = self.ctx.get_inputs()[3].shape
        self.record = record

    def _mask(self, real: int) -> np.ndarray:
        m = np.zeros((1, self.context), np.int32)
        m[0, self.context - real:] = 1
        return m

    def _run(self, sess, feed: dict, which: int) -> np.ndarray:
        if self.record is not None:
            self.record[which].append({k: v.copy() for k, v in feed.items()})
        logits, *present = sess.run(None, feed)
        self.past = dict(zip(self.past_names, present))
        return logits[0]

    def prefill(self, ids: list[int]) -> np.ndarray:
        """The prompt through ctx, front-padded to whole windows; logits [len(ids), V] of its real positions."""
        w = self.window
        pads = -len(ids) % w
        toks = [self.pad] * pads + list(ids)
        self.past = {n: np.full(self.shape, ZERO_POINT, np.uint8) for n in self.past_names}
        self.real, rows = 0, []
        for start in range(0, len(toks), w):
            pos = []
            for t in range(start, start + w):
                pos.append(0 if t < pads else self.real)
                self.real += t >= pads
            feed = {"input_ids": np.array([toks[start:start + w]], np.int32),
                    "position_ids": np.array([pos], np.int32), "attention_mask": self._mask(self.real), **self.past}
            rows.append(self._run(self.ctx, feed, 0))
        return np.concatenate(rows)[pads:]

    def next(self, token: int) -> np.ndarray:
        """One generated token through iter (after :meth:`prefill`): its logits [V]."""
        self.real += 1
        feed = {"input_ids": np.array([[token]], np.int32), "position_ids": np.array([[self.real - 1]], np.int32),
                "attention_mask": self._mask(self.real), **self.past}
        return self._run(self.iter, feed, 1)[-1]

    def logits(self, ids: list[int]) -> torch.Tensor:
        """Every position's logits: the first half through ctx (as a prompt), the rest through iter (as generated
        tokens), so both graphs and the uint8 cache between them are measured on every sequence."""
        if len(ids) > self.context:  # the cache's slots plus the current token: the context
            raise ValueError(f"{len(ids)} tokens do not fit the {self.context}-position windowed cache")
        fit = (self.context - 1) // self.window * self.window
        head = ids[:min(max(1, len(ids) // 2), fit)]
        rows = [self.prefill(head)] + [self.next(t)[None] for t in ids[len(head):]]
        return torch.from_numpy(np.concatenate(rows).astype(np.float32))

    def greedy(self, ids: list[int], n: int, tops: list | None = None) -> list[int]:
        return greedy_loop(lambda t: torch.from_numpy(self.prefill(t)[-1].astype(np.float32)),
                           lambda tok, pos: torch.from_numpy(self.next(tok).astype(np.float32)), ids, n, tops)

    def step(self, tokens: list[int], start_pos: int) -> torch.Tensor:
        """The step protocol (bench, golden vectors): a prompt at position 0 through ctx, later tokens through
        iter, as onnxruntime-genai drives these graphs; the last position's logits."""
        if start_pos == 0:
            return torch.from_numpy(self.prefill(tokens)[-1].astype(np.float32))
        if start_pos != self.real:
            raise ValueError(f"step at {start_pos} but the cache holds {self.real} positions")
        for t in tokens:
            row = self.next(t)
        return torch.from_numpy(row.astype(np.float32))
