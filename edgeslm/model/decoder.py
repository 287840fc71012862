"""The one re-authored decoder that every backend exports.

Why re-author instead of exporting transformers' modules: transformers' models do not export cleanly to all
three runtimes (dynamic caches, ops Core ML lacks) and their internals change between releases. This decoder is
plain torch with a static KV cache; each family's differences are switches in :class:`DecoderSpec`, and the
weights come from the checkpoint unchanged (see ``families.py``).

Calling convention (the one ExecuTorch's LLM runner uses): ``forward(tokens[1, L] int64, input_pos[L] int64)``
returns float logits ``[1, vocab]`` for the last position, or ``[1, L, vocab]`` when ``full_logits`` is set
(used by parity on eager models).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "silu": F.silu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
}


@dataclass(frozen=True)
class DecoderSpec:
    """Everything that distinguishes one family's decoder from another's."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    max_seq_len: int
    norm_eps: float = 1e-6
    norm_offset: float = 0.0  # Gemma stores RMSNorm weights as (w - 1)
    activation: str = "silu"
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    sandwich_norms: bool = False  # Gemma 2/3: norms before and after attention and MLP
    embed_scale: float = 1.0
    attn_scale: float | None = None
    attn_softcap: float | None = None
    final_softcap: float | None = None
    sliding_windows: tuple[int | None, ...] = ()
    layer_rope: tuple[str, ...] = ()  # key into the rope tables, per layer

    def window(self, layer: int) -> int | None:
        """The layer's sliding window, or None when it sees the whole (static) context."""
        w = self.sliding_windows[layer] if self.sliding_windows else None
        return w if w is not None and w < self.max_seq_len else None


MASK_MARGIN = 20.0  # see Decoder.use_finite_mask


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, offset: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.offset = offset

        # [1, dim] of 1/dim when set for XNNPACK (Decoder.use_delegate_forms), else empty
        self.register_buffer("mean_weight", torch.zeros(0), persistent=False)
        self.max_scaled = False  # see Decoder.use_fp16_norms
        self.upcast = True  # False: compute in the input's dtype, as an fp16 runtime does (Core ML's simulation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.max_scaled:  # x / max|x| first: its squares stay ≤ 1 (see Decoder.use_fp16_norms)
            xf = x.float() if self.upcast else x
            peak = xf.abs().amax(-1, keepdim=True).clamp(min=2.0 ** -6)
            xf = xf / peak
            xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps / (peak * peak))
            return (xf * (self.weight.to(xf.dtype) + self.offset)).to(x.dtype)
        xf = x.float() if self.upcast else x
        sq = xf.pow(2)
        if self.mean_weight.numel():  # XNNPACK has no mean over the last dim of a 3-D tensor; it has fp32 linear
            ms = F.linear(sq, self.mean_weight)
        else:
            ms = sq.mean(-1, keepdim=True)
        xf = xf * torch.rsqrt(ms + self.eps)
        return (xf * (self.weight.to(xf.dtype) + self.offset)).to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotation_matrix(head_dim: int, rotary_dim: int) -> torch.Tensor:
    """``R`` with ``F.linear(x, R) == rotate_half(x[..., :rotary_dim])`` followed by zeros: rotate-half as one
    exact matmul (each output is one input times ±1), for runtimes whose slices cannot take a dynamic shape
    (XNNPACK)."""
    h = rotary_dim // 2
    r = torch.zeros(head_dim, head_dim)
    for j in range(h):
        r[j, j + h] = -1.0
        r[j + h, j] = 1.0
    return r


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, rot: torch.Tensor | None = None) \
        -> torch.Tensor:
    """Rotary embedding on ``x[B, L, H, D]``; only the first ``cos.shape[-1]`` dims rotate (partial rotary).
    With ``rot`` (:func:`rotation_matrix`), cos/sin span all D dims (1 and 0 past the rotary ones)."""
    rd = cos.shape[-1]
    cos = cos[None, :, None, :].to(x.dtype)
    sin = sin[None, :, None, :].to(x.dtype)
    if rot is not None:
        return x * cos + F.linear(x, rot.to(x.dtype)) * sin
    if rd == x.shape[-1]:
        return x * cos + _rotate_half(x) * sin
    rot, rest = x[..., :rd], x[..., rd:]
    return torch.cat((rot * cos + _rotate_half(rot) * sin, rest), dim=-1)


