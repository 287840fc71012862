"""Architecture registry: how each Hugging Face family maps onto :class:`~edgeslm.model.decoder.DecoderSpec`.

One entry per family, keyed by the checkpoint's ``config.model_type``. Differences between families are data
(norm offset, sandwich norms, fused projections, ...), never if/elif chains over model types.
"""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from edgeslm.errors import InputError
from edgeslm.model.decoder import ACTIVATIONS, DecoderSpec


Loader = Callable[[], torch.Tensor]


def _split_fused(sd: dict[str, Loader], spec: DecoderSpec) -> dict[str, Loader]:
    """Phi-3 stores q/k/v as one ``qkv_proj`` and gate/up as one ``gate_up_proj``; split them (each part is read
    when asked for, as a copy, so it does not keep the whole fused tensor alive)."""
    out = {}
    q, kv = spec.num_heads * spec.head_dim, spec.num_kv_heads * spec.head_dim
    for name, load in sd.items():
        if ".qkv_proj." in name:
            for i, part in enumerate(("q_proj", "k_proj", "v_proj")):
                out[name.replace("qkv_proj", part)] = \
                    lambda load=load, i=i: torch.split(load(), [q, kv, kv], dim=0)[i].clone()
        elif ".gate_up_proj." in name:
            for i, part in enumerate(("gate_proj", "up_proj")):
                out[name.replace("gate_up_proj", part)] = lambda load=load, i=i: torch.chunk(load(), 2, dim=0)[i].clone()
        else:
            out[name] = load
    return out


@dataclass(frozen=True)
class Family:
    """One architecture family and the switches that turn its HF config into a DecoderSpec."""

    name: str
    model_types: tuple[str, ...]
    example: str
    norm_offset: float = 0.0
    sandwich_norms: bool = False
    scaled_embeddings: bool = False
    qk_norm: bool = False
    qkv_bias: bool | None = None  # None: read config.attention_bias
    fused_projections: bool = False
    weight_prefixes: tuple[str, ...] = ("model.",)

    def spec(self, config, max_seq_len: int, weights: dict[str, torch.Tensor]) -> DecoderSpec:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        act = getattr(config, "hidden_activation", None) or getattr(config, "hidden_act", "silu")
        if act not in ACTIVATIONS:
            raise InputError(
                f"activation {act!r} of this {self.name} checkpoint is not supported",
                f"supported activations are {', '.join(sorted(ACTIVATIONS))}",
            )
        n = config.num_hidden_layers
        layer_types = list(getattr(config, "layer_types", None) or ["full_attention"] * n)
        sw = getattr(config, "sliding_window", None)
        if getattr(config, "layer_types", None):
            windows = tuple(sw if t == "sliding_attention" else None for t in layer_types)
        else:
            windows = tuple(sw for _ in range(n))
        scalar = getattr(config, "query_pre_attn_scalar", None)
        qkv_bias = self.qkv_bias if self.qkv_bias is not None else bool(getattr(config, "attention_bias", False))
        return DecoderSpec(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            num_layers=n,
            num_heads=heads,
            num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=head_dim,
            intermediate_size=config.intermediate_size,
            max_seq_len=max_seq_len,
            norm_eps=getattr(config, "rms_norm_eps", 1e-6),
            norm_offset=self.norm_offset,
            activation=act,
            qkv_bias=qkv_bias,
            o_bias=any(k.endswith("o_proj.bias") for k in weights),
            mlp_bias=any(k.endswith("down_proj.bias") for k in weights),
            qk_norm=self.qk_norm,
            sandwich_norms=self.sandwich_norms,
            embed_scale=math.sqrt(config.hidden_size) if self.scaled_embeddings else 1.0,
            attn_scale=scalar**-0.5 if scalar else None,
            attn_softcap=getattr(config, "attn_logit_softcapping", None),
            final_softcap=getattr(config, "final_logit_softcapping", None),
            sliding_windows=windows,
            layer_rope=tuple(layer_types),
        )

    def map_weights(self, weights: Mapping[str, torch.Tensor], spec: DecoderSpec, tied: bool) -> dict[str, Loader]:
        """Decoder names → a loader of that tensor from the checkpoint (names mapped, fused projections split).
        Loaders, not tensors: the decoder is filled one tensor at a time."""
        out: dict[str, Loader] = {}
        for name in weights:
            key = name
            for prefix in self.weight_prefixes:
                if key.startswith(prefix):
                    key = key[len(prefix) :]
                    break
            out[key] = lambda name=name: weights[name]
        if self.fused_projections:
            out = _split_fused(out, spec)
        if "lm_head.weight" not in out or tied:
            out["lm_head.weight"] = out["embed_tokens.weight"]
        return out


