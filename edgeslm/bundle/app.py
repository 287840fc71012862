"""What an app must not guess, written into the manifest's ``app`` section (docs/apps.md): whether prompts get a
BOS token, when to stop, how to render a chat without Jinja, and one set of generation defaults.

The chat template is reduced to fixed pieces (``begin``, per-role prefix and suffix, the generation prompt) by
rendering it with transformers on sentinel conversations and cutting at the sentinels; the pieces are then
checked by re-rendering test conversations both ways. A template that is not of that form (it rewrites content,
marks the last turn, counts turns...) is kept as Jinja only, with ``kind: "none"`` and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata

from edgeslm.backends import get_backend
from edgeslm.bundle.conversations import CHECK_CONVERSATIONS, messages
from edgeslm.bundle.golden import golden_vectors, write_golden
from edgeslm.filefacts import file_entry
from edgeslm.model.generation import generation_defaults

def _render(tokenizer, conv, add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages(conv), tokenize=False, add_generation_prompt=add_generation_prompt)


def _common_prefix(*texts: str) -> str:
    n = 0
    while all(n < len(t) for t in texts) and len({t[n] for t in texts}) == 1:
        n += 1
    return texts[0][:n]


@dataclass(frozen=True)
class SimpleChat:
    """A chat template as fixed pieces: see docs/apps.md for the rendering rule. Pieces are cut at characters,
    not tokens (a piece may end mid-tag); only their concatenations matter, and those are checked."""

    begin: str
    system: tuple[str, str] | None  # (prefix, suffix), None when the template refuses or drops system messages
    roles: dict  # role → (prefix, suffix) for user and assistant
    generation_prompt: str
    end: str  # appended instead of the generation prompt when none is wanted (Phi-3: the eos token)
    trim: bool = False  # the template strips whitespace around each message's content (Jinja ``| trim``)

    def render(self, conv, add_generation_prompt: bool) -> str:
        conv = list(conv)
        out = self.begin
        if conv and conv[0][0] == "system":
            if self.system is None:
                raise ValueError("system messages are not supported")
            out = self.system[0] + self._content(conv[0][1]) + self.system[1]
            conv = conv[1:]
        for role, content in conv:
            prefix, suffix = self.roles[role]
            out += prefix + self._content(content) + suffix
        return out + (self.generation_prompt if add_generation_prompt else self.end)

    def _content(self, text: str) -> str:
        return text.strip() if self.trim else text

    def to_json(self) -> dict:
        system = self.system or ("", "")
        return {"kind": "simple", "reason": None, "begin": self.begin,
                "system": {"supported": self.system is not None, "prefix": system[0], "suffix": system[1]},
                "user": dict(zip(("prefix", "suffix"), self.roles["user"])),
                "assistant": dict(zip(("prefix", "suffix"), self.roles["assistant"])),
                "generation_prompt": self.generation_prompt, "end": self.end, "trim_content": self.trim}


def _cut(text: str, *sentinels: str) -> list[str]:
    """``text`` split at each sentinel in order (ValueError if one is missing or out of order)."""
    parts = []
    for s in sentinels:
        before, found, text = text.partition(s)
        if not found:
            raise ValueError("the template drops or rewrites message content")
        parts.append(before)
    return [*parts, text]


def _token_prefix(tokenizer, texts: list[str]) -> str:
    """The longest common prefix of ``texts`` that ends at a token boundary in each of them, so pieces are cut
    between tokens (``<|end|>\n`` + ``<|endoftext|>``, not ``<|end|>\n<|`` + ``endoftext|>``)."""
    common = _common_prefix(*texts)
    cuts = None
    for t in texts:
        enc = tokenizer(t, add_special_tokens=False, return_offsets_mapping=True)
        ends = {0} | {e for _, e in enc["offset_mapping"] if e <= len(common)}
        cuts = ends if cuts is None else cuts & ends
    return common[:max(cuts)]


def _derive(tokenizer) -> SimpleChat:
    """Cut the template's renderings of sentinel conversations into pieces (ValueError when they do not cut).

    With US, END, GP, AP, AS, UP the user suffix, end, generation prompt, assistant prefix and suffix, and user
    prefix: [u1] renders head·u1·US·END, with the generation prompt head·u1·US·GP; [u1, a1] head·u1·US·AP·a1·AS·END;
    [u1, a1, u2] head·u1·US·AP·a1·AS·UP·u2·US·END; head = begin·UP."""
    u1, a1, u2, s1 = "\u2063U1\u2063", "\u2063A1\u2063", "\u2063U2\u2063", "\u2063S1\u2063"
    head, after1 = _cut(_render(tokenizer, [("user", u1)], False), u1)
    head_g, after1_gen = _cut(_render(tokenizer, [("user", u1)], True), u1)
    head2, between_ua, after_a = _cut(_render(tokenizer, [("user", u1), ("assistant", a1)], False), u1, a1)
    head3, between_ua3, between_au, after2 = _cut(
        _render(tokenizer, [("user", u1), ("assistant", a1), ("user", u2)], False), u1, a1, u2)
    if len({head, head_g, head2, head3}) > 1 or between_ua3 != between_ua or after2 != after1:
        raise ValueError("turns are not rendered the same way wherever they fall")
    user_suffix = _token_prefix(tokenizer, [after1, after1_gen, between_ua])
    end = after1[len(user_suffix):]
    if not after_a.endswith(end):
        raise ValueError("a conversation ending with the assistant ends differently")
    assistant_suffix = after_a[:len(after_a) - len(end)]
    if not between_au.startswith(assistant_suffix) or not head.endswith(between_au[len(assistant_suffix):]):
        raise ValueError("user turns do not start the same way each time")
    user_prefix = between_au[len(assistant_suffix):]
    system = None
    try:
        sys_prefix, before_user, _ = _cut(_render(tokenizer, [("system", s1), ("user", u1)], False), s1, u1)
        if before_user.endswith(user_prefix):
            system = (sys_prefix, before_user[:len(before_user) - len(user_prefix)])
    except Exception:  # templates raise (jinja's raise_exception) or drop system messages to refuse them
        pass
    padded = _render(tokenizer, [("user", f" {u1} ")], False)
    return SimpleChat(head[:len(head) - len(user_prefix)], system,
                      {"user": (user_prefix, user_suffix),
                       "assistant": (between_ua[len(user_suffix):], assistant_suffix)},
                      after1_gen[len(user_suffix):], end, trim=f" {u1} " not in padded)


def derive_chat(tokenizer, template: str | None) -> tuple[dict, SimpleChat | None]:
    """The manifest's ``app.chat`` (pieces, or ``kind: "none"`` with a reason) and the pieces, if any."""
    if template is None:
        return {"kind": "none", "reason": "the model has no chat template", "jinja": None}, None
    try:
        chat = _derive(tokenizer)
        for conv, gen in CHECK_CONVERSATIONS:
            if conv[0][0] == "system" and chat.system is None:
                continue
            if chat.render(conv, gen) != _render(tokenizer, conv, gen):
                raise ValueError(f"the pieces do not reproduce a {len(conv)}-message conversation")
    except Exception as e:  # noqa: BLE001 — any template transformers cannot render this way is "not simple"
        return {"kind": "none", "reason": f"the chat template is not a fixed per-role prefix/suffix form ({e}); "
                "apply the Jinja template", "jinja": template}, None
    return {**chat.to_json(), "jinja": template}, chat


