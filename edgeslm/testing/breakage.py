"""Broken recipes the gates must catch (tests): what a wrong group scale or a layer mapped into the wrong place
does to a decoder's weights, applied in place before quantization."""

from __future__ import annotations

import copy

import torch


def scale_layer(dec, index: int = 0, factor: float = 2.0) -> None:
    """One layer's down projection ×``factor``: what a wrong group scale does once dequantized."""
    with torch.no_grad():
        dec.layers[index].mlp.down_proj.weight.mul_(factor)


def swap_layers(dec, a: int = 0, b: int = -1) -> None:
    """Layers ``a`` and ``b`` exchange their weights: weights mapped into the wrong layers."""
    la, lb = dec.layers[a], dec.layers[b]
    sa = copy.deepcopy(la.state_dict())
    la.load_state_dict(lb.state_dict())
    lb.load_state_dict(sa)
