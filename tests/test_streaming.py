"""`edgeslm run` streams whole UTF-8 characters for every runtime, and the stream equals transformers' decoding.

A tiny Llama is trained for a few seconds to write CJK, accented letters and emoji with a byte-level BPE
tokenizer too small to hold those characters whole, so most of its tokens are partial UTF-8 sequences (the case
that made ExecuTorch's TextLLMRunner callback raise UnicodeDecodeError).
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner

from edgeslm.backends.stream import TextStream, stream_text
from edgeslm.cli import main

CYCLE = "东京的咖啡馆 café naïve 😀 北京烤鸭 crème brûlée 🍜 日本語の文字 São Paulo ✨ "
PROMPT = "东京的咖啡馆"
N_NEW = 40


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (what the ByteLevel pre-tokenizer/decoder use)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@pytest.fixture(scope="module")
def byte_tokenizer():
    """A byte-level tokenizer with no merges: token id == byte value; <s> = 256, </s> = 257."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: b for b, c in _bytes_to_unicode().items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("</s>", special=True)])
    assert tok.token_to_id("</s>") == 257 and tok.encode("a😀").ids == [0x61, 0xF0, 0x9F, 0x98, 0x80]
    return tok


def test_stream_holds_back_a_split_emoji(byte_tokenizer):
    ids = list("a😀b".encode()) + [256] + list("é".encode())  # <s> (special) in the middle
    s = TextStream(byte_tokenizer)
    pieces = [s.push(i) for i in ids]
    assert pieces == ["a", "", "", "", "😀", "b", "", "", "é"]
    assert s.finish() == ""
    assert s.text == "a😀bé" == byte_tokenizer.decode(ids, skip_special_tokens=True)


def test_stream_text_stops_at_eos_and_flushes_an_incomplete_end(byte_tokenizer):
    pieces: list[str] = []
    consumed: list[int] = []

    def ids():  # lazy, like a runtime: nothing after eos may be pulled
        for i in list("x🍜".encode()) + [257, ord("y")]:
            consumed.append(i)
            yield i

    assert stream_text(ids(), byte_tokenizer, [257], pieces.append) == "x🍜"
    assert pieces == ["x", "🍜"] and consumed[-1] == 257
    # a character the model never completes comes out at the end as decode prints it (U+FFFD), never mid-stream
    pieces.clear()
    cut = list("ok".encode()) + list("😀".encode())[:2]
    text = stream_text(cut, byte_tokenizer, [257], pieces.append)
    assert pieces == ["o", "k", byte_tokenizer.decode(cut)[2:]] and text == byte_tokenizer.decode(cut)


def test_stream_equals_decode_on_random_bytes(byte_tokenizer):
    """Random byte ids (invalid sequences included): the pieces always add up to decode(ids), no piece but the
    final flush ends in U+FFFD, and the result agrees with tokenizers' own DecodeStream where that emits."""
    from tokenizers.decoders import DecodeStream

    rng = random.Random(0)
    for _ in range(200):
        ids = [rng.choice([rng.randrange(256), *"é€😀".encode()]) for _ in range(rng.randrange(1, 12))]
        s, ref = TextStream(byte_tokenizer), DecodeStream(skip_special_tokens=True)
        pieces = [s.push(i) for i in ids]
        ref_text = "".join(p or "" for p in (ref.step(byte_tokenizer, i) for i in ids))
        assert not any(p.endswith("\ufffd") for p in pieces)
        assert "".join(pieces) == ref_text
        assert "".join(pieces) + s.finish() == byte_tokenizer.decode(ids)


