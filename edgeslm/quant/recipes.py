"""Quantization recipes: ordered ``pattern → scheme`` rules, first match wins (as in ExecuTorch's LLM export).

A rule's pattern is an fnmatch glob over module names of the re-authored decoder (``embed_tokens``,
``lm_head``, ``layers.3.mlp.down_proj``, ...); ``layers.last.*`` names the last block whatever the depth. Schemes are applied with torchao's ``quantize_``:

- ``8da4w`` / ``8da8w``: int8 dynamic activations, int4 / int8 weights (XNNPACK runs them natively)
- ``4w`` / ``8w``: weight-only int4 / int8 (linear or embedding)
- ``pal4``: 4-bit palettization, one 16-entry k-means table per ``group_size`` output channels (Core ML)
- ``16a4w`` / ``16a8w``: static (calibrated) 16-bit activations × int4 / int8 weights, the fixed-point numerics of
  Qualcomm's HTP NPU (ONNX QDQ for the QNN EP, ExecuTorch's QnnQuantizer); ``16a4w`` with a group size is
  block-wise (LPBQ, ExecuTorch's QnnQuantizer only)
- ``fp16`` / ``fp32``: weights left unquantized (in that precision)

Backends declare which recipes they implement; a recipe is applied by the backend's own quantizer (torchao for
ExecuTorch, onnxruntime's MatMulNBits quantizer for ONNX, coremltools.optimize for Core ML).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeslm.errors import InputError

if TYPE_CHECKING:  # torch is imported where quantization runs, so recipe names are readable without it
    from torch import nn

LINEAR_SCHEMES = ("8da4w", "8da8w", "4w", "8w", "pal4", "16a4w", "16a8w", "fp16", "fp32")
EMBEDDING_SCHEMES = ("4w", "8w", "pal4", "16a8w", "fp16", "fp32")
NPU_SCHEMES = ("16a4w", "16a8w")  # calibrated static activations: only the NPU backends apply them
# Which kernels a scheme runs (the latency model's kernel kinds; device profiles give efficiencies per kind):
# float = fp32/fp16 matmuls; int8_dynamic = int8 activations × int4/int8 weights (XNNPACK 8da4w, int8w);
# weight_only = low-bit weights dequantized into float matmuls (MatMulNBits, Core ML constexpr weights);
# fixed_point = an NPU's integer pipeline: static 16-bit activations × int4/int8 weights (Qualcomm HTP).
KINDS = ("float", "int8_dynamic", "weight_only", "fixed_point")
SCHEME_KIND = {"fp32": "float", "fp16": "float", "8da4w": "int8_dynamic", "8da8w": "int8_dynamic",
               "4w": "weight_only", "8w": "weight_only", "pal4": "weight_only",
               "16a4w": "fixed_point", "16a8w": "fixed_point"}
# Bits per stored weight of a scheme (its scales aside).
SCHEME_BITS = {"fp32": 32, "fp16": 16, "8da4w": 4, "8da8w": 8, "4w": 4, "8w": 8, "pal4": 4, "16a4w": 4, "16a8w": 8}
SCALE_BITS = 16  # one fp16 scale per block of a block-wise weight-only scheme (4w / 8w with a group size)


@dataclass(frozen=True)
class Rule:
    pattern: str
    scheme: str
    group_size: int = 0  # 0 = per output channel

    @property
    def bits_per_weight(self) -> float:
        """Bits one weight takes as stored, a block-wise weight-only scheme's fp16 scales included (palettization
        tables and per-channel scales are negligible)."""
        scales = SCALE_BITS / self.group_size if self.group_size and self.scheme in ("4w", "8w") else 0
        return SCHEME_BITS[self.scheme] + scales

    def describe(self) -> str:
        g = f", group {self.group_size}" if self.group_size else ", per channel"
        return f"{self.pattern} → {self.scheme}{g if self.scheme != 'fp32' else ''}"


@dataclass(frozen=True)
class Recipe:
    name: str
    rules: tuple[Rule, ...]
    description: str

    def rule_for(self, fqn: str, num_layers: int | None = None) -> Rule | None:
        """The first rule matching ``fqn``; with ``num_layers``, ``layers.last`` also matches the last block."""
        names = [fqn]
        if num_layers and fqn.startswith(f"layers.{num_layers - 1}."):
            names.append("layers.last." + fqn.split(".", 2)[2])
        return next((r for r in self.rules if any(fnmatch.fnmatchcase(n, r.pattern) for n in names)), None)

    @property
    def main_rule(self) -> Rule:
        """The rule most of the model gets: the catch-all (``*``) rule, else the last one."""
        return self.rule_for("*") or self.rules[-1]

    @property
    def kind(self) -> str:
        """The kernels most of the model runs (one of :data:`KINDS`), from the main rule's scheme."""
        return SCHEME_KIND[self.main_rule.scheme]

    @property
    def bits(self) -> int:
        """Bits per weight of most of the model (the main rule's scheme, scales aside)."""
        return SCHEME_BITS[self.main_rule.scheme]

    @property
    def embed_bits(self) -> float:
        """Bits per embedding element as this recipe stores the table (scales included): the embedding rule's;
        the NPU schemes quantize the table to 8 bits per tensor whatever the rule's weight bits."""
        rule = self.rule_for("embed_tokens") or Rule("embed_tokens", "fp32")
        if rule.scheme in NPU_SCHEMES:
            return 8
        return rule.bits_per_weight

    def with_group_size(self, group_size: int) -> Recipe:
        """The same recipe with every grouped 4-bit rule at another group size."""
        rules = tuple(
            Rule(r.pattern, r.scheme, group_size if r.group_size else 0) if r.scheme in ("8da4w", "4w", "16a4w")
            else r
            for r in self.rules
        )
        return Recipe(self.name, rules, self.description)


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe("fp32", (Rule("*", "fp32"),), "no quantization"),
        Recipe(
            "8da4w",
            (Rule("embed_tokens", "8w"), Rule("lm_head", "8da8w"), Rule("*", "8da4w", 32)),
            "int8 dynamic activations + int4 weights (group 32) on the decoder's linears; lm_head int8 "
            "(the most quantization-sensitive layer); int8 embeddings",
        ),
        # int8 weights on every linear. Linears use XNNPACK's int8-weight kernels (dynamic int8 activations):
        # the weight-only form (torchao IntxWeightOnlyConfig) lowers to wrong logits with executorch 1.5.1 /
        # torchao 0.18 (max |Δlogit| > 5000 in our parity check), so it is kept for embeddings only.
        Recipe(
            "int8w",
            (Rule("embed_tokens", "8w"), Rule("*", "8da8w")),
            "int8 weights, per channel, on every linear (run with dynamic int8 activations) and the embeddings",
        ),
        # Weight-only schemes for runtimes with native block-quantized MatMul (ONNX Runtime MatMulNBits).
        Recipe("fp16", (Rule("*", "fp16"),), "fp16 weights, activations and KV cache (ONNX)"),
        Recipe("int4", (Rule("*", "4w", 32),),
               "int4 weight-only, block 32, on every linear and the embedding table (ONNX: symmetric; Core ML: "
               "with a per-block offset)"),
        Recipe("int8", (Rule("*", "8w", 32),),
               "int8 weight-only, block 32, symmetric, on every linear and the embedding table"),
        # One table per 4 output channels: on the demo model, top-1 0.724 / KL 0.088 against 0.697 / 0.139 with
        # one per 16 channels, for 6% more bytes.
        Recipe("palettize4", (Rule("*", "pal4", 4),),
               "4-bit palettization (k-means, a 16-entry table per 4 output channels) on every linear and the "
               "embedding table (Core ML)"),
        # Qualcomm HTP (android-npu): the NPU computes in fixed point, so activations are quantized too, with
        # ranges calibrated on text (16-bit: 8-bit activations wreck small LLMs). The layers most sensitive to
        # quantization keep 8-bit weights: lm_head, the embedding table and the first and last blocks.
        Recipe("16a4w",
               (Rule("embed_tokens", "16a8w"), Rule("lm_head", "16a8w"), Rule("layers.0.*", "16a8w"),
                Rule("layers.last.*", "16a8w"), Rule("*", "16a4w")),
               "16-bit activations (calibrated) × int4 weights per channel; lm_head, embeddings and the first and "
               "last blocks at int8 weights (Qualcomm HTP)"),
        # LPBQ (low-power block quantization, HTP v69+): int4 weights in blocks of 32 input channels, the blocks'
        # scales stored as int8 per channel. ExecuTorch's QnnQuantizer only (onnxruntime's QNN quantizer has no
        # block option). On the demo model: KL 0.024 against 0.037 per channel (docs/npu.md).
        Recipe("16a4w-block",
               (Rule("embed_tokens", "16a8w"), Rule("lm_head", "16a8w"), Rule("layers.0.*", "16a8w"),
                Rule("layers.last.*", "16a8w"), Rule("*", "16a4w", 32)),
               "as 16a4w, with the int4 weights in blocks of 32 input channels (LPBQ; Qualcomm HTP v69+)"),
        Recipe("16a8w", (Rule("*", "16a8w"),),
               "16-bit activations (calibrated) × int8 weights per channel on every layer (Qualcomm HTP)"),
    )
}
# Other names users know these recipes by.
ALIASES = {"int4-block32": "int4", "int8-block32": "int8", "pal4": "palettize4"}


