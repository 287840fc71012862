"""A draft model for speculative decoding, built from a target here: the target with fewer layers (sharing their
weights, embeddings, norm and lm_head), then distilled on local text to match the target's next-token
distribution. Same tokenizer by construction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch


def layer_dropped(target: Path, out: Path, keep: tuple[int, ...]) -> Path:
    """``target`` with only the decoder layers ``keep`` (renumbered), everything else shared."""
    from safetensors.torch import load_file, save_file

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(target, out)
    weights = load_file(out / "model.safetensors")
    kept = {}
    for k, v in weights.items():
        if k.startswith("model.layers."):
            i = int(k.split(".")[2])
            if i in keep:
                kept[k.replace(f"model.layers.{i}.", f"model.layers.{keep.index(i)}.", 1)] = v
        else:
            kept[k] = v
    save_file(kept, out / "model.safetensors", metadata={"format": "pt"})
    cfg = json.loads((out / "config.json").read_text())
    cfg["num_hidden_layers"] = len(keep)
    if "layer_types" in cfg:
        cfg["layer_types"] = [cfg["layer_types"][i] for i in keep]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


def distilled_draft(target: Path, out: Path, text: str, keep: tuple[int, ...] = (0, 3), steps: int = 200,
                    seq_len: int = 64, batch: int = 8, lr: float = 1e-3, seed: int = 0) -> dict:
    """A layer-dropped draft trained to match the target's next-token distributions (KL) on ``text``; returns
    the draft's greedy agreement with the target on held-out windows before and after."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    layer_dropped(target, out, keep)
    torch.manual_seed(seed)
    teacher = AutoModelForCausalLM.from_pretrained(target, dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    ids = torch.tensor(AutoTokenizer.from_pretrained(target)(text).input_ids)
    n = (len(ids) - 1) // seq_len
    train, held = n - max(4, n // 10), max(4, n // 10)
    gen = torch.Generator().manual_seed(seed)

    def windows(idx):
        return torch.stack([ids[i * seq_len:(i + 1) * seq_len] for i in idx])

    def agreement():
        x = windows(range(train, train + held))
        with torch.no_grad():
            return float((teacher(x).logits.argmax(-1) == student(x).logits.argmax(-1)).float().mean())

    before = agreement()
    opt = torch.optim.AdamW(student.parameters(), lr=lr)
    student.train()
    for _ in range(steps):
        x = windows(torch.randint(0, train, (batch,), generator=gen).tolist())
        with torch.no_grad():
            p = torch.log_softmax(teacher(x).logits, -1)
        q = torch.log_softmax(student(x).logits, -1)
        loss = torch.nn.functional.kl_div(q, p, log_target=True, reduction="batchmean") / seq_len
        opt.zero_grad()
        loss.backward()
        opt.step()
    student.eval()
    student.save_pretrained(out)
    return {"layers": list(keep), "steps": steps, "agreement_before": before, "agreement_after": agreement()}
