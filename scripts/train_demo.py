"""Train the built-in demo model shipped in edgeslm/demo/ (reproducible, offline, ~5 minutes on 2 cores).

Data: CPython's own ``pydoc_data.topics`` (the language reference prose that ships with every Python) and the
docstrings of the standard library's modules, classes and functions (both PSF licence, both on every machine). A byte-level BPE tokenizer (2048 tokens) is trained on it, then a 4-layer, 128-wide Llama-family
model (transformers' LlamaForCausalLM, tied embeddings) is trained on 95% of the text; the other 5% gives the
held-out perplexity written to the model card.

    python scripts/train_demo.py --out edgeslm/demo --minutes 5
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from edgeslm.testing.tiny import make_tokenizer, stdlib_docstrings, text_corpus


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("edgeslm/demo"))
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    text = text_corpus() + "\n\n" + stdlib_docstrings()
    split = int(len(text) * 0.95)
    tok = make_tokenizer(2048, text[:split])
    train = torch.tensor(tok(text[:split]).input_ids)
    held = torch.tensor(tok(text[split:]).input_ids)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01, betas=(0.9, 0.95))
    budget = args.minutes * 60
    start, step, losses = time.time(), 0, []
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        for g in opt.param_groups:
            g["lr"] = 3e-3 * min(1.0, step / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = torch.randint(0, len(train) - args.seq - 1, (args.batch,))
        x = torch.stack([train[i : i + args.seq] for i in idx])
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
        if step % 100 == 0:
            print(f"step {step} loss {sum(losses[-100:]) / 100:.3f} ({time.time() - start:.0f}s)", flush=True)

    model.eval()
    with torch.no_grad():
        nll, n = 0.0, 0
        for i in range(0, len(held) - args.seq, args.seq):
            x = held[i : i + args.seq][None]
            nll += model(input_ids=x, labels=x).loss.item() * (args.seq - 1)
            n += args.seq - 1
    ppl = math.exp(nll / n)
    print(f"held-out perplexity {ppl:.2f} over {n} tokens after {step} steps")

    args.out.mkdir(parents=True, exist_ok=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        do_sample=True, temperature=0.7, top_p=0.9, max_new_tokens=64,
    )
    model.save_pretrained(args.out)
    tok.save_pretrained(args.out)
    facts = {
        "data": "CPython pydoc_data.topics + standard-library docstrings (PSF licence)", "chars": len(text),
        "python": ".".join(map(str, __import__("sys").version_info[:3])),
        "tokens_train": len(train), "tokens_heldout": len(held), "steps": step, "seq_len": args.seq,
        "batch": args.batch, "minutes": args.minutes, "final_train_loss": round(sum(losses[-100:]) / 100, 3),
        "heldout_perplexity": round(ppl, 2), "parameters": sum(p.numel() for p in model.parameters()),
    }
    (args.out / "training.json").write_text(json.dumps(facts, indent=2) + "\n")
    (args.out / "MODEL_CARD.md").write_text(CARD.format(**facts))


CARD = """# edgeslm demo model

A tiny Llama-family causal LM shipped inside edgeslm so the main job runs on any machine with no download.
It is for trying the toolchain, not for use: it writes Python-documentation-flavoured English.

- Architecture: transformers `LlamaForCausalLM`, 4 layers, hidden 128, 4 heads / 2 KV heads, MLP 384,
  tied embeddings, 512 positions; {parameters:,} parameters.
- Tokenizer: byte-level BPE, 2048 tokens, trained here on the training split (`<pad>`=0, `<s>`=1, `</s>`=2).
- Data: {data}; {chars:,} characters, 95% train ({tokens_train:,} tokens) / last 5% held out
  ({tokens_heldout:,} tokens).
- Training: {steps} steps of AdamW (lr 3e-3, warm-up 100 steps, cosine to 10%), batch {batch} x {seq_len}
  tokens, {minutes} minutes on 2 CPU cores, Python {python}. Final train loss {final_train_loss}.
- **Held-out perplexity: {heldout_perplexity}** (per BPE token).

Reproduce: `python scripts/train_demo.py --out edgeslm/demo --minutes {minutes}` (time-bounded, so the step
count, and the figures above, vary slightly with the machine's speed).
"""


if __name__ == "__main__":
    main()
