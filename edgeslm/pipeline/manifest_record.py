"""The manifest record of one bundle (``edgeslm.records.Manifest``), built once from what the target's build
produced; latency adds its report and verdict to it before it is written (edgeslm/pipeline/target_build.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from edgeslm.bundle.manifest import versions
from edgeslm.filefacts import file_entry
from edgeslm.manifest import SCHEMA_VERSION
from edgeslm.pipeline.reference import Reference
from edgeslm.pipeline.tokenizer import chat_template
from edgeslm.records import Artifact, Manifest, ManifestTarget, NotBuilt, release
from edgeslm.records import Status as Verdict
from edgeslm.target import Target


def manifest_record(ref: Reference, tgt: Target, ctx: int, ctx_from: dict | None, parity: dict,
                    artifacts: list[Artifact], not_built: list[NotBuilt], tokenizer_files: list[dict],
                    reports: list[str], app: dict, speculative: dict | None, tmp: Path) -> Manifest:
    """The bundle's manifest, its status parity's verdict (latency's budgets join it later)."""
    ckpt, source = ref.ckpt, ref.source
    return Manifest(
        schema_version=SCHEMA_VERSION,
        status=release([Verdict(parity["status"])]),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        target=ManifestTarget(tgt.name, tgt.description, tgt.device),
        model={
            **source.provenance(),  # id, source, revision, commit (and the GGUF file a model was converted from)
            "architecture": ckpt.config.model_type, "family": ref.family.name,
            "parameters": ckpt.parameters,
            "checkpoint_bytes": ckpt.checkpoint_bytes,
            "shape": ref.shape,
        },
        artifacts=artifacts,
        not_built=not_built,
        adapters=_adapters(ref, artifacts),
        tokenizer={"kind": "huggingface-tokenizers", "files": tokenizer_files},
        special_tokens={
            "bos_id": ckpt.special.bos_id, "bos": ckpt.special.bos,
            "eos_ids": list(ckpt.special.eos_ids), "eos": ckpt.special.eos, "pad_id": ckpt.special.pad_id,
        },
        chat_template=chat_template(ckpt),
        generation=app["generation"],
        context_length=ctx,
        context_length_from=ctx_from or {"source": "target"},
        provenance=versions(),
        reports=[file_entry(tmp, r) for r in reports],
        app=app,
        speculative=speculative or None,
    )


def _adapters(ref: Reference, artifacts: list[Artifact]) -> list[dict] | None:
    """Each LoRA adapter's record and the artifacts built with it merged (None: no adapter)."""
    return [{**v.adapter.record(), "artifacts": [a.name for a in artifacts
                                                 if a.facts.get("adapter") == v.adapter.name]}
            for v in ref.models() if v.adapter is not None] or None