FAMILIES: tuple[Family, ...] = (
    Family("llama", ("llama",), "HuggingFaceTB/SmolLM2-135M"),
    Family("mistral", ("mistral",), "mistralai/Mistral-7B-Instruct-v0.3"),
    Family("qwen2", ("qwen2",), "Qwen/Qwen2.5-0.5B-Instruct", qkv_bias=True),
    Family("qwen3", ("qwen3",), "Qwen/Qwen3-0.6B", qk_norm=True),
    Family("phi3", ("phi3",), "microsoft/Phi-3-mini-4k-instruct", fused_projections=True),
    Family("gemma2", ("gemma2",), "google/gemma-2-2b-it", norm_offset=1.0, sandwich_norms=True, scaled_embeddings=True),
    Family(
        "gemma3",
        ("gemma3_text",),
        "google/gemma-3-1b-it",
        norm_offset=1.0,
        sandwich_norms=True,
        scaled_embeddings=True,
        qk_norm=True,
    ),
)
_BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}


def supported_model_types() -> list[str]:
    return sorted(_BY_TYPE)


def family_for(config) -> Family:
    model_type = getattr(config, "model_type", None)
    fam = _BY_TYPE.get(model_type)
    if fam is None:
        raise InputError(
            f"unsupported architecture {model_type!r} ({', '.join(getattr(config, 'architectures', None) or [])})",
            f"supported model_type values are: {', '.join(supported_model_types())}",
        )
    return fam


def rope_tables(config, max_seq_len: int) -> dict[str, tuple[torch.Tensor, float]]:
    """(inv_freq, attention_scaling) per layer type, taken from the family's own transformers rotary module.

    Using transformers' RotaryEmbedding (and so its ROPE_INIT_FUNCTIONS: llama3, yarn, longrope, ...) means
    every rope-scaling variant matches the reference without being re-implemented here. The module is run
    once over the whole context first, so length-dependent variants settle on the frequencies for it.
    The decoder recomputes cos/sin from these exactly as transformers does; that is checked here.
    """
    from transformers import AutoModelForCausalLM

    model_cls = AutoModelForCausalLM._model_mapping[type(config)]
    module = importlib.import_module(model_cls.__module__)
    rotary_cls = next(
        getattr(module, n) for n in dir(module) if n.endswith("RotaryEmbedding") and not n.startswith("_")
    )
    rotary = rotary_cls(config)
    pos = torch.arange(max_seq_len)[None, :]
    x = torch.zeros(1, dtype=torch.float32)
    per_type = "layer_type" in inspect.signature(rotary.forward).parameters
    types = sorted(set(getattr(config, "layer_types", None) or ["full_attention"]))
    out = {}
    for t in types:
        cos, _ = rotary(x, pos, layer_type=t) if per_type else rotary(x, pos)
        inv = getattr(rotary, f"{t}_inv_freq") if per_type else rotary.inv_freq
        scale = getattr(rotary, f"{t}_attention_scaling") if per_type else rotary.attention_scaling
        freqs = pos[0, :, None].float() * inv.float()[None, :]
        if not torch.allclose(torch.cat((freqs, freqs), -1).cos() * scale, cos[0], atol=1e-6):
            raise InputError(f"rope of {config.model_type} ({t}) is not reproducible from its inv_freq",
                             "this rope variant is not supported yet; please report it")
        out[t] = (inv.detach().clone(), float(scale))
    return out
