"""Streaming generated text as whole characters, the same way for every runtime.

A runtime produces token ids one at a time, and with byte-level BPE (GPT-2/Llama 3/Qwen style) or byte-fallback
(SentencePiece style) tokenizers one id is often only part of a multi-byte UTF-8 character (CJK, accented
letters, emoji). Decoding each id on its own gives broken text (U+FFFD), and where a runtime turns those bytes
into a Python ``str`` itself (ExecuTorch's ``TextLLMRunner`` callback) it raises ``UnicodeDecodeError``.

So runtimes here hand over **token ids only**, and :class:`TextStream` turns them into text with the bundle's
``tokenizer.json`` (the ``tokenizers`` library, which transformers' fast tokenizers wrap):

* a piece is emitted only once the decoded text no longer ends in U+FFFD, i.e. every piece is whole characters
  (code points; a combining mark or a ZWJ emoji sequence may still arrive over several pieces);
* ``"".join(pieces) == tokenizer.decode(ids, skip_special_tokens=True)`` for the ids generated before eos
  (:meth:`TextStream.finish` reconciles against one full decode at the end, so text the model leaves as an
  incomplete byte sequence is still printed, as U+FFFD, exactly as ``decode`` prints it);
* special tokens are skipped (as transformers' text-generation pipeline does); an eos id (the manifest's
  ``special_tokens.eos_ids``) stops generation and is not part of the text.

The windowed decode is the one ``tokenizers.decoders.DecodeStream`` and text-generation-inference use: decode
the ids since the last emitted piece together with the piece before it (so decoders that strip a leading space
or join bytes see their context) and emit the difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
from edgeslm.errors import InputError

REPLACEMENT = "\ufffd"


def load_tokenizer(tokenizer_json: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_json))


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids as transformers' ``tokenizer(prompt).input_ids`` gives them (the tokenizer's own
    post-processor adds BOS where the model's tokenizer does; nothing else is added)."""
    return tokenizer.encode(prompt).ids


class TextStream:
    """``push(id) -> text`` for generated ids, then ``finish() -> text``; every returned piece is whole
    characters, and the pieces together are ``tokenizer.decode(ids, skip_special_tokens=...)``."""

    def __init__(self, tokenizer, skip_special_tokens: bool = True):
        self.tokenizer = tokenizer
        self.skip_special_tokens = skip_special_tokens
        self.ids: list[int] = []
        self.text = ""  # everything emitted so far
        self._prefix_offset = 0  # ids[_prefix_offset:_read_offset] were emitted last: context for the next decode
        self._read_offset = 0  # ids[:_read_offset] are emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def _emit(self, piece: str) -> str:
        self.text += piece
        return piece

    def push(self, token_id: int) -> str:
        """Add one generated id; return the text it completes ("" while a character is still incomplete)."""
        self.ids.append(int(token_id))
        prefix = self._decode(self.ids[self._prefix_offset:self._read_offset])
        new = self._decode(self.ids[self._prefix_offset:])
        if len(new) <= len(prefix) or new.endswith(REPLACEMENT) or not new.startswith(prefix):
            return ""  # nothing new, an incomplete character, or a decoder still rewriting earlier text
        self._prefix_offset, self._read_offset = self._read_offset, len(self.ids)
        return self._emit(new[len(prefix):])

    def finish(self) -> str:
        """The text still held back (an incomplete character at the end), so the stream equals the full decode."""
        full = self._decode(self.ids)
        if full.startswith(self.text):
            return self._emit(full[len(self.text):])
        prefix = self._decode(self.ids[self._prefix_offset:self._read_offset])
        new = self._decode(self.ids[self._prefix_offset:])
        return self._emit(new[len(prefix):] if new.startswith(prefix) else "")


def stream_text(token_ids: Iterable[int], tokenizer, eos_ids: Iterable[int],
                on_token: Callable[[str], None] | None = None, skip_special_tokens: bool = True) -> str:
    """Consume a runtime's generated ids until one is an eos id (or they run out), calling ``on_token`` with
    each whole-character piece; returns the text. ``token_ids`` may be lazy: nothing is pulled after eos."""
    eos = {int(e) for e in eos_ids}
    stream = TextStream(tokenizer, skip_special_tokens)
    for t in token_ids:
        if int(t) in eos:
            break
        piece = stream.push(t)
        if piece and on_token:
            on_token(piece)
    piece = stream.finish()
    if piece and on_token:
        on_token(piece)
    return stream.text


def next_token(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> int:
    """Greedy (temperature 0) or sampled from softmax(logits / temperature)."""
    if temperature > 0:
        probs = torch.softmax(logits.float() / temperature, -1)
        return int(torch.multinomial(probs, 1, generator=generator))
    return int(logits.argmax())


def step_tokens(model, prompt_ids: list[int], max_new_tokens: int, context_length: int, temperature: float = 0.0,
                generator: torch.Generator | None = None) -> Iterator[int]:
    """Generated ids from a ``step(tokens, start_pos) -> last logits`` model (a runtime's KV-cached forward):
    prefill the prompt once, then one step per new token, while prompt + generated fit ``context_length``.
    Lazy: the model steps only when the next id is asked for, so stopping at eos costs no extra step."""
    if not prompt_ids:
        raise InputError("the prompt encodes to no tokens", "pass a non-empty --prompt")
    if len(prompt_ids) >= context_length:
        raise InputError(f"the prompt is {len(prompt_ids)} tokens but the context length is {context_length}",
                         "shorten the prompt, or export with a larger --context-length")
    n = min(max_new_tokens, context_length - len(prompt_ids))
    if n <= 0:
        return
    logits = model.step(list(prompt_ids), 0)
    pos = len(prompt_ids)
    for i in range(n):
        nxt = next_token(logits, temperature, generator)
        yield nxt
        if i + 1 < n:
            logits = model.step([nxt], pos)
            pos += 1
