"""Tiny configs of every supported architecture, built and saved by the tests (no downloads).

Each model gets random weights and the tokenizer trained locally by ``make_tokenizer`` on CPython's own
documentation text, so the whole loading path (config.json, safetensors, tokenizer files) is the real one.
"""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 512

# Hidden sizes are multiples of 32 so 4-bit group-32 quantization applies to every linear layer.
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              bos_token_id=1, eos_token_id=2, pad_token_id=0)

CONFIGS = {
    "llama": ("LlamaConfig", dict(tie_word_embeddings=True)),
    "mistral": ("MistralConfig", dict(sliding_window=None, head_dim=16)),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True)),
    "qwen3": ("Qwen3Config", dict(head_dim=32, tie_word_embeddings=True)),
    "phi3": ("Phi3Config", dict(num_key_value_heads=4, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75})),
    "gemma2": ("Gemma2Config", dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                    attn_logit_softcapping=50.0, final_logit_softcapping=30.0)),
    "gemma3": ("Gemma3TextConfig", dict(head_dim=16, sliding_window=8, query_pre_attn_scalar=16,
                                        layer_types=["sliding_attention", "full_attention"])),
}


def text_corpus() -> str:
    """English reference prose that ships with every Python (PSF licence): the language reference topics."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def stdlib_docstrings() -> str:
    """Docstrings of the standard library's own modules, classes and functions (PSF licence), sorted by path."""
    import ast
    import sysconfig

    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p in ("test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo") for p in rel):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 80:
                    out.append(doc)
    return "\n\n".join(out)


def make_tokenizer(vocab_size: int = VOCAB, text: str | None = None):
    """Train a byte-level BPE tokenizer here and wrap it as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    text = text if text is not None else text_corpus()
    tok.train_from_iterator([text[i:i + 4096] for i in range(0, len(text), 4096)], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def make_tiny(family: str, folder: Path, tokenizer, seed: int = 0, init_std: float | None = 0.08,
              **overrides) -> Path:
    """A tiny random-weight checkpoint of ``family``. ``init_std=None`` keeps transformers' own initialisation
    (flat output distributions: near-ties everywhere, the hard case for parity gates); the default 0.08 gives
    sharper ones. ``overrides`` change config fields (e.g. hidden_size, num_hidden_layers)."""
    import transformers

    cls_name, extra = CONFIGS[family]
    config = getattr(transformers, cls_name)(**{**COMMON, **extra, **overrides})
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    if init_std is not None:
        with torch.no_grad():  # larger-than-default init so logits are not all near-ties
            for p in model.parameters():
                if p.dim() >= 2:
                    p.normal_(0, init_std)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