def is_group_size(v) -> bool:
    """The 4-bit block size every backend takes: MatMulNBits (ONNX) and the torchao / Core ML block-wise kernels
    need a power of two of at least 16. One rule for --group-size and target files."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 16 and not v & (v - 1)


def canonical(name: str) -> str:
    return ALIASES.get(name, name)


def get_recipe(name: str, group_size: int | None = None) -> Recipe:
    name = canonical(name)
    if name not in RECIPES:
        raise InputError(f"unknown recipe {name!r}",
                         f"supported recipes are {', '.join(RECIPES)} (aliases: {', '.join(ALIASES)})")
    recipe = RECIPES[name]
    return recipe.with_group_size(group_size) if group_size else recipe


def _torchao_config(scheme: str, group_size: int):
    import torch
    from torchao.quantization import (
        Int8DynamicActivationIntxWeightConfig,
        IntxWeightOnlyConfig,
    )
    from torchao.quantization.granularity import PerAxis, PerGroup

    gran = PerGroup(group_size) if group_size else PerAxis(0)
    if scheme in ("8da4w", "8da8w"):
        dtype = torch.int4 if scheme == "8da4w" else torch.int8
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=gran)
    dtype = torch.int4 if scheme == "4w" else torch.int8
    return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=gran)


def plan(model: nn.Module, recipe: Recipe) -> dict[str, Rule]:
    """Which rule each quantizable module gets (fp32 and unmatched modules are left out)."""
    from torch import nn

    chosen: dict[str, Rule] = {}
    spec = getattr(model, "spec", None)
    for fqn, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, nn.Embedding)):
            continue
        rule = recipe.rule_for(fqn, getattr(spec, "num_layers", None))
        if rule is None or rule.scheme == "fp32":
            continue
        allowed = EMBEDDING_SCHEMES if isinstance(mod, nn.Embedding) else LINEAR_SCHEMES
        if rule.scheme not in allowed:
            raise InputError(
                f"recipe {recipe.name}: scheme {rule.scheme} cannot apply to {fqn} ({type(mod).__name__})",
                f"use one of {', '.join(allowed)} for that pattern",
            )
        if rule.scheme == "pal4":
            if rule.group_size and mod.weight.shape[0] % rule.group_size:
                raise InputError(
                    f"recipe {recipe.name}: {fqn} has {mod.weight.shape[0]} output channels, not a multiple of "
                    f"palettization group {rule.group_size}",
                    "use the int4 recipe for this model (palettization groups output channels by 4)")
        elif rule.group_size and mod.weight.shape[-1] % rule.group_size:
            raise InputError(
                f"recipe {recipe.name}: {fqn} has {mod.weight.shape[-1]} input features, not a multiple of "
                f"group size {rule.group_size}",
                "pass --group-size with a divisor of the model's hidden and intermediate sizes",
            )
        chosen[fqn] = rule
    return chosen


def quantize_module(model: nn.Module, fqn: str, rule: Rule) -> None:
    """Quantize the one module ``fqn`` of ``model`` by ``rule`` (in place), e.g. as soon as its weights load."""
    from torchao.quantization import quantize_

    quantize_(model, _torchao_config(rule.scheme, rule.group_size), filter_fn=lambda m, f: f == fqn)


def apply_recipe(model: nn.Module, recipe: Recipe) -> dict[str, Rule]:
    """Quantize ``model`` in place; returns the per-module plan it applied."""
    from torchao.quantization import quantize_

    chosen = plan(model, recipe)
    by_config: dict[tuple[str, int], set[str]] = {}
    for fqn, rule in chosen.items():
        by_config.setdefault((rule.scheme, rule.group_size), set()).add(fqn)
    for (scheme, group), names in by_config.items():
        quantize_(model, _torchao_config(scheme, group), filter_fn=lambda m, fqn, names=names: fqn in names)
    return chosen
