"""Read a checkpoint folder: config, safetensors weights, tokenizer, special tokens and generation defaults.

Pickle checkpoints (``*.bin``, ``*.pt``) are refused: loading them runs arbitrary code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from edgeslm.errors import InputError
from edgeslm.model.source import ModelSource
from edgeslm.model.families import family_for

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class SpecialTokens:
    bos_id: int | None
    eos_ids: tuple[int, ...]
    pad_id: int | None
    bos: str | None
    eos: str | None


@dataclass
class Checkpoint:
    """A model folder that has been checked: config parses, weights are safetensors, tokenizer loads."""

    source: ModelSource
    config: object
    weight_files: list[Path]
    tokenizer: object
    special: SpecialTokens
    generation: dict = field(default_factory=dict)
    chat_template: str | None = None

    @cached_property
    def weights(self) -> "LazyWeights":
        """Name → tensor, each read from disk when asked for (never the whole checkpoint in memory at once)."""
        return LazyWeights(self.weight_files)

    @property
    def parameters(self) -> int:
        return sum(self.weights.numel(k) for k in self.weights)

    @property
    def checkpoint_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.weight_files)

    def check_shapes(self) -> None:
        """Every checkpoint tensor the transformers model has must have that parameter's shape (from the
        safetensors headers and a meta-device model: no weight is read), else config.json and the weights
        disagree, which would otherwise surface as a crash deep inside a run."""
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(self.config, dtype=torch.float32)
        params = dict(model.named_parameters(remove_duplicate=False))
        for key in self.weights:
            if key in params and tuple(self.weights.shape(key)) != tuple(params[key].shape):
                raise InputError(
                    f"weights file {self.weights.file(key).name}: tensor {key} has shape "
                    f"{tuple(self.weights.shape(key))} but config.json implies {tuple(params[key].shape)}",
                    "the weights and config.json come from different models: re-save the model")

    def reference_model(self, filled: dict | None = None):
        """The original transformers model in fp32 (the parity reference), filled one tensor at a time.

        ``from_pretrained`` maps the checkpoint and casts it, so its peak is the fp32 model plus the mapped file
        (1.5x fp32 for a bf16 checkpoint); here the model is built on the meta device and each fp32 tensor is
        assigned as it is read. Models whose modules this cannot fill (a buffer or weight left on meta) are
        loaded with ``from_pretrained`` instead. ``filled``: receives checkpoint name → the fp32 tensor assigned
        from it (nothing on the ``from_pretrained`` path, whose loading may convert what it reads)."""
        from transformers import AutoModelForCausalLM

        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(self.config, dtype=torch.float32)
        names = dict(model.named_parameters(remove_duplicate=False))
        assigned = {}
        for key in self.weights:
            if key in names:
                owner, _, attr = key.rpartition(".")
                assigned[key] = self.weights[key].to(torch.float32)
                setattr(model.get_submodule(owner), attr, torch.nn.Parameter(assigned[key], requires_grad=False))
        model.tie_weights()
        for name, mod in list(model.named_modules()):  # rotary tables are computed, not stored: rebuild them
            if any(b.is_meta for b in mod.buffers(recurse=False)) and hasattr(mod, "config"):
                owner, _, attr = name.rpartition(".")
                setattr(model.get_submodule(owner) if owner else model, attr, type(mod)(mod.config))
        if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
            del model, assigned
            model = AutoModelForCausalLM.from_pretrained(self.source.path, dtype=torch.float32)
        elif filled is not None:
            filled.update(assigned)
        return model.eval()


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if files:
        return files
    pickles = sorted(p.name for pat in ("*.bin", "*.pt", "*.pth") for p in folder.glob(pat))
    if pickles:
        raise InputError(
            f"{folder} holds only pickle weights ({', '.join(pickles[:3])}); edgeslm loads safetensors only, "
            "since unpickling runs arbitrary code",
            "convert once in a trusted environment: AutoModelForCausalLM.from_pretrained(dir)"
            ".save_pretrained(out, safe_serialization=True)",
        )
    raise InputError(f"no weights (*.safetensors) in {folder}", "pass a folder written by save_pretrained")


def _corrupt(f: Path, why: object) -> InputError:
    return InputError(
        f"weights file {f.name} is corrupt or truncated ({why})",
        "download it again (delete it from the HF cache first) or re-save the model",
    )


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


class LazyWeights(Mapping):
    """A safetensors checkpoint as a read-only mapping whose tensors are read on access with plain file reads.

    Why not ``safetensors.torch.load_file``: it materialises every tensor at once, and a memory-mapped read counts
    the touched file pages in the process's RSS while the map is open; here one tensor at a time is read into
    its own buffer, so building a model costs the model, not model + checkpoint."""

    def __init__(self, files: list[Path]):
        self._where: dict[str, tuple[Path, int, dict]] = {}
        for f in files:
            header, start = _read_header(f)
            for name, info in header.items():
                if name != "__metadata__":
                    self._where[name] = (f, start, info)

    def __getitem__(self, name: str) -> torch.Tensor:
        f, start, info = self._where[name]
        dtype = _DTYPES.get(info["dtype"])
        if dtype is None:
            raise _corrupt(f, f"tensor {name} has unsupported dtype {info['dtype']}")
        begin, end = info["data_offsets"]
        buf = torch.empty(end - begin, dtype=torch.uint8)
        with open(f, "rb") as fh:
            fh.seek(start + begin)
            if fh.readinto(memoryview(buf.numpy())) != end - begin:
                raise _corrupt(f, f"tensor {name} is cut short")
        return buf.view(dtype).reshape(info["shape"]) if end > begin else torch.empty(info["shape"], dtype=dtype)

    def shape(self, name: str) -> list[int]:
        return list(self._where[name][2]["shape"])

    def file(self, name: str) -> Path:
        return self._where[name][0]

    def numel(self, name: str) -> int:
        n = 1
        for d in self._where[name][2]["shape"]:
            n *= d
        return n

    def __iter__(self):
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


class WeightsOverlay(Mapping):
    """Another weights mapping's names, shapes and files, with some of its tensors served otherwise (a subclass's
    ``__getitem__``): an adapter merged in, or a loaded model's own tensors."""

    def __init__(self, base: Mapping):
        self.base = base

    def shape(self, name: str) -> list[int]:
        return self.base.shape(name)

    def file(self, name: str) -> Path:
        return self.base.file(name)

    def numel(self, name: str) -> int:
        return self.base.numel(name)

    def __iter__(self):
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)


