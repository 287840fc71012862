"""golden.json: vectors an app's tests check against (docs/apps.md), computed here by transformers and by each
artifact's own runtime, written into every bundle and listed in the manifest with its sha256.

- tokenizer: text → ids (ASCII, leading spaces, accents, CJK, emoji), ids → text, and a token stream's raw
  bytes with the whole characters a UTF-8 stream assembler emits after each token (a character split across
  tokens is emitted once, whole);
- chat: conversations → the exact prompt transformers' ``apply_chat_template`` renders, and its ids;
- greedy: per artifact, the first greedy tokens its runtime produced here, and how many a device must match.
"""

from __future__ import annotations

import codecs
import json
from functools import lru_cache
from pathlib import Path

import torch

from edgeslm.backends import get_backend, unavailable_here
from edgeslm.bundle.conversations import CHECK_CONVERSATIONS, messages
from edgeslm.gates import DECISIVE_MARGIN
from edgeslm.parity.models import torch_on_one_thread
from edgeslm.records import artifact_name

GOLDEN = "golden.json"
SCHEMA_VERSION = "1.0"
TEXTS = ("Hello world", "  two leading spaces", "café au lait, naïve", "中文字符", "emoji 🙂 and 👍🏽",
         "tabs\tand\nnewlines")
# Tried in order per artifact; the first whose greedy run has no near-tie (else the most decisive) is kept.
# Counting first: a trained model continues it decisively (the real SmolLM2-135M-Instruct: 16 of 16 tokens beyond
# the near-tie margin, where its best prose prompt gave 5), so a device must reproduce the whole run; the rest suit
# the demo model, trained on Python's documentation.
GREEDY_PROMPTS = ("1, 2, 3, 4, 5,", "Once upon a time", "The import statement is used to",
                  "A function definition defines a", "The for statement is used to iterate",
                  "Return a new list containing", "The return statement", "If the value is not",
                  "Raise an exception when")
GREEDY_TOKENS = 16


@lru_cache(maxsize=1)
def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte ↔ printable-character table, inverted: what byte-level BPE tokens spell."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(tokenizer, ids: list[int]) -> list[list[int]] | None:
    """Each token's raw bytes, for byte-level BPE (GPT-2, Llama 3, Qwen) and byte-fallback SentencePiece (Llama 2,
    Gemma) tokenizers; None for other decoders (then the stream vectors are left out, and golden.json says so)."""
    decoder = json.loads(tokenizer.backend_tokenizer.to_str()).get("decoder") or {}
    kinds = {d.get("type") for d in decoder.get("decoders", [decoder])}
    tokens = tokenizer.convert_ids_to_tokens(ids)
    if "ByteLevel" in kinds:
        table = _byte_level_table()
        if not all(ch in table for t in tokens for ch in t):
            return None
        return [[table[ch] for ch in t] for t in tokens]
    if "ByteFallback" in kinds:
        out = []
        for t in tokens:
            if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                out.append([int(t[3:5], 16)])
            else:
                out.append(list(t.replace("\u2581", " ").encode()))
        return out
    return None


def assemble(chunks_of_bytes: list[list[int]]) -> list[str]:
    """What a UTF-8 stream assembler emits after each token: only whole characters, an incomplete trailing
    sequence held back (and flushed, as U+FFFD, after the last token)."""
    dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
    out = [dec.decode(bytes(b), final=False) for b in chunks_of_bytes]
    if out:
        out[-1] += dec.decode(b"", final=True)
    return out


def _tokenizer_vectors(tokenizer) -> dict:
    encode = [{"text": t, "add_special_tokens": False, "ids": tokenizer(t, add_special_tokens=False).input_ids}
              for t in TEXTS]
    encode.append({"text": TEXTS[0], "add_special_tokens": True, "ids": tokenizer(TEXTS[0]).input_ids})
    decode = [{"ids": e["ids"], "text": tokenizer.decode(e["ids"], skip_special_tokens=True)} for e in encode]
    stream, split = [], False
    for e in encode[:-1]:
        raw = token_bytes(tokenizer, e["ids"])
        if raw is None:
            return {"encode": encode, "decode": decode, "stream": [],
                    "stream_note": "this tokenizer's decoder is neither byte-level nor byte-fallback: no byte vectors"}
        chunks = assemble(raw)
        split |= any(b and c == "" for b, c in zip(raw, chunks))
        stream.append({"ids": e["ids"], "token_bytes": raw, "chunks": chunks, "text": "".join(chunks)})
    note = ("a multi-byte character is split across tokens (a chunk is empty while it is incomplete)" if split
            else "no character is split across tokens by this tokenizer")
    return {"encode": encode, "decode": decode, "stream": stream, "stream_note": note}


