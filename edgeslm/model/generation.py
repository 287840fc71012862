"""One set of generation defaults for a model: its generation_config.json over transformers' defaults. The
manifest's ``app.generation`` and genai_config.json's ``search`` are both written from it, so they cannot differ."""

from __future__ import annotations

# The defaults transformers' GenerationConfig uses where a model's generation_config.json is silent.
GENERATION_DEFAULTS = {"do_sample": False, "temperature": 1.0, "top_p": 1.0, "top_k": 50, "repetition_penalty": 1.0,
                       "max_new_tokens": 64}


def generation_defaults(generation: dict) -> dict:
    """One set of generation defaults: the model's generation_config.json over transformers' defaults, typed.
    The manifest and genai_config.json's ``search`` are both written from it, so they cannot differ."""
    out = dict(GENERATION_DEFAULTS)
    for key, default in GENERATION_DEFAULTS.items():
        value = generation.get(key)
        if value is not None and not isinstance(value, (dict, list)):
            try:
                out[key] = type(default)(value)
            except (TypeError, ValueError):
                pass
    return out