def prompt_and_stop(tokenizer, bos_id, eos_ids) -> tuple[dict, dict]:
    """``app.prompt`` (does a raw prompt start with BOS, as the tokenizer's own encoding does) and ``app.stop``."""
    with_special = tokenizer("a", add_special_tokens=True).input_ids
    without = tokenizer("a", add_special_tokens=False).input_ids
    add_bos = bos_id is not None and with_special[:1] == [bos_id] and without[:1] != [bos_id]
    bos = tokenizer.convert_ids_to_tokens(bos_id) if bos_id is not None else None
    strings = [tokenizer.decode([e], skip_special_tokens=False) for e in eos_ids]
    return {"add_bos": add_bos, "bos_id": bos_id, "bos": bos}, {"eos_ids": list(eos_ids), "strings": strings}


def runtime_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def load_entries(artifacts: list) -> None:
    """Each artifact's ``load`` (what its runtime opens, which runtime and version, which tokenizer file), from
    its backend; in place, on the Artifact records."""
    for a in artifacts:
        backend = get_backend(a.backend)
        version = runtime_version(backend.app.package)
        # The oldest runtime known to load it is the one parity ran it with: formats only promise to be read by
        # the same or newer runtimes (ExecuTorch's .pte, onnxruntime-genai's genai_config).
        a.facts["load"] = {**backend.load_entry(a.to_json()), "runtime": backend.app.runtime,
                           "runtime_version": version, "min_runtime_version": version}


def app_section(ckpt, bundle, artifacts: list[dict], status=lambda msg: None) -> dict:
    """The manifest's ``app`` section, writing golden.json into ``bundle`` (its artifacts already there)."""
    tok, sp = ckpt.tokenizer, ckpt.special
    chat, _ = derive_chat(tok, ckpt.chat_template)
    prompt, stop = prompt_and_stop(tok, sp.bos_id, sp.eos_ids)
    doc = golden_vectors(tok, ckpt.chat_template is not None, bundle, artifacts, sp.eos_ids, prompt["add_bos"],
                         status)
    honoured = {}
    for a in artifacts:
        app = get_backend(a["backend"]).app
        honoured[app.runtime] = list(app.honoured)
    return {"prompt": prompt, "stop": stop, "chat": chat, "generation": generation_defaults(ckpt.generation),
            "honoured": honoured, "golden": file_entry(bundle, write_golden(bundle, doc))}
