"""Resolve what the user named (``demo``, a local folder, or a Hub id) to a folder of checkpoint files.

Hub ids go through huggingface_hub's cache (``--revision`` honoured, works offline when cached). Nothing here
downloads unless the cache misses and the network is allowed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeslm.errors import InputError

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


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def resolve(model: str, revision: str | None = None) -> ModelSource:
    """Map a model argument to local files, or raise one InputError naming the fix."""
    local = Path(model).expanduser()
    if revision is not None and (model == DEMO_NAME or local.exists()):
        raise InputError(f"--revision {revision} applies to Hub ids, but {model} is "
                         f"{'the built-in demo' if model == DEMO_NAME else 'a local folder'}",
                         "leave --revision out, or pass the Hub id (org/name) to resolve it from the HF cache")
    if model == DEMO_NAME:
        return ModelSource(DEMO_DIR, "edgeslm/demo", "demo")
    if local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            raise InputError(
                f"{model} is not a Hugging Face model folder (no config.json in it)",
                "pass a folder written by save_pretrained (config.json, *.safetensors, tokenizer files)",
            )
        return ModelSource(local.resolve(), str(local), "local")
    if model.startswith((".", "/", "~")):
        raise InputError(f"local folder {model} does not exist", "check the path")
    return resolve_hub(model, revision)


def _cache_dir() -> str | None:
    """The HF cache as the environment says now (huggingface_hub reads it only once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def resolve_hub(repo_id: str, revision: str | None, what: str = "model") -> ModelSource:
    """``repo_id`` at ``revision`` from the HF cache (the Hub only when not offline); ``what`` names it in errors."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.bin", "*.pt", "*.pth"]
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