@pytest.fixture(scope="module")
def multibyte_bundle(tmp_path_factory):
    """(bundle, checkpoint folder, transformers tokenizer, model): fp32 ExecuTorch + ONNX of a tiny Llama that
    writes multi-byte characters."""
    from transformers import AutoModelForCausalLM

    from edgeslm.pipeline import export
    from edgeslm.testing.tiny import make_tiny, make_tokenizer

    rng = random.Random(0)
    # many distinct CJK characters (each rare) and the sentence only thrice: merges go to UTF-8 lead-byte pairs,
    # so the sentence's CJK, accented and emoji characters stay split over several tokens
    corpus = "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(30000)) + CYCLE * 3
    tok = make_tokenizer(512, corpus)
    root = tmp_path_factory.mktemp("multibyte")
    folder = make_tiny("llama", root / "model", tok, seed=0)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tok(CYCLE).input_ids
    seq = torch.tensor(ids * 4)
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):  # memorise the sentence (~3 s on 2 cores)
        x = torch.stack([seq[s:s + 48] for s in torch.randint(0, len(ids), (8,)).tolist()])
        loss = model(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(folder)
    out = root / "bundle"
    export(str(folder), "android", out, recipe="fp32", backends=("executorch", "onnx"), context_length=128,
           prompts=[PROMPT], bench=False)
    return out, folder, tok, model


@pytest.fixture(scope="module")
def reference(multibyte_bundle):
    """transformers' own greedy ids for the prompt (cut at eos) and their decoded text."""
    _, _, tok, model = multibyte_bundle
    prompt_ids = tok(PROMPT).input_ids
    with torch.no_grad():
        gen = model.generate(torch.tensor([prompt_ids]), max_new_tokens=N_NEW, do_sample=False, min_new_tokens=0)
    ids = gen[0, len(prompt_ids):].tolist()
    if tok.eos_token_id in ids:
        ids = ids[: ids.index(tok.eos_token_id)]
    text = tok.decode(ids, skip_special_tokens=True)
    # preconditions, so the test cannot pass vacuously: non-ASCII text, made of tokens that are not UTF-8 alone
    assert any(ord(c) > 0x7F for c in text) and "\ufffd" not in text, text
    assert any("\ufffd" in tok.decode([t]) for t in ids), ids
    return prompt_ids, ids, text


@pytest.mark.parametrize("backend", ["executorch", "onnx"])
def test_run_streams_whole_characters(multibyte_bundle, reference, backend):
    from edgeslm.backends import get_backend

    out, _, _, _ = multibyte_bundle
    prompt_ids, ref_ids, ref_text = reference
    art = next(a for a in json.loads((out / "manifest.json").read_text())["artifacts"] if a["backend"] == backend)
    assert art["recipe"] == "fp32"

    # fp32 artifacts pick exactly transformers' greedy ids in their runtime
    if backend == "executorch":
        from edgeslm.backends.executorch.runtime import PteModel
        from edgeslm.backends.stream import step_tokens

        ids = list(step_tokens(PteModel(out / art["file"]), prompt_ids, len(ref_ids), 128))
    else:
        from edgeslm.backends.onnx.runtime import genai_greedy_tokens

        [ids] = genai_greedy_tokens((out / art["file"]).parent, [prompt_ids], [len(ref_ids)])
    assert ids == ref_ids

    res = CliRunner().invoke(main, ["run", str(out), "--artifact", art["file"], "-p", PROMPT, "-n", str(N_NEW)])
    assert res.exit_code == 0, res.output
    assert res.stdout.removesuffix("\n") == ref_text

    pieces: list[str] = []
    text = get_backend(backend).generate(out, art, PROMPT, N_NEW, 0.0, pieces.append)
    assert text == "".join(pieces) == ref_text
    assert all(p and "\ufffd" not in p for p in pieces)
    assert len(pieces) < len(ref_ids)  # partial characters were held back, not emitted as they came


@pytest.mark.parametrize("backend", ["executorch", "onnx"])
def test_run_samples_without_decode_errors(multibyte_bundle, backend):
    out, _, _, _ = multibyte_bundle
    art = next(a for a in json.loads((out / "manifest.json").read_text())["artifacts"] if a["backend"] == backend)
    res = CliRunner().invoke(main, ["run", str(out), "--artifact", art["file"], "-p", PROMPT, "-n", "24",
                                    "--temperature", "0.8"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip()