class SharedWeights(WeightsOverlay):
    """``base`` with the tensors in ``loaded`` (name → the fp32 tensor a loaded model was filled with from these
    same weights) served as they are: a second fp32 model built from them shares that memory instead of reading
    and converting the checkpoint again (Llama-3.2-1B: 3 s and 4.9 GB of fresh pages)."""

    def __init__(self, base: Mapping, loaded: dict):
        super().__init__(base)
        self.loaded = loaded

    def __getitem__(self, name: str) -> torch.Tensor:
        t = self.loaded.get(name)
        return self.base[name] if t is None else t


def _read_header(f: Path) -> tuple[dict, int]:
    """A safetensors file's JSON header and where its data starts."""
    import struct

    with open(f, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > f.stat().st_size - 8:
            raise ValueError("header longer than file")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise ValueError(f"header is a JSON {type(header).__name__}, not an object")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if isinstance(info, dict) and isinstance(info.get("dtype"), str) and info["dtype"] not in _DTYPES:
            raise ValueError(f"tensor {name!r} has dtype {info['dtype']}, which edgeslm cannot read "
                             f"(it reads {', '.join(_DTYPES)})")
        try:
            shape, (begin, end), dtype = info["shape"], info["data_offsets"], _DTYPES[info["dtype"]]
            if not (all(isinstance(d, int) and d >= 0 for d in shape) and isinstance(begin, int)
                    and isinstance(end, int) and 0 <= begin <= end):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"tensor {name!r} has a malformed entry {str(info)[:80]}") from None
        numel = 1
        for d in shape:
            numel *= d
        if end - begin != numel * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: shape {shape} of {info['dtype']} needs {numel * dtype.itemsize} "
                             f"bytes, its offsets span {end - begin}")
    return header, 8 + n


