"""GGUF files in: a ``.gguf`` (llama.cpp's format) becomes an ordinary Hugging Face model folder, once.

The file is checked first (magic, complete tensor data, an architecture transformers reads from GGUF, a
tokenizer), then converted through transformers' own GGUF loader: every tensor dequantized to fp32 safetensors,
``config.json`` without the GGUF ``quantization_config``, ``generation_config.json`` and the tokenizer files
(chat template included). The folder is cached under ``<cache>/gguf/<sha256 of the file>/`` (``<cache>``:
``$EDGESLM_CACHE``, else ``$XDG_CACHE_HOME/edgeslm``, else ``~/.cache/edgeslm``) and written atomically (a
temporary folder renamed into place), so an interrupted conversion leaves nothing half-written and a second run
reuses it. The rest of edgeslm then reads it as a local folder.

The reference edgeslm compares against is therefore the *dequantized* GGUF model (the weights on the file's
quantization grid, in fp32), not the original fp16/bf16 release the file was made from.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.filefacts import sha256

GGUF_MAGIC = b"GGUF"
CACHE_ENV = "EDGESLM_CACHE"
INFO_FILE = "edgeslm-gguf.json"  # the provenance, written last into the converted folder
# GGUF ``general.architecture`` spellings that transformers' table lists under another name
_ARCH_ALIASES = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2",
                 "t5encoder": "t5"}


@dataclass(frozen=True)
class GGUFOrigin:
    """Where a converted folder came from: the file's name, its sha256, and its tensors' GGML types."""

    file: str
    sha256: str
    architecture: str
    tensor_types: tuple[tuple[str, int], ...]  # (GGML type name, tensor count), most frequent first
    dtype: str = "float32"  # what the converted safetensors hold

    def to_json(self) -> dict:
        return {"file": self.file, "sha256": self.sha256, "architecture": self.architecture,
                "tensor_types": dict(self.tensor_types), "converted_dtype": self.dtype,
                "reference": "dequantized"}

    @classmethod
    def from_json(cls, d: dict) -> GGUFOrigin:
        return cls(d["file"], d["sha256"], d["architecture"],
                   tuple(sorted(d["tensor_types"].items(), key=lambda kv: (-kv[1], kv[0]))),
                   d.get("converted_dtype", "float32"))


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "edgeslm"


def supported_architectures() -> list[str]:
    """The ``general.architecture`` values the installed transformers converts from GGUF."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    names = set(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}
    try:  # architectures read by the newer GGUF path (transformers 5.x)
        from transformers.integrations.gguf import GGUF_CONFIG_ARCHS

        names |= set(GGUF_CONFIG_ARCHS)
    except ImportError:
        pass
    return sorted(names)


def _field(reader, key: str):
    f = reader.fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # older gguf packages: no contents()
        return bytes(f.parts[f.data[0]]).decode() if f.types and int(f.types[0]) == 8 else f.parts[f.data[0]][0]


def _check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise InputError(f"cannot read {path} ({e.strerror})", "check the path and its permissions") from None
    if magic != GGUF_MAGIC:
        raise InputError(f"{path.name} is not a GGUF file (it starts with {magic!r}, not b'GGUF')",
                         "pass a .gguf written by llama.cpp's converters, or a Hugging Face model folder")


