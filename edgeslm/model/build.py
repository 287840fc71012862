"""Build the re-authored decoder from a checkpoint, with weights mapped strictly (nothing missing or left over)."""

from __future__ import annotations

import torch

from edgeslm.errors import InputError
from edgeslm.model.checkpoint import Checkpoint
from edgeslm.model.decoder import Decoder
from edgeslm.model.families import family_for, rope_tables


def build_decoder(ckpt: Checkpoint, max_seq_len: int, use_custom_ops: bool = False) -> Decoder:
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
    mapped = family.map_weights(weights, spec, tied)
    model = Decoder(spec, rope_tables(config, max_seq_len), use_custom_ops=use_custom_ops)
    mapped = {k: v.to(torch.float32) for k, v in mapped.items()}
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    if missing or unexpected:
        raise InputError(
            f"checkpoint weights do not match the {family.name} layout "
            f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})",
            "the checkpoint may be a variant edgeslm does not support yet; please report it",
        )
    # Tied embeddings: lm_head gets its own copy so it can be quantized apart from the embedding table.
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    return model.eval()
