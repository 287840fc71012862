"""What one token costs: bytes streamed from memory and FLOPs, from an artifact in a bundle (or, for published
figures of models we do not have, from the architecture and recipe).

Decode reads every weight once per token except the embedding table (a gather reads one row), plus the KV cache
up to the current position. Prefill does ~2 FLOPs per weight per token plus attention, and reads the weights once.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgeslm.errors import InputError
from edgeslm.backends import get_backend
from edgeslm.quant.recipes import get_recipe

# Which kernels a recipe runs (KINDS: float, int8_dynamic, weight_only, fixed_point), for the efficiency factors of
# the device profiles, comes from the recipe's rules (edgeslm.quant.recipes), as do the embedding table's bits.


@dataclass(frozen=True)
class Workload:
    kind: str
    weight_bytes: float  # everything the artifact stores
    streamed_bytes: float  # read per decode step (weights minus the embedding rows a gather skips)
    kv_bytes_per_position: float
    linear_flops: float  # per token
    attention_flops_per_position: float  # per token, per position attended to
    context_length: int
    activation_bytes: float  # working buffers, independent of the weights

    def kv_bytes(self, positions: int) -> float:
        return self.kv_bytes_per_position * positions


def require_shape(manifest: dict, bundle) -> None:
    """Bundles written before the manifest recorded the model's dimensions cannot be timed or predicted."""
    if "shape" not in manifest["model"]:
        raise InputError(f"{bundle} was written by an older edgeslm (no model shape in its manifest)",
                         "re-export it with this version")


def linear_params(shape: dict) -> int:
    """Parameters every token multiplies through: all projections of every layer plus the lm_head."""
    h, hd, inter = shape["hidden_size"], shape["head_dim"], shape["intermediate_size"]
    q, kv = shape["num_heads"] * hd, shape["num_kv_heads"] * hd
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * inter
    return shape["num_layers"] * per_layer + h * shape["vocab_size"]


def from_shape(shape: dict, weight_bytes: float, embed_bytes_skipped: float, kv_element_bytes: int, kind: str,
               context_length: int) -> Workload:
    kv = 2 * shape["num_layers"] * shape["num_kv_heads"] * shape["head_dim"] * kv_element_bytes
    attn = 4 * shape["num_layers"] * shape["num_heads"] * shape["head_dim"]  # QK^T and PV, 2 FLOPs per MAC
    act = 4 * (shape["vocab_size"] + 4 * max(shape["hidden_size"], shape["intermediate_size"]))
    return Workload(kind, weight_bytes, max(weight_bytes - embed_bytes_skipped, 0.0), kv,
                    2.0 * linear_params(shape), attn, context_length, act)


def from_artifact(manifest: dict, artifact: dict) -> Workload:
    """The workload of one artifact of a bundle: bytes from the files the runtime loads, dimensions from the
    manifest's model shape, kernels and embedding storage from the recipe, the KV cache's element size from the
    backend."""
    shape = artifact.get("model_shape") or manifest["model"]["shape"]  # a draft model's artifact has its own
    recipe = get_recipe(artifact["recipe"])
    files = [artifact, *artifact.get("files", [])]
    weight_bytes = sum(f["bytes"] for f in files if not f["file"].endswith((".json", ".txt", ".model")))
    embed = shape["vocab_size"] * shape["hidden_size"] * recipe.embed_bits / 8
    if any("tied" in q for q in artifact.get("quantization", [])):
        embed = 0.0  # one table serves the lm_head too: every decode step reads it whole
    kv = get_backend(artifact["backend"]).kv_element_bytes(recipe)
    return from_shape(shape, weight_bytes, embed, kv, recipe.kind, manifest["context_length"])