def inspect(path: Path) -> tuple[str, tuple[tuple[str, int], ...]]:
    """Check ``path`` is a complete GGUF that transformers can convert: ``(architecture, tensor types)``, or one
    InputError naming what is wrong. Reads the header and tensor index only (memory-mapped)."""
    name = path.name
    _check_magic(path)
    try:
        from gguf import GGUFReader
    except ImportError:
        raise InputError("reading GGUF files needs the gguf package", "pip install 'gguf>=0.19,<0.20'") from None
    size = path.stat().st_size
    truncated = InputError(f"{name} is truncated or corrupt (its header or tensor data ends early; "
                           f"{size} bytes on disk)", "download or copy the file again")
    try:
        reader = GGUFReader(path)
        tensors = list(reader.tensors)
        end = max((t.data_offset + int(t.n_bytes) for t in tensors), default=0)
    except Exception:  # the reader fails in many ways on a file that ends early or is damaged
        raise truncated from None
    if not tensors or end > size or any(len(t.data) == 0 and int(t.n_elements) for t in tensors):
        raise truncated
    arch = _field(reader, "general.architecture")
    supported = supported_architectures()
    if not isinstance(arch, str) or (arch not in supported and _ARCH_ALIASES.get(arch) not in supported):
        raise InputError(f"{name} holds a {arch or 'unnamed'} model, an architecture transformers cannot read "
                         f"from GGUF", f"GGUF architectures supported: {', '.join(supported)}; or pass the "
                         "model's Hugging Face folder instead")
    if "tokenizer.ggml.tokens" not in reader.fields or "tokenizer.ggml.model" not in reader.fields:
        raise InputError(f"{name} has no tokenizer (no tokenizer.ggml.* metadata)",
                         "convert the model again with its tokenizer (llama.cpp's convert_hf_to_gguf.py writes it), "
                         "or pass the model's Hugging Face folder")
    types = Counter(t.tensor_type.name for t in tensors)
    return arch, tuple(sorted(types.items(), key=lambda kv: (-kv[1], kv[0])))


def convert(gguf_path: Path, dest: Path) -> None:
    """Write ``gguf_path`` as a Hugging Face folder into the (existing, empty) ``dest``: fp32 safetensors, config,
    generation config, tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    state, seen = {}, {}
    tied = set()
    if getattr(model.config, "tie_word_embeddings", False):
        out = model.get_output_embeddings()
        if out is not None and out.weight is model.get_input_embeddings().weight:
            tied = {n for n, p in model.named_parameters(remove_duplicate=False) if p is out.weight}
    for n, t in model.state_dict().items():
        if n in tied and n.startswith("lm_head"):
            continue
        key = (t.data_ptr(), t.shape, t.dtype)
        if t.data_ptr() and key in seen:  # another name of a tensor already kept (a tied table): keep one copy
            continue
        seen[key] = n
        state[n] = t.detach().to(torch.float32).contiguous()
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    config["architectures"] = [type(model).__name__]
    config["dtype"] = "float32"
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    if model.generation_config is not None:
        model.generation_config.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def resolve_gguf(path: Path) -> tuple[Path, GGUFOrigin]:
    """The converted folder for ``path`` (converted now unless cached) and the file's provenance."""
    path = Path(path)
    _check_magic(path)
    digest = sha256(path)
    root = cache_root() / "gguf"
    final = root / digest
    info = final / INFO_FILE
    if info.is_file():  # converted before (the folder appears whole or not at all): no need to parse the file
        try:
            origin = GGUFOrigin.from_json(json.loads(info.read_text()))
            return final, GGUFOrigin(path.name, digest, origin.architecture, origin.tensor_types, origin.dtype)
        except (ValueError, KeyError, TypeError):
            shutil.rmtree(final, ignore_errors=True)  # not ours or damaged: convert again
    arch, types = inspect(path)
    origin = GGUFOrigin(path.name, digest, arch, types)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create the GGUF cache folder {root} ({e.strerror})",
                         f"set {CACHE_ENV} to a writable folder") from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=root))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 is for the temporary name only
        try:
            convert(path, tmp)
        except InputError:
            raise
        except Exception as e:  # transformers raises many types on files it cannot convert
            why = " ".join(str(e).split())[:300]
            raise InputError(f"transformers cannot convert {path.name} ({type(e).__name__}: {why})",
                             "pass the model's Hugging Face folder instead") from None
        import transformers

        info_doc = {**origin.to_json(), "converted_by": f"transformers {transformers.__version__}"}
        (tmp / INFO_FILE).write_text(json.dumps(info_doc, indent=2) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / INFO_FILE).is_file():  # no one else finished it: a real failure
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # a concurrent run converted the same file first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _drop_if_empty(root)
        raise
    return final, origin


def _drop_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
