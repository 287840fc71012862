"""Resolve what the user named (``demo``, a local folder, a ``.gguf`` file, or a Hub id) to a folder of checkpoint
files.

Hub ids go through huggingface_hub's cache (``--revision`` honoured, works offline when cached). Nothing here
downloads unless the cache misses and the network is allowed. A GGUF file (local, or ``gguf_file`` in a Hub repo,
also written ``org/name/FILE.gguf``) is converted once into a cached folder (``edgeslm.model.gguf``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeslm.errors import InputError
from edgeslm.model.gguf import resolve_gguf

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
DEMO_NAME = "demo"


@dataclass(frozen=True)
class ModelSource:
    """Where a checkpoint's files are, and where they came from (for the manifest's provenance)."""

    path: Path
    model_id: str
    kind: str  # "demo" | "local" | "hub"
    revision: str | None = None
    commit: str | None = None
    gguf: object = None  # edgeslm.model.gguf.GGUFOrigin when ``path`` is a converted GGUF file

    def provenance(self) -> dict:
        """The manifest's model provenance: id, source, revision, commit, and ``gguf`` (file, sha256, tensor
        types, ``"reference": "dequantized"``) for a converted GGUF file."""
        out = {"id": self.model_id, "source": self.kind, "revision": self.revision, "commit": self.commit}
        if self.gguf is not None:
            out["gguf"] = self.gguf.to_json()
        return out


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve(model: str, revision: str | None = None, gguf_file: str | None = None) -> ModelSource:
    """Map a model argument to local files, or raise one InputError naming the fix. ``gguf_file``: the .gguf
    file to take from the Hub repo ``model`` (``org/name/FILE.gguf`` names the same)."""
    local = Path(model).expanduser()
    if gguf_file is not None and (model == DEMO_NAME or local.exists()):
        raise InputError(f"--gguf-file {gguf_file} applies to Hub ids, but {model} is "
                         f"{'the built-in demo' if model == DEMO_NAME else 'a local path'}",
                         "leave --gguf-file out, or pass the local .gguf path as MODEL")
    if revision is not None and (model == DEMO_NAME or local.exists()):
        raise InputError(f"--revision {revision} applies to Hub ids, but {model} is "
                         f"{'the built-in demo' if model == DEMO_NAME else 'a local path'}",
                         "leave --revision out, or pass the Hub id (org/name) to resolve it from the HF cache")
    if model == DEMO_NAME:
        return ModelSource(DEMO_DIR, "edgeslm/demo", "demo")
    if local.is_file() and (local.suffix.lower() == ".gguf" or _is_gguf(local)):
        path, origin = resolve_gguf(local)
        return ModelSource(path, str(local), "local", gguf=origin)
    if local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            raise InputError(
                f"{model} is not a Hugging Face model folder (no config.json in it)",
                "pass a folder written by save_pretrained (config.json, *.safetensors, tokenizer files)",
            )
        return ModelSource(local.resolve(), str(local), "local")
    is_gguf = model.lower().endswith(".gguf")
    if model.startswith((".", "/", "~")) or is_gguf and model.count("/") < 2:  # org/name/FILE.gguf is a Hub file
        raise InputError(f"local {'file' if is_gguf else 'folder'} {model} does not exist", "check the path")
    parts = model.split("/")
    if len(parts) >= 3 and parts[-1].lower().endswith(".gguf"):  # org/name/FILE.gguf
        repo, file = "/".join(parts[:2]), "/".join(parts[2:])
        if gguf_file not in (None, file):
            raise InputError(f"{model} names the GGUF file {file}, but --gguf-file says {gguf_file}",
                             "name the file once: org/name --gguf-file FILE.gguf")
        model, gguf_file = repo, file
    if gguf_file is not None:
        return _resolve_hub_gguf(model, revision, gguf_file)
    return resolve_hub(model, revision)


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _resolve_hub_gguf(repo_id: str, revision: str | None, gguf_file: str) -> ModelSource:
    """``gguf_file`` of the Hub repo ``repo_id`` (from the HF cache like any Hub id), converted once."""
    if not gguf_file.lower().endswith(".gguf") or gguf_file.startswith(("/", "..")):
        raise InputError(f"--gguf-file {gguf_file!r} is not a .gguf file name inside the repo",
                         "pass the file's name as the repo lists it, e.g. --gguf-file model-Q4_K_M.gguf")
    snap = resolve_hub(repo_id, revision, patterns=[gguf_file])
    path = snap.path / gguf_file
    if not path.is_file():
        raise InputError(f"{repo_id}@{snap.revision} has no {gguf_file} in the local Hugging Face cache",
                         f"download it (huggingface-cli download {repo_id} {gguf_file} --revision {snap.revision}) "
                         "or pass the local .gguf path")
    folder, origin = resolve_gguf(path)
    return ModelSource(folder, repo_id, "hub", revision=snap.revision, commit=snap.commit, gguf=origin)


def _cache_dir() -> str | None:
    """The HF cache as the environment says now (huggingface_hub reads it only once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def resolve_hub(repo_id: str, revision: str | None, what: str = "model", patterns: list[str] | None = None) \
        -> ModelSource:
    """``repo_id`` at ``revision`` from the HF cache (the Hub only when not offline); ``what`` names it in errors,
    ``patterns`` replace the files fetched (a checkpoint's)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = patterns or ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.bin", "*.pt", "*.pth"]
    rev = revision or "main"
    try:
        path = snapshot_download(repo_id, revision=rev, allow_patterns=patterns, local_files_only=True,
                                 cache_dir=_cache_dir())
    except HFValidationError as e:
        raise InputError(
            f"{repo_id!r} is neither a local folder nor a valid Hugging Face {what} id ({e})",
            f"pass an id like org/name or the path of a local {what} folder",
        ) from None
    except (LocalEntryNotFoundError, FileNotFoundError):
        where = f"{repo_id}@{rev}"
        if _hub_offline():
            raise InputError(
                f"{what} {where} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                f"download it on a connected machine (huggingface-cli download {repo_id} --revision {rev}) "
                f"and copy the cache here (HF_HOME), or pass a local {what} folder",
            ) from None
        try:
            path = snapshot_download(repo_id, revision=rev, allow_patterns=patterns, cache_dir=_cache_dir())
        except RepositoryNotFoundError:
            raise InputError(
                f"unknown {what} id {repo_id!r}: the Hugging Face Hub has no such repository (or it is gated)",
                "check the spelling, log in with `hf auth login` for gated models, or pass a local folder",
            ) from None
        except RevisionNotFoundError:
            raise InputError(
                f"{what} {repo_id} has no revision {rev!r}", "pass an existing branch, tag or commit with --revision"
            ) from None
        except Exception as e:  # network failures come in many types
            raise InputError(
                f"{what} {where} is not in the local Hugging Face cache and the Hub cannot be reached "
                f"({type(e).__name__})",
                f"download it on a connected machine (huggingface-cli download {repo_id} --revision {rev}) "
                f"and copy the cache here (HF_HOME), or pass a local {what} folder",
            ) from None
    path = Path(path)
    return ModelSource(path, repo_id, "hub", revision=rev, commit=path.name)