class Fused(nn.Module):
    """Linears that read the same input, computed as one (their weights stacked) and split again: one matmul and,
    quantized with dynamic int8 activations, one quantization of the input instead of one per part. The numbers
    are the parts' (per-token activation scales and per-row or per-block weight grids do not depend on the
    stacking); the exported graph is smaller, which is most of what ExecuTorch's lowering time scales with."""

    def __init__(self, linear: nn.Module, sizes: list[int]):
        super().__init__()
        self.linear = linear
        ends = list(itertools.accumulate(sizes))
        self.bounds = [(end - n, end) for n, end in zip(sizes, ends)]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # slices of a dynamic-length tensor run outside the XNNPACK delegate (as split would): up to three
        # partitions a layer, still faster than the unfused graph (tests/test_scale.py)
        y = self.linear(x)
        return tuple(y[..., start:end] for start, end in self.bounds)


# Decoder.fuse groups: (parent module, parts reading one input, the fused module's name)
FUSIONS = (("self_attn", ("q_proj", "k_proj", "v_proj"), "qkv_proj"), ("mlp", ("gate_proj", "up_proj"), "gate_up_proj"))


class Attention(nn.Module):
    def __init__(self, spec: DecoderSpec, layer: int, use_custom_ops: bool, cache_dtype: torch.dtype):
        super().__init__()
        s = spec
        self.spec = spec
        self.n_heads, self.n_kv, self.hd = s.num_heads, s.num_kv_heads, s.head_dim
        self.q_proj = nn.Linear(s.hidden_size, s.num_heads * s.head_dim, bias=s.qkv_bias)
        self.k_proj = nn.Linear(s.hidden_size, s.num_kv_heads * s.head_dim, bias=s.qkv_bias)
        self.v_proj = nn.Linear(s.hidden_size, s.num_kv_heads * s.head_dim, bias=s.qkv_bias)
        self.o_proj = nn.Linear(s.num_heads * s.head_dim, s.hidden_size, bias=s.o_bias)
        if s.qk_norm:
            self.q_norm = RMSNorm(s.head_dim, s.norm_eps, s.norm_offset)
            self.k_norm = RMSNorm(s.head_dim, s.norm_eps, s.norm_offset)
        self.scale = s.attn_scale if s.attn_scale is not None else 1.0 / math.sqrt(s.head_dim)
        self.window = s.window(layer)
        self.softcap = s.attn_softcap
        # ExecuTorch's fused ops cover plain causal attention; windows and soft-capping use the explicit path.
        self.use_custom_ops = use_custom_ops and self.window is None and self.softcap is None
        self.use_custom_cache = use_custom_ops
        self.slice_writes = False  # see Decoder.use_slice_writes
        self.finite_mask = False  # see Decoder.use_finite_mask
        shape = (1, s.max_seq_len, s.num_kv_heads, s.head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=cache_dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=cache_dtype), persistent=False)
        # rotation_matrix() when set for XNNPACK (Decoder.use_delegate_forms), else empty
        self.register_buffer("rope_rotation", torch.zeros(0), persistent=False)
        self.qkv_proj: Fused | None = None  # q/k/v as one (build_decoder(fuse=True))

    def _qkv(self, x, cos, sin):
        b = x.shape[0]  # -1 for the length: XNNPACK cannot reshape to a symbolic size
        q, k, v = self.qkv_proj(x) if self.qkv_proj is not None else (self.q_proj(x), self.k_proj(x), self.v_proj(x))
        q = q.view(b, -1, self.n_heads, self.hd)
        k = k.view(b, -1, self.n_kv, self.hd)
        v = v.view(b, -1, self.n_kv, self.hd)
        if self.spec.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        rot = self.rope_rotation if self.rope_rotation.numel() else None
        return apply_rope(q, cos, sin, rot), apply_rope(k, cos, sin, rot), v

    def forward(self, x, input_pos, cos, sin, start=None):
        """Static-cache attention: K/V are written into this layer's cache buffers at ``input_pos`` (``start`` is
        its first position as a Python/symbolic int, read once per forward by the decoder for the custom ops)."""
        b, L, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        k, v = k.to(self.k_cache.dtype), v.to(self.v_cache.dtype)

        if self.use_custom_cache:
            torch.ops.llama.update_cache(k, self.k_cache, start)
            torch.ops.llama.update_cache(v, self.v_cache, start)
        elif self.slice_writes:
            # A contiguous slice write: coremltools lowers slice_scatter to slice_update, which the Neural Engine
            # runs (scatter_nd keeps a model off it: edgeslm/backends/coreml/ane.py).
            self.k_cache.copy_(torch.slice_scatter(self.k_cache, k, dim=1, start=start, end=start + L))
            self.v_cache.copy_(torch.slice_scatter(self.v_cache, v, dim=1, start=start, end=start + L))
        else:
            # Index assignment with an index on every indexed dim lowers to scatter (Core ML's converter takes it;
            # index_copy it does not).
            b0 = torch.zeros_like(input_pos)
            self.k_cache[b0, input_pos] = k[0]
            self.v_cache[b0, input_pos] = v[0]

        if self.use_custom_ops:
            out = torch.ops.llama.custom_sdpa(
                q.to(self.k_cache.dtype), self.k_cache, self.v_cache, start, None, 0.0, True, self.scale
            )
        else:
            out = self._explicit(q, self.k_cache.transpose(1, 2), self.v_cache.transpose(1, 2), input_pos)
        return self.o_proj(out.reshape(b, -1, self.n_heads * self.hd).to(x.dtype))

    def forward_with_past(self, x, input_pos, cos, sin, past_k, past_v, key_mask=None):
        """Functional attention for runtimes that pass the cache in and out (ONNX Runtime GenAI layout):
        ``past_k/past_v [1, Hkv, P, D]`` → returns output and ``present_k/present_v [1, Hkv, P+L, D]``."""
        b, L, _ = x.shape
        q, k, v = self._qkv(x, cos, sin)
        present_k = torch.cat([past_k, k.transpose(1, 2).to(past_k.dtype)], dim=2)
        present_v = torch.cat([past_v, v.transpose(1, 2).to(past_v.dtype)], dim=2)
        out = self._explicit(q, present_k, present_v, input_pos, key_mask)
        return self.o_proj(out.reshape(b, L, self.n_heads * self.hd).to(x.dtype)), present_k, present_v

    def _explicit(self, q, kc, vc, input_pos, key_mask=None):
        """Attention of ``q [1, L, H, D]`` over keys ``kc/vc [1, Hkv, T, D]`` (key j sits at position j) with an
        explicit causal (and sliding-window) mask."""
        rep = self.n_heads // self.n_kv
        kc, vc = kc.to(q.dtype), vc.to(q.dtype)
        if rep > 1:
            kc = kc.repeat_interleave(rep, dim=1)
            vc = vc.repeat_interleave(rep, dim=1)
        scores = torch.matmul(q.transpose(1, 2), kc.transpose(2, 3)).float() * self.scale  # [1, H, L, T]
        if self.softcap is not None:
            scores = torch.tanh(scores / self.softcap) * self.softcap
        if key_mask is not None and key_mask.dim() == 2:  # [L, T]: the whole mask (cache slots ≠ positions)
            allowed = key_mask
        else:
            pos = input_pos[:, None]
            j = torch.arange(kc.shape[2], device=q.device)[None, :]
            allowed = j <= pos
            if self.window is not None:
                allowed = torch.logical_and(allowed, (pos - j) < self.window)  # (not `&`: Core ML lacks it)
            if key_mask is not None:  # [T] bool: padding positions the runtime marks as absent
                allowed = torch.logical_and(allowed, key_mask[None, :])
        if self.finite_mask:  # masked scores 20 nats below the row's minimum: weight < 2e-9, as with -inf
            scores = torch.where(allowed, scores, scores.amin(dim=-1, keepdim=True) - MASK_MARGIN)
        else:
            scores = scores.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(scores, dim=-1).to(q.dtype)
        return torch.matmul(probs, vc).transpose(1, 2)  # [1, L, H, D]


