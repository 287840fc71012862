"""MatMulNBits weights and their eager twin: block quantization with onnxruntime's own C++ quantizer, and a torch
linear that computes exactly what onnxruntime's CPU kernel computes with them.

The graph writer (:mod:`edgeslm.backends.onnx.graph`) quantizes each linear as it reaches it and swaps the
decoder's module for :class:`NBitsLinear`, so the decoder left behind is the eager model the lowering stage
compares the ONNX graph with. ``accuracy_level`` 4 (int8 compute: 3-4× faster than fp32 on AVX2 for a decode
step, 35× for 8-bit weights) quantizes the activations too: each block of ``block`` inputs to int8 with one scale
(max |x| / 127, half to even). :class:`NBitsLinear` does the same, so eager and runtime agree to fp32
rounding (6e-7 on a [3, 576] × [576, 1536] product) instead of differing by the activation rounding (1e-2).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from onnxruntime.capi._pybind_state import quantize_matmul_4bits, quantize_matmul_8bits
from torch import nn

from edgeslm.parity.kernels import linear

ACCURACY_LEVEL = 4  # int8 activations × n-bit weights (MLAS CompInt8)


@dataclass(frozen=True)
class NBits:
    """One MatMulNBits scheme: bits, block size and how the grid is fitted (``rtn``: symmetric round-to-nearest,
    ORT's default quantizer; ``asym``: a scale and a float offset per block, as a symmetric grid plus an offset
    term over block sums, :mod:`edgeslm.quant.offset_linear`)."""

    bits: int
    block: int
    method: str = "rtn"

    def describe(self) -> str:
        how = ("asymmetric: symmetric MatMulNBits on the fitted grid plus an fp32 offset term over block sums"
               if self.method == "asym" else "symmetric RTN")
        return f"MatMulNBits {self.bits}-bit, block {self.block}, {how}"


ROWS = 4096  # output rows quantized / dequantized per call: bounds the temporaries of a vocabulary-sized table


def quantize(weight: torch.Tensor, bits: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """``weight [N, K]`` (a linear's, fp32 or as stored: bf16, fp16) → MatMulNBits' B
    ``uint8 [N, K/block, block·bits/8]`` and fp32 scales ``[N, K/block]``, symmetric (codes stored offset by
    2^(bits-1)), by onnxruntime's own quantizer (what ``MatMulNBitsQuantizer`` and onnxruntime-genai's builder
    call). Each output row is quantized on its own, so rows go through in chunks of :data:`ROWS`: the transposed
    fp32 copy the quantizer reads stays small."""
    n, k = weight.shape
    blocks = k // block
    packed = np.zeros((n, blocks, block * bits // 8), np.uint8)
    scales = np.zeros((n, blocks), np.float32)
    zero = np.zeros((n, blocks), np.uint8)  # unused: symmetric
    fn = quantize_matmul_4bits if bits == 4 else quantize_matmul_8bits
    for i in range(0, n, ROWS):
        rows = weight[i:i + ROWS].detach()
        # [K, rows] fp32 as the quantizer reads it: transposed as stored (bf16: half the bytes to move, 18 against
        # 26 ms for 4096 × 2048), then converted; torch's transpose (blocked, every core) is 5× numpy's here
        cols = rows.t().contiguous().to(torch.float32)
        fn(packed[i:i + ROWS], cols.numpy(), scales[i:i + ROWS], zero[i:i + ROWS], block, rows.shape[0], k, True)
    return packed, scales


def pack4(codes: torch.Tensor, block: int) -> np.ndarray:
    """Unsigned 4-bit codes ``[N, K]`` (0…15) as MatMulNBits' B ``[N, K/block, block/2]``, low nibble first."""
    c = codes.to(torch.uint8).reshape(codes.shape[0], -1, block)
    return (c[..., 0::2] | (c[..., 1::2] << 4)).numpy()