def _chat_vectors(tokenizer, has_template: bool) -> list[dict]:
    out = []
    for conv, gen in CHECK_CONVERSATIONS if has_template else ():
        try:
            prompt = tokenizer.apply_chat_template(messages(conv), tokenize=False, add_generation_prompt=gen)
        except Exception:  # noqa: BLE001 — the template refuses this conversation (e.g. a system message)
            continue
        out.append({"messages": messages(conv), "add_generation_prompt": gen, "prompt": prompt,
                    "ids": tokenizer(prompt, add_special_tokens=False).input_ids})
    return out


def greedy_here(model, prompt_ids: list[int], n: int, eos_ids, until_tie: bool = False) -> tuple[list[int], int]:
    """Greedy ids from a runtime's ``step(tokens, start_pos) -> logits`` and how many lead up to the first
    near-tie (top-1 within ``DECISIVE_MARGIN`` nats of top-2), which a device's kernels may break either way.
    ``until_tie``: stop at that near-tie (its token the last): how decisive a prompt is costs only that far."""
    logits = model.step(list(prompt_ids), 0)
    pos, tokens, must = len(prompt_ids), [], None
    for i in range(n):
        logp = torch.log_softmax(torch.as_tensor(logits).float().reshape(-1), -1)
        top = torch.topk(logp, 2).values
        if must is None and float(top[0] - top[1]) < DECISIVE_MARGIN:
            must = i
        nxt = int(logp.argmax())
        tokens.append(nxt)
        if nxt in eos_ids or i + 1 == n or (until_tie and must is not None):
            break
        logits = model.step([nxt], pos)
        pos += 1
    return tokens, len(tokens) if must is None else must


def golden_vectors(tokenizer, has_template: bool, bundle: Path, artifacts: list[dict], eos_ids, add_bos: bool,
                   status=lambda msg: None) -> dict:
    """The whole golden.json document for ``bundle`` (its artifacts already written there)."""
    greedy = []
    for a in artifacts:
        entry = {"artifact": artifact_name(a), "runtime": a["load"]["runtime"], "add_bos": add_bos}
        why = unavailable_here(a["backend"])
        if why:
            prompt = GREEDY_PROMPTS[0]
            greedy.append({**entry, "prompt": prompt, "prompt_ids": tokenizer(prompt).input_ids, "tokens": None,
                           "text": None, "must_match": 0, "reason": why})
            continue
        status(f"golden vectors: greedy tokens of {artifact_name(a)} in its runtime")
        model = get_backend(a["backend"]).step_model(bundle, a)
        best = None
        for prompt in GREEDY_PROMPTS:  # the prompt whose greedy run stays decisive longest proves the most
            ids = tokenizer(prompt).input_ids
            with torch_on_one_thread():
                tokens, must = greedy_here(model, ids, GREEDY_TOKENS, set(eos_ids), until_tie=True)
            if best is None or must > best["must_match"]:
                best = {"prompt": prompt, "prompt_ids": ids, "tokens": tokens, "must_match": must}
            if must == len(tokens):  # decisive to the end (or to eos): nothing later can beat it
                break
        if best["must_match"] < len(best["tokens"]):  # it stopped at its near-tie: the whole run for the vector
            with torch_on_one_thread():
                best["tokens"], _ = greedy_here(model, best["prompt_ids"], GREEDY_TOKENS, set(eos_ids))
        best["text"] = tokenizer.decode(best["tokens"], skip_special_tokens=True)
        greedy.append({**entry, **best})
    return {"schema_version": SCHEMA_VERSION, "kind": "edgeslm-golden", "tokenizer": _tokenizer_vectors(tokenizer),
            "chat": _chat_vectors(tokenizer, has_template), "greedy": greedy}


def write_golden(bundle: Path, doc: dict) -> str:
    (bundle / GOLDEN).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return GOLDEN
