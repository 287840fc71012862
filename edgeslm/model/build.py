"""Build the re-authored decoder from a checkpoint, with weights mapped strictly (nothing missing or left over)."""

from __future__ import annotations

import torch

from edgeslm.errors import InputError
from edgeslm.model.checkpoint import Checkpoint
from edgeslm.model.decoder import Decoder
from edgeslm.model.families import family_for, rope_tables


def build_decoder(ckpt: Checkpoint, max_seq_len: int, use_custom_ops: bool = False, untie: bool = True) -> Decoder:
    """The decoder with the checkpoint's weights in fp32, read one tensor at a time. ``untie`` gives lm_head its
    own copy of tied embeddings (to quantize them apart); without it they share one tensor (fp32 parity runs:
    on Llama-3.2-1B that is 1 GB less)."""
    config = ckpt.config
    family = family_for(config)
    limit = getattr(config, "max_position_embeddings", None)
    if limit and max_seq_len > limit:
        raise InputError(
            f"context length {max_seq_len} exceeds the model's max_position_embeddings ({limit})",
            f"pass --context-length {limit} or less",
        )
    weights = ckpt.weights
    spec = family.spec(config, max_seq_len, weights)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    loaders = family.map_weights(weights, spec, tied)
    rope = rope_tables(config, max_seq_len)
    with torch.device("meta"):  # no memory, no random init: every parameter is assigned from the checkpoint
        model = Decoder(spec, rope, use_custom_ops=use_custom_ops)
    expected = dict(model.named_parameters())
    missing, unexpected = sorted(set(expected) - set(loaders)), sorted(set(loaders) - set(expected))
    if missing or unexpected:
        raise InputError(
            f"checkpoint weights do not match the {family.name} layout "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})",
            "the checkpoint may be a variant edgeslm does not support yet; please report it",
        )
    shared = tied and not untie
    for name, p in expected.items():  # one tensor at a time: peak is the fp32 model plus one tensor
        if shared and name == "lm_head.weight":
            continue
        t = loaders[name]().to(torch.float32)
        if tuple(t.shape) != tuple(p.shape):
            raise InputError(f"checkpoint tensor for {name} has shape {tuple(t.shape)}, the {family.name} layout "
                             f"expects {tuple(p.shape)}", "check config.json against the weights")
        owner, _, attr = name.rpartition(".")
        setattr(model.get_submodule(owner), attr, torch.nn.Parameter(t, requires_grad=False))
    if shared:
        model.lm_head.weight = model.embed_tokens.weight
    model.materialize_buffers()
    return model.eval()
