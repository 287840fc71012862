"""Asymmetric 4-bit blocks for kernels that take no zero point (XNNPACK's blockwise int4).

An asymmetric block stores ``w = s·q + m`` (q in 0…15, a scale ``s`` and a float offset ``m`` per block of ``g``
input channels). Written as ``s·(q − 8) + (m + 8s)``, the first term is an ordinary symmetric int4 block and the
second is constant over the block, so

    x·wᵀ = x·(s·(q − 8))ᵀ + Σ_blocks (m + 8s) · Σ_{i ∈ block} x_i

is a symmetric int4 linear (XNNPACK's 8da4w kernels) plus a small linear over the block sums (``in/g`` inputs:
1/g of the main linear's work and bytes, kept as int8 per channel). The block sums are a 0/1 matrix product,
which XNNPACK delegates with the rest of the layer; the matrix depends only on the input width, so the program
stores one copy per width (ExecuTorch keys delegate constants by content).

Scales are rounded to bf16 before the grid is fitted, as XNNPACK stores them; the offset is then the
least-squares value for the rounded grid, so a checkpoint already on an asymmetric grid (GGUF Q4_1) is carried
over within bf16's rounding of its scales.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OffsetLinear(nn.Module):
    """``main(x) + offsets(x · blocksumᵀ)``: an asymmetric block-quantized linear in two symmetric parts."""

    def __init__(self, main: nn.Linear, offsets: nn.Linear, group_size: int):
        super().__init__()
        self.main, self.offsets, self.group_size = main, offsets, group_size
        self.register_buffer("blocksum", torch.repeat_interleave(torch.eye(offsets.in_features), group_size, dim=1))

    @property
    def weight(self) -> torch.Tensor:
        """The effective weight (dequantized): what the two parts compute together, for checks and parity."""
        main = self.main.weight.dequantize() if hasattr(self.main.weight, "dequantize") else self.main.weight
        off = self.offsets.weight.dequantize() if hasattr(self.offsets.weight, "dequantize") else self.offsets.weight
        return main + torch.repeat_interleave(off, self.group_size, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.offsets(F.linear(x, self.blocksum))


def fit(weight: torch.Tensor, group_size: int, scale_dtype: torch.dtype = torch.bfloat16) \
        -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric min–max fit of ``weight`` [out, in] in blocks of ``group_size``: (q − 8 as int8, scales
    [out, in/g] exact in ``scale_dtype`` (what the kernel stores), least-squares offsets m + 8s [out, in/g]).
    Each block's minimum lands on q − 8 = −8, so a symmetric quantizer that takes max-abs / 8 as the scale
    (onnxruntime's MatMulNBits RTN) finds the same scale and grid again."""
    out, width = weight.shape
    w = weight.detach().to(torch.float32).reshape(out, width // group_size, group_size)
    lo, hi = w.amin(-1), w.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=torch.finfo(scale_dtype).tiny).to(scale_dtype).to(torch.float32)
    q = ((w - lo[..., None]) / scale[..., None]).round().clamp(0, 15)
    offset = (w - q * scale[..., None]).mean(-1) + 8 * scale
    return (q - 8).to(torch.int8).reshape(out, width), scale, offset


def grid(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The symmetric part of a :func:`fit`, dequantized: s·(q − 8) as fp32 [out, in]."""
    return (q.to(torch.float32).reshape(*scale.shape, -1) * scale[..., None]).reshape(q.shape)


def replace(model: nn.Module, fqn: str, group_size: int, offsets_config) -> None:
    """Swap the linear ``fqn`` of ``model`` for its :class:`OffsetLinear` (in place): the main part as torchao's
    int8-dynamic × int4 tensor with the fitted scales, the offsets quantized by ``offsets_config``."""
    from torchao.quantization import quantize_
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
        IntxUnpackedToInt8Tensor,
    )

    parent_name, _, attr = fqn.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    linear: nn.Linear = getattr(parent, attr)
    q, scale, offset = fit(linear.weight, group_size)
    out, width = q.shape
    main = nn.Linear(width, out, bias=linear.bias is not None)
    if linear.bias is not None:
        main.bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
    main.weight = nn.Parameter(IntxUnpackedToInt8Tensor.from_hp(
        grid(q, scale), (1, group_size), torch.int4, activation_quantization="int8_asym_per_token",
        intx_choose_qparams_algorithm=None, custom_scale=scale,
        custom_zero_point=torch.zeros_like(scale, dtype=torch.int8)), requires_grad=False)
    offsets = nn.Linear(width // group_size, out, bias=False)
    offsets.weight = nn.Parameter(offset, requires_grad=False)
    quantize_(offsets, offsets_config)
    setattr(parent, attr, OffsetLinear(main, offsets, group_size))
