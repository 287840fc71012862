"""oneDNN's fp32 linear for the eager parity passes (transformers, the fp32 decoder, the int4 eager twin).

torch's own fp32 ``F.linear`` goes to a BLAS whose small-M kernels run this host's (AMD EPYC) at a third of its
memory bandwidth: the transformers reference's batched greedy steps (M = 8 rows) read Llama-3.2-1B's 4.9 GB of
weights at about 6 GB/s. oneDNN's linear (``torch.ops.mkldnn._linear_pointwise``, the kernel torch's own
compiler lowers fp32 linears to on CPU) takes the same dense weights, no repacking, and ran 1.1-3.0x faster on
the shapes parity runs (M = 8 ... 512; at M = 1 from 0.8x on a 576 x 1536 layer to 2.1x;
``benchmarks/results/linear_kernels.md``). The outputs are fp32 sums in another
order (relative difference ~1e-6); a row's value does not depend on how many rows share the call (M >= 8), so
batched and one-by-one passes still agree. Where oneDNN is missing (a torch built without it), ``F.linear``."""

from __future__ import annotations

from contextlib import contextmanager
from functools import cache
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


@cache
def _onednn():
    """The oneDNN linear op, or None where this torch lacks it or it refuses a small probe."""
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None) if torch.backends.mkldnn.is_available() else None
    if op is None:
        return None
    x, w = torch.ones(2, 4), torch.ones(3, 4)
    try:
        ok = torch.equal(op(x, w, None, "none", [], ""), F.linear(x, w))
    except (RuntimeError, NotImplementedError):
        return None
    return op if ok else None


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` through oneDNN for plain fp32 CPU tensors (the parity passes), else ``F.linear`` itself."""
    op = _onednn()
    plain = (op is not None and x.dtype == weight.dtype == torch.float32 and x.device.type == "cpu"
             and type(weight) in (torch.Tensor, nn.Parameter) and type(x) is torch.Tensor
             and (bias is None or bias.dtype == torch.float32) and not torch.is_grad_enabled())
    if not plain:
        return F.linear(x, weight, bias)
    return op(x if x.is_contiguous() else x.contiguous(), weight, bias, "none", [], "")


def _forward(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return linear(x, module.weight, module.bias)


@contextmanager
def onednn_linears(model: nn.Module) -> Iterator[nn.Module]:
    """``model``'s ``nn.Linear`` layers compute through :func:`linear` inside the block (an instance ``forward``,
    removed on the way out: the model is unchanged for export afterwards; weights are shared, not copied)."""
    swapped = [m for m in model.modules() if type(m) is nn.Linear and "forward" not in vars(m)]
    for m in swapped:
        m.forward = _forward.__get__(m)
    try:
        yield model
    finally:
        for m in swapped:
            del m.forward
