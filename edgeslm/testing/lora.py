"""LoRA adapters built here with PEFT (tests, docs, closing notes): trained on local text, random, or zero.

``train_lora`` fine-tunes a LoRA adapter on the demo-style model for a few hundred steps on text that ships with
Python (the ``pydoc_data`` topics on one subject), so the adapted model measurably says something else, the way a
task adapter does. ``random_lora`` draws B as well (PEFT initialises B to zero); ``zero_lora`` keeps B = 0: merging
it must leave the model unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _peft_model(base: Path, r: int, alpha: int, targets, seed: int):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                                            bias="none", task_type="CAUSAL_LM"))


def zero_lora(base: Path, out: Path, r: int = 4, alpha: int = 8, targets=TARGETS, seed: int = 0) -> Path:
    _peft_model(base, r, alpha, targets, seed).save_pretrained(out)
    return out


def random_lora(base: Path, out: Path, r: int = 4, alpha: int = 8, targets=TARGETS, seed: int = 0,
                std: float = 0.05) -> Path:
    model = _peft_model(base, r, alpha, targets, seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, std)
    model.save_pretrained(out)
    return out


def train_lora(base: Path, out: Path, text: str, steps: int = 150, r: int = 8, alpha: int = 16, targets=TARGETS,
               seq_len: int = 64, batch: int = 8, lr: float = 3e-3, seed: int = 0) -> dict:
    """Fine-tune a LoRA adapter on ``text`` (next-token loss); returns the first and last losses."""
    from transformers import AutoTokenizer

    model = _peft_model(base, r, alpha, targets, seed)
    ids = torch.tensor(AutoTokenizer.from_pretrained(base)(text).input_ids)
    n = (len(ids) - 1) // seq_len
    chunks = ids[: n * seq_len + 1]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _ in range(steps):
        starts = torch.randint(0, n, (batch,), generator=gen) * seq_len
        x = torch.stack([chunks[s:s + seq_len] for s in starts])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    model.eval().save_pretrained(out)
    return {"steps": steps, "first_loss": losses[0], "last_loss": sum(losses[-10:]) / 10}


def topic_text(*keys: str) -> str:
    """Sections of CPython's ``pydoc_data.topics`` (PSF licence), e.g. ``topic_text("numbers", "integers")``."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in keys)
