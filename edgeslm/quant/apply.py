"""Apply a recipe's rules to a PyTorch model with torchao (the ExecuTorch path; each module as its weights load).

Kept apart from :mod:`edgeslm.quant.recipes` so recipe names and rules stay readable without torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig, quantize_
from torchao.quantization.granularity import PerAxis, PerGroup
from torchao.quantization.quantize_.workflows.intx.intx_choose_qparams_algorithm import IntxChooseQParamsAlgorithm

from edgeslm.quant import offset_linear
from edgeslm.quant.recipes import Recipe, Rule, plan


def _torchao_config(scheme: str, group_size: int, method: str = "rtn"):
    gran = PerGroup(group_size) if group_size else PerAxis(0)
    if scheme in ("8da4w", "8da8w"):
        dtype = torch.int4 if scheme == "8da4w" else torch.int8
        algo = IntxChooseQParamsAlgorithm.HQQ_SCALE_ONLY if method == "hqq" else IntxChooseQParamsAlgorithm.AFFINE
        # XNNPACK keeps block scales in bf16: rounding them here makes the eager model the one the .pte runs
        scale_dtype = torch.bfloat16 if scheme == "8da4w" and group_size else None
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=gran,
                                                     weight_scale_dtype=scale_dtype, intx_choose_qparams_algorithm=algo)
    dtype = torch.int4 if scheme == "4w" else torch.int8
    return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=gran)


def quantize_module(model: nn.Module, fqn: str, rule: Rule) -> None:
    """Quantize the one module ``fqn`` of ``model`` by ``rule`` (in place), e.g. as soon as its weights load."""
    if rule.method == "asym":
        offset_linear.replace(model, fqn, rule.group_size, _torchao_config("8da8w", 0))
        return
    quantize_(model, _torchao_config(rule.scheme, rule.group_size, rule.method), filter_fn=lambda m, f: f == fqn)


def apply_recipe(model: nn.Module, recipe: Recipe) -> dict[str, Rule]:
    """Quantize ``model`` in place; returns the per-module plan it applied."""
    chosen = plan(model, recipe)
    by_config: dict[tuple[str, int, str], set[str]] = {}
    for fqn, rule in chosen.items():
        if rule.method == "asym":
            quantize_module(model, fqn, rule)
            continue
        by_config.setdefault((rule.scheme, rule.group_size, rule.method), set()).add(fqn)
    for (scheme, group, method), names in by_config.items():
        quantize_(model, _torchao_config(scheme, group, method),
                  filter_fn=lambda m, fqn, names=names: fqn in names)
    return chosen
