"""Real-size models built here: the published config.json shapes of models users export, random weights.

No weights can be downloaded, so benchmarks and the real-size test build these locally. The shapes (layers,
widths, heads, vocabulary, rope settings, tied embeddings, bf16 checkpoints) are the published ones, which is what
export time, memory, artifact size and decode speed depend on; the tokenizer is trained here (its vocabulary is
smaller than the model's, which only leaves some embedding rows unused).
"""

from __future__ import annotations

from pathlib import Path

import torch

# config.json fields of the published checkpoints (Hugging Face model cards, 2025).
SHAPES: dict[str, tuple[str, dict]] = {
    "smollm2-135m": ("LlamaConfig", dict(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 100000.0})),
    "qwen2.5-0.5b": ("Qwen2Config", dict(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
    "gemma-3-270m": ("Gemma3TextConfig", dict(
        vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
        num_key_value_heads=1, head_dim=256, max_position_embeddings=32768, rms_norm_eps=1e-6,
        query_pre_attn_scalar=256, sliding_window=512, tie_word_embeddings=True,
        layer_types=(["sliding_attention"] * 5 + ["full_attention"]) * 3)),
    "llama-3.2-1b": ("LlamaConfig", dict(
        vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
        num_key_value_heads=8, head_dim=64, max_position_embeddings=131072, rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})),
}
# A >=100M-parameter shape small enough for CI: SmolLM2-135M's width and vocabulary, fewer layers.
SHAPES["smollm2-135m-8l"] = (SHAPES["smollm2-135m"][0], dict(SHAPES["smollm2-135m"][1], num_hidden_layers=8))


def parameters(name: str) -> int:
    """Parameter count of a shape (tied embeddings counted once), without building it."""
    c = SHAPES[name][1]
    h, i, n, v = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"], c["vocab_size"]
    hd = c.get("head_dim") or h // c["num_attention_heads"]
    attn = h * hd * (2 * c["num_attention_heads"] + 2 * c["num_key_value_heads"])
    return v * h * (1 if c.get("tie_word_embeddings") else 2) + n * (attn + 3 * h * i + 2 * h) + h


def make_real_shape(name: str, folder: Path, tokenizer, dtype: torch.dtype = torch.bfloat16, seed: int = 0,
                    std: float = 0.02) -> Path:
    """Save a random-weight checkpoint of the published shape ``name`` (bf16 like the originals) with
    ``tokenizer``. Layers are built and written one at a time, so a 1B model needs about its bf16 size here."""
    import transformers
    from safetensors.torch import save_file

    cls_name, fields = SHAPES[name]
    tok_ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                   pad_token_id=tokenizer.pad_token_id)
    config = getattr(transformers, cls_name)(**{**fields, **tok_ids})
    config.dtype = dtype
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, p in model.state_dict().items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue
        if p.dim() >= 2:
            tensors[key] = (torch.randn(p.shape, generator=gen) * std).to(dtype)
        elif "norm" in key:  # Gemma norms are stored as an offset from 1
            tensors[key] = torch.zeros(p.shape, dtype=dtype) if "gemma" in cls_name.lower() else \
                torch.ones(p.shape, dtype=dtype)
        else:  # biases
            tensors[key] = torch.zeros(p.shape, dtype=dtype)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del tensors
    config.architectures = [model.__class__.__name__]
    config.save_pretrained(folder)
    transformers.GenerationConfig(**tok_ids).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