def dequantize(packed: np.ndarray, scales: np.ndarray, bits: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """The fp32 ``[N, K]`` weight a MatMulNBits (or GatherBlockQuantized) B and scales stand for: s·(q − 2^(b−1)),
    a 4-bit byte's low nibble first, :data:`ROWS` rows at a time, each step in place in the output (torch's
    elementwise ops, every core): 1.8× the speed of building the codes apart and copying them in, 8× a byte-table
    lookup in numpy, on an 8192 × 2048 weight. ``out``: an fp32 buffer of that shape to write into."""
    n, per_byte = scales.shape[0], 8 // bits
    out = torch.empty(n, scales.shape[1] * packed.shape[2] * per_byte) if out is None else out
    for i in range(0, n, ROWS):
        p = torch.from_numpy(packed[i:i + ROWS])
        s = torch.from_numpy(scales[i:i + ROWS])
        codes = out[i:i + ROWS].view(*p.shape, per_byte)  # [rows, blocks, bytes, codes per byte]
        if bits == 4:
            codes[..., 0] = p & 15
            codes[..., 1] = p >> 4
        else:
            codes[..., 0] = p
        codes.sub_(2 ** (bits - 1)).view(*s.shape, -1).mul_(s[..., None])
    return out


def quantize_activations(x: torch.Tensor, block: int) -> torch.Tensor:
    """``x`` rounded as MLAS' int8-compute kernels round it: per block of ``block`` inputs, int8 with scale
    max |x| / 127, multiplied by its reciprocal and rounded half to even (both matter: inputs on a grid, e.g. a
    quantized embedding row, land on exact ties), returned dequantized."""
    xb = x.reshape(*x.shape[:-1], -1, block)
    scale = xb.abs().amax(-1, keepdim=True) / 127.0
    inv = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    return (torch.round(xb * inv) * scale).reshape(x.shape)


_buffers: dict | None = None  # weight shape → the fp32 buffer NBitsLinear dequantizes into (within reused_buffers)


@contextmanager
def reused_buffers() -> Iterator[None]:
    """Within: each :class:`NBitsLinear` forward dequantizes into one buffer per weight shape, reused layer after
    layer, instead of a fresh one. A fresh 64 MiB buffer costs 17 ms of page faults (large buffers are mapped
    afresh, :func:`edgeslm.memory.map_large_buffers`), more than the dequantization's own 12 ms: on the
    Llama-3.2-1B shape an eager pass spends 1.3 s less. The buffers (the largest: lm_head's) go on leaving."""
    global _buffers
    outer, _buffers = _buffers, {} if _buffers is None else _buffers
    try:
        yield
    finally:
        _buffers = outer


def _buffer(shape: tuple[int, int]) -> torch.Tensor | None:
    if _buffers is None:
        return None
    if shape not in _buffers:
        _buffers[shape] = torch.empty(shape)
    return _buffers[shape]


class NBitsLinear(nn.Module):
    """A MatMulNBits linear (accuracy level 4) in torch: the dequantized weight times the int8-rounded input,
    plus the bias and, for asymmetric blocks, the fp32 offset term ``blocksum(x) · offsetsᵀ``. It holds the
    graph's own B and scales (``bits``/32 of the fp32 weight) and dequantizes them at each forward: the eager
    model costs what the artifact does instead of the fp32 model again (Llama-3.2-1B: 0.8 GB, not 4.9), and
    parity runs it only a few times (prompts and held-out text batched)."""

    def __init__(self, packed: np.ndarray, scales: np.ndarray, bits: int, block: int,
                 bias: torch.Tensor | None = None, offsets: torch.Tensor | None = None):
        super().__init__()
        self.packed, self.scales, self.bits, self.block = packed, scales, bits, block
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)
        self.offsets = None if offsets is None else nn.Parameter(offsets, requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The fp32 ``[N, K]`` weight MatMulNBits computes with (made on each read)."""
        return dequantize(self.packed, self.scales, self.bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (self.scales.shape[0], self.scales.shape[1] * self.block)
        w = dequantize(self.packed, self.scales, self.bits, _buffer(shape))
        y = linear(quantize_activations(x, self.block), w, self.bias)
        if self.offsets is not None:
            y = y + linear(x.reshape(*x.shape[:-1], -1, self.block).sum(-1), self.offsets)
        return y


class NBitsEmbedding(nn.Module):
    """GatherBlockQuantized (gather axis 0, blocks along rows) in torch: the rows looked up, dequantized; the
    table stays packed (a tied table is lm_head's own B and scales)."""

    def __init__(self, packed: np.ndarray, scales: np.ndarray, bits: int):
        super().__init__()
        self.packed, self.scales, self.bits = packed, scales, bits

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        flat = ids.reshape(-1).numpy()
        rows = dequantize(self.packed[flat], self.scales[flat], self.bits)
        return rows.reshape(*ids.shape, rows.shape[-1])