def check_safetensors_headers(files: list[Path]) -> None:
    """Cheap integrity check: the header parses and the file is as long as the header says."""
    import struct

    for f in files:
        size = f.stat().st_size
        try:
            header, start = _read_header(f)
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            if start + end != size:
                raise ValueError(f"file has {size} bytes, header describes {start + end}")
        except (ValueError, struct.error, KeyError, TypeError) as e:
            raise _corrupt(f, e) from None


def _special_tokens(config, tokenizer, generation: dict) -> SpecialTokens:
    """bos/eos from the model's config, checked against the tokenizer: a mismatch would break the app."""
    bos_id = generation.get("bos_token_id", getattr(config, "bos_token_id", None))
    eos = generation.get("eos_token_id", getattr(config, "eos_token_id", None))
    eos_ids = tuple(eos if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else []))
    tok_bos = tokenizer.bos_token_id
    tok_eos = tokenizer.eos_token_id
    if bos_id is None:
        bos_id = tok_bos
    if not eos_ids and tok_eos is not None:
        eos_ids = (tok_eos,)
    vocab = len(tokenizer)
    problems = []
    if bos_id is not None and tok_bos is not None and bos_id != tok_bos:
        problems.append(f"config bos_token_id={bos_id} but the tokenizer's bos {tokenizer.bos_token!r} is {tok_bos}")
    if tok_eos is not None and eos_ids and tok_eos not in eos_ids:
        problems.append(f"config eos_token_id={list(eos_ids)} does not include the tokenizer's eos "
                        f"{tokenizer.eos_token!r} ({tok_eos})")
    for t in ([bos_id] if bos_id is not None else []) + list(eos_ids):
        if not 0 <= t < vocab:
            problems.append(f"special token id {t} is outside the tokenizer's vocabulary ({vocab})")
    if not eos_ids:
        problems.append("neither config nor tokenizer names an eos token, so generation could never stop")
    if problems:
        raise InputError(
            "special tokens disagree between config and tokenizer: " + "; ".join(problems),
            "fix bos_token_id/eos_token_id in config.json / generation_config.json or the tokenizer files",
        )
    pad = getattr(config, "pad_token_id", None)
    return SpecialTokens(bos_id, eos_ids, pad, tokenizer.bos_token, tokenizer.eos_token)


def _generation_config(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise InputError(f"{path} is not valid JSON ({e})", "fix it or delete it (it only holds generation "
                         "defaults)") from None
    if not isinstance(data, dict):
        raise InputError(f"{path} holds a JSON {type(data).__name__}, not an object of generation defaults",
                         "fix it or delete it")
    return data


def load_checkpoint(source: ModelSource) -> Checkpoint:
    """Check a model folder and read everything but the weights (read lazily)."""
    from transformers import AutoConfig, AutoTokenizer

    folder = source.path
    files = _weight_files(folder)
    check_safetensors_headers(files)
    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as e:  # transformers validates configs with many exception types
        why = " ".join(str(e).split())
        raise InputError(f"cannot read {folder / 'config.json'}: {why}", "check the model folder") from None

    family_for(config)  # fail early on unsupported architectures

    if not any((folder / n).is_file() for n in ("tokenizer.json", "tokenizer.model")):
        raise InputError(
            f"missing tokenizer: {folder} has no tokenizer.json or tokenizer.model",
            "copy the tokenizer files of the original model into the folder (tokenizer.save_pretrained(dir))",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    except Exception as e:  # tokenizers raise many types
        raise InputError(f"the tokenizer in {folder} does not load ({e})", "re-save it with save_pretrained") from None
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("the tokenizer has no fast (tokenizer.json) form", "save it with a fast tokenizer")

    generation = _generation_config(folder / "generation_config.json")
    special = _special_tokens(config, tokenizer, generation)
    return Checkpoint(
        source=source,
        config=config,
        weight_files=files,
        tokenizer=tokenizer,
        special=special,
        generation=generation,
        chat_template=getattr(tokenizer, "chat_template", None),
    )
