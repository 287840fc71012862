"""Calibration text for recipes with static (calibrated) activation ranges: the NPU recipes 16a4w / 16a8w.

Fixed-point NPUs quantize activations with ranges fixed at export time, so the ranges come from running the model on
text. The text is part of the result: a bundle records which text (source, sha256, windows, tokens) and ships it
beside the artifact, so a calibration can be reproduced and a bad one traced. The built-in text is ten sections of
CPython's ``pydoc_data.topics`` (PSF licence; the statements and definitions chapters), none of which appear in the
parity prompts or the held-out text.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgeslm.errors import InputError

BUILTIN = Path(__file__).with_name("calibration.txt")
DEFAULT_SAMPLES = 16


@dataclass(frozen=True)
class Calibration:
    source: str  # "built-in" or the file's path
    path: Path
    sha256: str
    windows: tuple[tuple[int, ...], ...]  # token ids, each at most the window length

    def facts(self) -> dict:
        return {"text": self.source, "sha256": self.sha256, "windows": len(self.windows),
                "tokens": sum(map(len, self.windows))}


def calibration_windows(tokenizer, text_file: Path | None, samples: int, window: int,
                        bos_id: int | None = None) -> Calibration:
    """Cut the text into ``samples`` windows of ``window`` tokens (BOS first when the model has one), spread over
    the whole text so a long file is sampled end to end rather than only from its start."""
    path = Path(text_file) if text_file else BUILTIN
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read calibration text {path}: {e}", "give a readable UTF-8 text file") from None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    room = window - (bos_id is not None)
    if len(ids) < 2:
        raise InputError(f"calibration text {path} holds {len(ids)} tokens", "give a text of a few sentences at least")
    starts = sorted({round(i * max(len(ids) - room, 0) / max(samples - 1, 1)) for i in range(samples)})
    prefix = [bos_id] if bos_id is not None else []
    windows = tuple(tuple(prefix + ids[s:s + room]) for s in starts)
    return Calibration("built-in" if path == BUILTIN else str(path), path, hashlib.sha256(raw).hexdigest(), windows)
