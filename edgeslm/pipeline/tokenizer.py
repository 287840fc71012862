"""The tokenizer files of a bundle, and the chat template's record in the manifest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgeslm.filefacts import file_entry
from edgeslm.model.checkpoint import TOKENIZER_FILES, Checkpoint


def write_tokenizer(ckpt: Checkpoint, folder: Path) -> list[dict]:
    """The tokenizer files the runtimes and apps read, as the checkpoint has them (tokenizer.json always)."""
    src = ckpt.source.path
    names = []
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, folder / name)
            names.append(name)
    if "tokenizer.json" not in names:  # sentencepiece-only checkpoints: write the fast form
        ckpt.tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))
        names.append("tokenizer.json")
    cfg = folder / "tokenizer_config.json"
    if cfg.is_file():  # transformers 5 writes a class name older runtimes reject (docs/stack.md)
        data = json.loads(cfg.read_text())
        if data.get("tokenizer_class") == "TokenizersBackend":
            data["tokenizer_class"] = "PreTrainedTokenizerFast"
            cfg.write_text(json.dumps(data, indent=2) + "\n")
    return [file_entry(folder, n) for n in names]


def chat_template(ckpt: Checkpoint) -> dict:
    """The checkpoint's chat template and the file it came from (the manifest's ``chat_template``)."""
    src = ckpt.source.path
    origin = next((n for n in ("chat_template.jinja", "tokenizer_config.json") if (src / n).is_file()), None)
    return {"found": ckpt.chat_template is not None, "template": ckpt.chat_template,
            "source": origin if ckpt.chat_template is not None else None}