class MLP(nn.Module):
    def __init__(self, spec: DecoderSpec):
        super().__init__()
        self.gate_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=spec.mlp_bias)
        self.up_proj = nn.Linear(spec.hidden_size, spec.intermediate_size, bias=spec.mlp_bias)
        self.down_proj = nn.Linear(spec.intermediate_size, spec.hidden_size, bias=spec.mlp_bias)
        self.act = ACTIVATIONS[spec.activation]
        self.gate_up_proj: Fused | None = None  # gate/up as one (build_decoder(fuse=True))

    def forward(self, x):
        gate, up = self.gate_up_proj(x) if self.gate_up_proj is not None else (self.gate_proj(x), self.up_proj(x))
        return self.down_proj(self.act(gate) * up)


class Layer(nn.Module):
    def __init__(self, spec: DecoderSpec, layer: int, use_custom_ops: bool, cache_dtype: torch.dtype):
        super().__init__()
        norm = lambda: RMSNorm(spec.hidden_size, spec.norm_eps, spec.norm_offset)
        self.self_attn = Attention(spec, layer, use_custom_ops, cache_dtype)
        self.mlp = MLP(spec)
        self.input_layernorm = norm()
        self.post_attention_layernorm = norm()
        self.sandwich = spec.sandwich_norms
        if self.sandwich:
            self.pre_feedforward_layernorm = norm()
            self.post_feedforward_layernorm = norm()
        self.rope_key = spec.layer_rope[layer] if spec.layer_rope else "default"

    def _block(self, h, attend):
        if self.sandwich:
            h = h + self.post_attention_layernorm(attend(self.input_layernorm(h)))
            return h + self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(h)))
        h = h + attend(self.input_layernorm(h))
        return h + self.mlp(self.post_attention_layernorm(h))

    def forward(self, h, input_pos, cos, sin, start=None):
        return self._block(h, lambda x: self.self_attn(x, input_pos, cos, sin, start))

    def forward_with_past(self, h, input_pos, cos, sin, past_k, past_v, key_mask=None):
        present = []

        def attend(x):
            out, k, v = self.self_attn.forward_with_past(x, input_pos, cos, sin, past_k, past_v, key_mask)
            present.extend((k, v))
            return out

        h = self._block(h, attend)
        return h, present[0], present[1]


