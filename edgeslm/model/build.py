"""Build the re-authored decoder from a checkpoint, with weights mapped strictly (nothing missing or left over)."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from edgeslm.errors import InputError
from edgeslm.model.checkpoint import Checkpoint
from edgeslm.model.decoder import FUSIONS, Decoder, Fused
from edgeslm.model.families import family_for, rope_tables
from edgeslm.progress import Count, no_count
from edgeslm.quant.apply import quantize_module
from edgeslm.quant.recipes import Recipe, Rule, plan


def meta_decoder(ckpt: Checkpoint, max_seq_len: int, use_custom_ops: bool = False) -> Decoder:
    """The decoder's modules on the meta device: shapes and types without memory (what a recipe's plan needs to
    be checked before any weight is read)."""
    spec = family_for(ckpt.config).spec(ckpt.config, max_seq_len, ckpt.weights)
    rope = rope_tables(ckpt.config, max_seq_len)
    with torch.device("meta"):  # no memory, no random init: every parameter is assigned from the checkpoint
        return Decoder(spec, rope, use_custom_ops=use_custom_ops)


def _fusion_groups(model: Decoder, chosen: dict[str, Rule]) -> dict[str, tuple[str, tuple[str, ...], str]]:
    """Part module → (parent, parts, fused name) for every :data:`FUSIONS` group whose parts the recipe
    quantizes alike (same scheme, group and method; or all left in fp32)."""
    groups = {}
    for i in range(len(model.layers)):
        for parent_attr, parts, fused in FUSIONS:
            parent = f"layers.{i}.{parent_attr}"
            names = [f"{parent}.{p}" for p in parts]
            kinds = {(r.scheme, r.group_size, r.method) if (r := chosen.get(n)) else None for n in names}
            if len(kinds) == 1:
                groups.update({n: (parent, parts, fused) for n in names})
    return groups


def _fuse(model: Decoder, parent_fqn: str, parts: tuple[str, ...], fused: str) -> str:
    """Replace ``parts`` of ``parent_fqn`` (loaded linears) by one :class:`Fused` linear; its linear's name."""
    parent = model.get_submodule(parent_fqn)
    mods = [getattr(parent, p) for p in parts]
    with torch.device("meta"):
        linear = torch.nn.Linear(mods[0].in_features, sum(m.out_features for m in mods), bias=mods[0].bias is not None)
    linear.weight = torch.nn.Parameter(torch.cat([m.weight for m in mods]), requires_grad=False)
    if linear.bias is not None:
        linear.bias = torch.nn.Parameter(torch.cat([m.bias for m in mods]), requires_grad=False)
    for p in parts:
        delattr(parent, p)
    setattr(parent, fused, Fused(linear, [m.out_features for m in mods]))
    return f"{parent_fqn}.{fused}.linear"


def build_decoder(ckpt: Checkpoint, max_seq_len: int, use_custom_ops: bool = False, untie: bool = True,
                  recipe: Recipe | None = None, on_quantized: Count = no_count, fuse: bool = False,
                  weights: Mapping | None = None, stored_matrices: bool = False) -> Decoder:
    """The decoder with the checkpoint's weights in fp32, read one tensor at a time. ``untie`` gives lm_head its
    own copy of tied embeddings (to quantize them apart); without it they share one tensor (fp32 parity runs:
    on Llama-3.2-1B that is 1 GB less). With ``recipe``, each module the recipe names is quantized as soon as
    its weights are in, so the whole fp32 model never exists beside quantization's temporaries (the plan
    applied is ``model.quant_plan``; ``on_quantized(done, total)`` after each module). ``fuse``: q/k/v and
    gate/up become one linear each (:class:`Fused`) where the recipe quantizes the parts alike. ``weights``:
    read from it instead of ``ckpt.weights`` (:class:`edgeslm.model.checkpoint.SharedWeights`); fp32 tensors are
    then taken as they are, not copied. ``stored_matrices``: the linears' and the embedding's weights keep the
    checkpoint's dtype, for a caller that converts them as it consumes them (the ONNX graph writer quantizes
    bf16 rows 4096 at a time): no fp32 copy of the model is made (Llama-3.2-1B: 4.9 GB of fresh pages, 4 s)."""
    config = ckpt.config
    family = family_for(config)
    limit = getattr(config, "max_position_embeddings", None)
    if limit and max_seq_len > limit:
        raise InputError(
            f"context length {max_seq_len} exceeds the model's max_position_embeddings ({limit})",
            f"pass --context-length {limit} or less",
        )
    weights = ckpt.weights if weights is None else weights
    model = meta_decoder(ckpt, max_seq_len, use_custom_ops)
    spec = model.spec
    tied = bool(getattr(config, "tie_word_embeddings", False))
    loaders = family.map_weights(weights, spec, tied)
    expected = dict(model.named_parameters())
    missing, unexpected = sorted(set(expected) - set(loaders)), sorted(set(loaders) - set(expected))
    if missing or unexpected:
        raise InputError(
            f"checkpoint weights do not match the {family.name} layout "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})",
            "the checkpoint may be a variant edgeslm does not support yet; please report it",
        )
    shared = tied and not untie
    chosen = plan(model, recipe) if recipe is not None else {}  # types and shapes: the meta model suffices
    groups = _fusion_groups(model, chosen) if fuse else {}
    names, quantized, total = list(expected), 0, len(chosen)
    for i, name in enumerate(names):  # one tensor at a time: peak is the fp32 model plus one tensor
        owner, _, attr = name.rpartition(".")
        if not (shared and name == "lm_head.weight"):
            t = loaders[name]()
            if not (stored_matrices and attr == "weight"
                    and isinstance(model.get_submodule(owner), (torch.nn.Linear, torch.nn.Embedding))):
                t = t.to(torch.float32)
            if tuple(t.shape) != tuple(expected[name].shape):
                raise InputError(f"checkpoint tensor for {name} has shape {tuple(t.shape)}, the {family.name} "
                                 f"layout expects {tuple(expected[name].shape)}", "check config.json against the weights")
            setattr(model.get_submodule(owner), attr, torch.nn.Parameter(t, requires_grad=False))
        last_of_owner = i + 1 == len(names) or names[i + 1].rpartition(".")[0] != owner
        if not last_of_owner:
            continue
        if owner in groups:  # quantized once its group is complete, as one
            parent, parts, fused = groups[owner]
            if not owner.endswith(f".{parts[-1]}"):
                continue
            rule = chosen.get(owner)
            owner = _fuse(model, parent, parts, fused)
            for p in parts:
                chosen.pop(f"{parent}.{p}", None)
            if rule is not None:
                chosen[owner] = rule
                quantized += len(parts) - 1
        if owner in chosen:
            quantize_module(model, owner, chosen[owner])
            quantized += 1
            on_quantized(quantized, total)
    model.quant_plan = chosen
    if shared:
        model.lm_head.weight = model.embed_tokens.weight
    model.materialize_buffers()
    return model.eval()
