"""LoRA adapters (PEFT format): resolve, check against the base checkpoint, and merge into its weights.

An adapter folder holds ``adapter_config.json`` and ``adapter_model.safetensors`` (Hub ids resolve through the
HF cache like models). Everything that can be wrong is refused before any heavy work, each with the fix: another
architecture or shapes, target modules the base does not have, rank/alpha missing, pickle weights, PEFT
features edgeslm does not merge (DoRA, trained biases, modules_to_save, per-module rank/alpha patterns).

Merging happens where the weights are read: :class:`MergedWeights` wraps the checkpoint's lazy mapping and
returns ``W + (alpha / r) * B @ A`` (``alpha / sqrt(r)`` with rsLoRA) for each adapted weight, in fp32, so the
re-authored decoder's weight mapping (fused projections included) serves adapted models unchanged. The parity
reference is PEFT itself (the adapter applied unmerged by ``peft.PeftModel``), so the adapter stage checks the
merge against the library users train with.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeslm.errors import InputError
from edgeslm.model.source import ModelSource, resolve_hub
from edgeslm.model.checkpoint import LazyWeights, WeightsOverlay, check_safetensors_headers

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class Adapter:
    source: ModelSource
    name: str  # short name, unique in the bundle (artifact suffix)
    rank: int
    alpha: float
    scale: float
    target_modules: tuple[str, ...]
    pairs: dict  # base weight name → (lora_A key, lora_B key)
    sha256: str

    def record(self) -> dict:
        return {"id": self.source.model_id, "source": self.source.kind, "revision": self.source.revision,
                "commit": self.source.commit, "name": self.name, "sha256": self.sha256, "rank": self.rank,
                "alpha": self.alpha, "scale": self.scale, "target_modules": list(self.target_modules),
                "adapted_weights": len(self.pairs)}


def resolve_adapter(spec: str, revision: str | None = None) -> ModelSource:
    """A local adapter folder, or a Hub id from the HF cache (the model resolver, which needs config.json in a
    local folder, is not used for local folders: adapters have adapter_config.json instead)."""
    local = Path(spec).expanduser()
    if local.exists():
        if not local.is_dir() or not (local / CONFIG).is_file():
            raise InputError(f"adapter {spec} is not a PEFT adapter folder (no {CONFIG} in it)",
                             "pass a folder written by PeftModel.save_pretrained (adapter_config.json, "
                             "adapter_model.safetensors)")
        return ModelSource(local.resolve(), str(local), "local")
    if spec.startswith((".", "/", "~")):
        raise InputError(f"adapter folder {spec} does not exist", "check the path")
    src = resolve_hub(spec, revision, "adapter")
    if not (src.path / CONFIG).is_file():
        raise InputError(f"{spec} in the HF cache is not a PEFT adapter (no {CONFIG})", "pass a LoRA adapter id")
    return src


def _config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / CONFIG).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{folder / CONFIG} is not valid JSON ({e})", "re-save the adapter with PEFT") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{folder / CONFIG} holds a JSON {type(cfg).__name__}, not an object",
                         "re-save the adapter with PEFT")
    return cfg


def load_adapter(spec: str, ckpt, name: str | None = None, revision: str | None = None) -> Adapter:
    """Resolve and check one adapter against the base checkpoint ``ckpt`` (headers only: no weight read)."""
    src = resolve_adapter(spec, revision)
    folder = src.path
    cfg = _config(folder)
    where = f"adapter {spec}"
    if str(cfg.get("peft_type", "")).upper() != "LORA":
        raise InputError(f"{where} is a {cfg.get('peft_type') or 'untyped'} adapter; edgeslm merges LoRA only",
                         "pass a LoRA adapter (peft_type LORA)")
    for key in ("r", "lora_alpha"):
        v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
            raise InputError(f"{where}: {CONFIG} has no valid {key} ({v!r})",
                             "r (rank) and lora_alpha must be positive numbers: re-save the adapter with PEFT")
    unsupported = [k for k, bad in (("use_dora", bool(cfg.get("use_dora"))),
                                    ("bias", cfg.get("bias", "none") not in ("none", None)),
                                    ("modules_to_save", bool(cfg.get("modules_to_save"))),
                                    ("rank_pattern", bool(cfg.get("rank_pattern"))),
                                    ("alpha_pattern", bool(cfg.get("alpha_pattern"))),
                                    ("fan_in_fan_out", bool(cfg.get("fan_in_fan_out")))) if bad]
    if unsupported:
        raise InputError(f"{where} uses {', '.join(unsupported)}, which edgeslm does not merge",
                         "train a plain LoRA adapter (no DoRA, bias='none', no modules_to_save or rank/alpha "
                         "patterns), or merge it yourself with PeftModel.merge_and_unload() and export the result")
    weights = folder / WEIGHTS
    if not weights.is_file():
        pickles = [p.name for p in folder.glob("*.bin")]
        raise InputError(f"{where} has no {WEIGHTS}" + (f" (only pickle weights: {', '.join(pickles)})" if pickles
                                                        else ""),
                         "save the adapter with safe_serialization=True (unpickling runs arbitrary code)")
    check_safetensors_headers([weights])
    lora = LazyWeights([weights])
    parts: dict[str, dict[str, str]] = {}
    for key in lora:
        m = _KEY.match(key)
        if not m:
            raise InputError(f"{where}: tensor {key} is not a LoRA A/B weight",
                             "edgeslm merges LoRA A/B matrices only; re-save a plain LoRA adapter")
        parts.setdefault(m["module"], {})[m["ab"]] = key
    base = ckpt.weights
    pairs = {}
    for module, ab in sorted(parts.items()):
        target = f"{module}.weight"
        if target not in base:
            raise InputError(f"{where} adapts {module}, which the base model {ckpt.source.model_id} does not have",
                             "pass the adapter trained for this base model (adapter_config.json names it: "
                             f"{cfg.get('base_model_name_or_path') or 'not recorded'})")
        if set(ab) != {"A", "B"}:
            raise InputError(f"{where}: {module} has lora_{next(iter(ab))} but not its pair", "re-save the adapter")
        out_f, in_f = base.shape(target)[:2] if len(base.shape(target)) == 2 else (None, None)
        a, b = lora.shape(ab["A"]), lora.shape(ab["B"])
        if out_f is None or a[1] != in_f or b[0] != out_f or a[0] != b[1] or a[0] != cfg["r"]:
            raise InputError(f"{where}: {module} has lora_A {tuple(a)} and lora_B {tuple(b)}, which do not fit "
                             f"the base weight {tuple(base.shape(target))} at rank {cfg['r']}",
                             "the adapter was trained for another model or size: pass the matching adapter")
        pairs[target] = (ab["A"], ab["B"])
    if not pairs:
        raise InputError(f"{where} holds no LoRA weights", "re-save the adapter with PEFT")
    alpha, r = float(cfg["lora_alpha"]), int(cfg["r"])
    scale = alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r
    targets = cfg.get("target_modules") or sorted({m.rsplit(".", 1)[-1] for m in parts})
    targets = tuple([targets] if isinstance(targets, str) else targets)
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    return Adapter(src, name or Path(src.model_id).name, r, alpha, scale, targets, pairs, sha)


class MergedWeights(WeightsOverlay):
    """The base checkpoint's lazy weights with one adapter merged into the weights it adapts (fp32)."""

    def __init__(self, base, adapter: Adapter):
        super().__init__(base)
        self.adapter = adapter
        self.lora = LazyWeights([adapter.source.path / WEIGHTS])

    def __getitem__(self, name: str) -> torch.Tensor:
        w = self.base[name]
        pair = self.adapter.pairs.get(name)
        if pair is None:
            return w
        a, b = (self.lora[k].to(torch.float32) for k in pair)
        return w.to(torch.float32) + self.adapter.scale * (b @ a)


def adapted(ckpt, adapter: Adapter):
    """A copy of ``ckpt`` whose weights have ``adapter`` merged (decoder, parity and every backend read them)."""
    out = copy.copy(ckpt)
    out.__dict__["weights"] = MergedWeights(ckpt.weights, adapter)
    out.adapter = adapter
    return out


def peft_reference(ckpt, adapter: Adapter):
    """The parity reference: the base transformers model with the adapter applied by PEFT, unmerged."""
    from peft import PeftModel

    return PeftModel.from_pretrained(ckpt.reference_model(), str(adapter.source.path)).eval()