class Decoder(nn.Module):
    """A causal LM decoder with a static KV cache, sized for ``spec.max_seq_len`` positions."""

    def __init__(
        self,
        spec: DecoderSpec,
        rope: dict[str, tuple[torch.Tensor, float]],
        use_custom_ops: bool = False,
        cache_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if use_custom_ops:
            import executorch.extension.llm.custom_ops.custom_ops  # noqa: F401  (registers llama:: ops)
        self.spec = spec
        self.full_logits = False
        self.delegate_forms = False
        self.rope_tables = False  # see use_rope_tables
        self.embed_tokens = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.layers = nn.ModuleList(Layer(spec, i, use_custom_ops, cache_dtype) for i in range(spec.num_layers))
        self.norm = RMSNorm(spec.hidden_size, spec.norm_eps, spec.norm_offset)
        self.lm_head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=False)
        # Rope as (inv_freq, scaling) per layer type, computed in the graph exactly as transformers does: no
        # [max_seq_len, head_dim] tables stored in the artifact.
        self.rope_keys = sorted(rope)
        self.rope_scaling = {k: float(scale) for k, (_, scale) in rope.items()}
        for key, (inv_freq, _) in rope.items():
            self.register_buffer(f"rope_inv_freq_{key}", inv_freq.float().contiguous(), persistent=False)

    def _embed(self, tokens, input_pos):
        h = self.embed_tokens(tokens)
        if self.spec.embed_scale != 1.0:
            h = h * self.spec.embed_scale
        tables = {}
        for k in self.rope_keys:
            if self.rope_tables:
                tables[k] = (getattr(self, f"rope_cos_{k}")[input_pos], getattr(self, f"rope_sin_{k}")[input_pos])
                continue
            freqs = input_pos[:, None].float() * getattr(self, f"rope_inv_freq_{k}")[None, :]
            emb = torch.cat((freqs, freqs), dim=-1)
            scale = self.rope_scaling[k]
            cos, sin = (emb.cos() * scale, emb.sin() * scale) if scale != 1.0 else (emb.cos(), emb.sin())
            rest = self.spec.head_dim - cos.shape[-1]
            if self.delegate_forms and rest:  # full-width tables: dims past the rotary ones pass through
                cos = torch.cat((cos, torch.ones(cos.shape[0], rest)), dim=-1)
                sin = torch.cat((sin, torch.zeros(sin.shape[0], rest)), dim=-1)
            tables[k] = (cos, sin)
        return h, tables

    def materialize_buffers(self) -> None:
        """Give buffers created on the meta device (see model/build.py) their values on the CPU: zeros (KV caches,
        the empty delegate-form buffers); the rope frequencies were given and are real already."""
        for m in self.modules():
            for name, b in list(m.named_buffers(recurse=False)):
                if b.is_meta:
                    m.register_buffer(name, torch.zeros(b.shape, dtype=b.dtype, device="cpu"), persistent=False)

    def use_delegate_forms(self) -> Decoder:
        """Switch to formulations XNNPACK can delegate (with a dynamic length): RMSNorm's mean as an fp32 linear,
        rotate-half as a matmul. Same results (rotate-half bit-exact); each layer then lowers to one delegate
        between the cache ops instead of four (fewer delegate calls per token). Only where every layer attends
        through the custom SDPA op: with explicit attention (sliding windows, soft-capping: Gemma 2/3) XNNPACK's
        partitioner finds dependency cycles in the larger partitions, so those models keep the plain forms."""
        if not all(layer.self_attn.use_custom_ops for layer in self.layers):
            return self
        self.delegate_forms = True
        rotary = 2 * getattr(self, f"rope_inv_freq_{self.rope_keys[0]}").shape[0]
        for m in self.modules():
            if isinstance(m, RMSNorm):
                dim = m.weight.shape[0]
                m.mean_weight = torch.full((1, dim), 1.0 / dim)
            if isinstance(m, Attention):
                m.rope_rotation = rotation_matrix(self.spec.head_dim, rotary)
        return self

    def use_fp16_norms(self) -> Decoder:
        """RMSNorm as ``(x/m)·rsqrt(mean((x/m)²) + eps/m²)`` with ``m = max(max|x|, 1/64)`` over the row: the
        same value in exact arithmetic for any m > 0, but no square exceeds 1 and eps/m² stays in range. For runtimes that compute in fp16 (Core ML): there ``x²``
        overflows once |x| passes 256, and trained models' residual streams carry "massive activations" far past
        that (SmolLM2-135M-Instruct: 24,795 from layer 11 on), so the plain form gives rsqrt(inf) = 0 and zeroes
        those rows. ``mean((x/m)²) ≥ 1/dim``, so the rsqrt stays finite for any finite x."""
        for m in self.modules():
            if isinstance(m, RMSNorm):
                m.max_scaled = True
        return self

    def use_slice_writes(self) -> Decoder:
        """Write the KV cache with contiguous slice writes instead of index assignment: Core ML lowers them to
        ``slice_update`` (the Neural Engine's form) instead of ``scatter_nd``. Same values."""
        for layer in self.layers:
            layer.self_attn.slice_writes = not layer.self_attn.use_custom_cache
        return self

    def use_rope_tables(self) -> Decoder:
        """Look the rope cos/sin up in [max_seq_len, rotary] tables by position instead of computing position ×
        frequency in the graph. For static (calibrated) activation quantization: the angle tensor's range grows
        with the position, so a range calibrated on short text clips every later position (measured on the demo
        model at 16a8w: held-out NLL past position 64 went from 3.4 to 4.6 with 64-token calibration windows);
        looked-up cos/sin stay in [-1, 1] at every position. Same values as the computed form."""
        if self.rope_tables:
            return self
        positions = torch.arange(self.spec.max_seq_len)
        with torch.no_grad():
            for k in self.rope_keys:
                freqs = positions[:, None].float() * getattr(self, f"rope_inv_freq_{k}")[None, :]
                emb = torch.cat((freqs, freqs), dim=-1)
                scale = self.rope_scaling[k]
                self.register_buffer(f"rope_cos_{k}", emb.cos() * scale, persistent=False)
                self.register_buffer(f"rope_sin_{k}", emb.sin() * scale, persistent=False)
        self.rope_tables = True
        return self

    def use_finite_mask(self) -> Decoder:
        """Mask attention scores with a finite floor instead of -inf (Qualcomm's "masked softmax" form). Static
        activation quantizers calibrate a range per tensor: with -inf in the scores (replaced by the format's
        minimum) the range spans ~65535 and 16-bit steps become ~1 nat (top-1 on the demo model drops from 0.98 to
        0.89 at 16a16w). Same softmax otherwise (masked weights < 2e-9)."""
        for layer in self.layers:
            layer.self_attn.finite_mask = True
        return self

    def _logits(self, h, full: bool):
        if not full:
            h = h[:, -1, :]
        logits = self.lm_head(self.norm(h)).float()
        if self.spec.final_softcap is not None:
            logits = torch.tanh(logits / self.spec.final_softcap) * self.spec.final_softcap
        return logits

    def forward(self, tokens: torch.Tensor, input_pos: torch.Tensor) -> torch.Tensor:
        h, tables = self._embed(tokens, input_pos)
        start = None
        attn = self.layers[0].self_attn if self.layers else None
        if attn is not None and (attn.use_custom_cache or attn.slice_writes):
            # Read once here, not per layer: a per-layer .item() splits every layer's XNNPACK delegate in two.
            start = input_pos[0].item()
            torch._check_is_size(start)
            torch._check(start < self.spec.max_seq_len)
            if attn.slice_writes:
                torch._check(start + tokens.shape[1] <= self.spec.max_seq_len)
        for layer in self.layers:
            h = layer(h, input_pos, *tables[layer.rope_key], start)
        return self._logits(h, self.full_logits)

    def forward_with_past(self, tokens, input_pos, past: list[torch.Tensor], key_mask=None):
        """Cache in, cache out: ``past`` is ``[k0, v0, k1, v1, ...]`` each ``[1, Hkv, P, D]``; returns
        ``(logits [1, L, vocab], presents)`` with the same layout grown by L positions."""
        h, tables = self._embed(tokens, input_pos)
        presents = []
        for i, layer in enumerate(self.layers):
            h, k, v = layer.forward_with_past(h, input_pos, *tables[layer.rope_key], past[2 * i], past[2 * i + 1],
                                              key_mask)
            presents += [k, v]
        return self._logits(h, True), presents
