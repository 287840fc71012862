"""The app contract (docs/apps.md): chat templates reduced to pieces an app renders without Jinja, golden vectors
that equal what transformers, tokenizer.json and each runtime produce, one set of generation defaults."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from click.testing import CliRunner

from edgeslm.bundle.app import CHECK_CONVERSATIONS, derive_chat, messages
from edgeslm.bundle.golden import assemble, token_bytes
from edgeslm.cli import main
from edgeslm.testing.templates import MARKS_LAST, TEMPLATES

EXTRA = [  # conversations the derivation never saw
    ((("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d"), ("user", "e")), True),
    ((("user", "  spaced  "),), True),
    ((("system", "Be kind."), ("user", "x")), False),
]


@pytest.fixture
def tok(tokenizer):
    return copy.deepcopy(tokenizer)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_family_templates_reduce_to_pieces(tok, name):
    template, system = TEMPLATES[name]
    tok.chat_template = template
    doc, chat = derive_chat(tok, template)
    assert doc["kind"] == "simple", doc.get("reason")
    assert doc["system"]["supported"] is system and doc["jinja"] == template
    for conv, gen in [*CHECK_CONVERSATIONS, *EXTRA]:
        if conv[0][0] == "system" and not system:
            with pytest.raises(ValueError):
                chat.render(conv, gen)
            continue
        want = tok.apply_chat_template(messages(conv), tokenize=False, add_generation_prompt=gen)
        assert chat.render(conv, gen) == want, (name, conv)


def test_pieces_are_cut_between_tokens(tok):
    """Phi-3 ends a conversation with the eos token: the cut is <|end|>\\n + </s>, not mid-tag."""
    template, _ = TEMPLATES["phi3"]
    tok.chat_template = template
    doc, _ = derive_chat(tok, template)
    assert doc["end"] == tok.eos_token and doc["user"]["suffix"] == "<|end|>\n"


def test_template_not_of_that_form_is_kept_as_jinja_with_a_reason(tok):
    tok.chat_template = MARKS_LAST
    doc, chat = derive_chat(tok, MARKS_LAST)
    assert chat is None and doc["kind"] == "none" and doc["jinja"] == MARKS_LAST
    assert "not a fixed per-role prefix/suffix form" in doc["reason"]
    doc, _ = derive_chat(tok, None)
    assert doc == {"kind": "none", "reason": "the model has no chat template", "jinja": None}


def test_stream_assembler_vectors_hold_back_split_characters(tok):
    ids = tok("中文 🙂", add_special_tokens=False).input_ids
    raw = token_bytes(tok, ids)
    assert b"".join(bytes(b) for b in raw).decode() == "中文 🙂" == tok.decode(ids)
    chunks = assemble(raw)
    assert "".join(chunks) == "中文 🙂"
    assert "" in chunks  # the small tokenizer splits these characters across tokens
    assert all(c.isprintable() or c.isspace() for c in "".join(chunks))
    assert assemble([[0xC3], [0xA9, 0x21]]) == ["", "é!"]
    assert assemble([[0xF0], [0x9F, 0x99, 0x82]]) == ["", "🙂"]
    assert assemble([[0x61, 0xC3]]) == ["a\ufffd"]  # cut short at the end: flushed as U+FFFD


# chat_bundle: tests/conftest.py (a tiny llama with Llama 3's chat template, exported for android)


def test_manifest_tells_apps_what_to_load(chat_bundle):
    m = json.loads((chat_bundle / "manifest.json").read_text())
    assert m["schema_version"] == "1.3"
    loads = {a["load"]["runtime"]: a["load"] for a in m["artifacts"]}
    assert loads["executorch"]["path"].endswith(".pte") and loads["executorch"]["tokenizer"] == "tokenizer.json"
    assert (chat_bundle / loads["onnxruntime-genai"]["path"] / "genai_config.json").is_file()
    assert (chat_bundle / loads["onnxruntime-genai"]["tokenizer"]).is_file()
    app = m["app"]
    assert app["chat"]["kind"] == "simple" and app["chat"]["begin"].startswith("<s>")
    assert app["stop"] == {"eos_ids": [2], "strings": ["</s>"]}
    assert app["honoured"]["executorch"] == ["temperature", "max_new_tokens"]


def test_one_set_of_generation_defaults(chat_bundle):
    m = json.loads((chat_bundle / "manifest.json").read_text())
    onnx = next(a for a in m["artifacts"] if a["load"]["runtime"] == "onnxruntime-genai")
    search = json.loads((chat_bundle / onnx["load"]["path"] / "genai_config.json").read_text())["search"]
    gen = m["app"]["generation"]
    assert gen == m["generation"]
    for key in ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty"):
        assert search[key] == gen[key], key


def test_golden_vectors_equal_tokenizer_json_transformers_and_the_runtimes(chat_bundle):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    g = json.loads((chat_bundle / "golden.json").read_text())
    m = json.loads((chat_bundle / "manifest.json").read_text())
    raw = Tokenizer.from_file(str(chat_bundle / "tokenizer.json"))  # what the runtimes load
    hf = AutoTokenizer.from_pretrained(chat_bundle)
    for e in g["tokenizer"]["encode"]:
        assert raw.encode(e["text"], add_special_tokens=e["add_special_tokens"]).ids == e["ids"], e["text"]
    for d in g["tokenizer"]["decode"]:
        assert raw.decode(d["ids"], skip_special_tokens=True) == d["text"]
    assert any("" in s["chunks"] for s in g["tokenizer"]["stream"])  # a character split across tokens
    for s in g["tokenizer"]["stream"]:
        assert "".join(s["chunks"]) == s["text"] == raw.decode(s["ids"])
    from edgeslm.bundle.app import SimpleChat

    c = m["app"]["chat"]
    chat = SimpleChat(c["begin"], (c["system"]["prefix"], c["system"]["suffix"]) if c["system"]["supported"] else None,
                      {r: (c[r]["prefix"], c[r]["suffix"]) for r in ("user", "assistant")}, c["generation_prompt"],
                      c["end"], c["trim_content"])
    assert len(g["chat"]) == len(CHECK_CONVERSATIONS)
    for v in g["chat"]:
        conv = [(x["role"], x["content"]) for x in v["messages"]]
        assert hf.apply_chat_template(v["messages"], tokenize=False, add_generation_prompt=v["add_generation_prompt"]) \
            == v["prompt"] == chat.render(conv, v["add_generation_prompt"])
        assert raw.encode(v["prompt"], add_special_tokens=False).ids == v["ids"]
    for v in g["greedy"]:  # the runtime's own generation (edgeslm run) says the same
        res = CliRunner().invoke(main, ["run", str(chat_bundle), "--artifact", v["artifact"], "-p", v["prompt"],
                                        "-n", str(len(v["tokens"]))])
        assert res.exit_code == 0, res.output
        assert res.stdout.strip() == v["text"].strip(), v["artifact"]
        assert 0 <= v["must_match"] <= len(v["tokens"])
    assert {v["runtime"] for v in g["greedy"]} == {"executorch", "onnxruntime-genai"}


def test_golden_file_is_listed_and_verified(chat_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(chat_bundle, b)
    assert CliRunner().invoke(main, ["verify", str(b)]).exit_code == 0
    g = json.loads((b / "golden.json").read_text())
    g["chat"][0]["prompt"] += "x"
    (b / "golden.json").write_text(json.dumps(g))
    res = CliRunner().invoke(main, ["verify", str(b)])
    assert res.exit_code == 1 and "golden.json" in res.output


def test_golden_greedy_is_the_full_scans_choice(chat_bundle):
    """Each prompt is run only up to its first near-tie: the vector kept is still the one a full run of every
    prompt picks (the first most decisive prompt, its whole greedy run)."""
    from transformers import AutoTokenizer

    from edgeslm.backends import get_backend
    from edgeslm.bundle.golden import GREEDY_PROMPTS, GREEDY_TOKENS, greedy_here
    from edgeslm.records import artifact_name

    g = json.loads((chat_bundle / "golden.json").read_text())
    m = json.loads((chat_bundle / "manifest.json").read_text())
    tok = AutoTokenizer.from_pretrained(chat_bundle)
    eos = set(m["special_tokens"]["eos_ids"])
    for v in g["greedy"]:
        (art,) = [a for a in m["artifacts"] if artifact_name(a) == v["artifact"]]
        model = get_backend(art["backend"]).step_model(chat_bundle, art)
        runs = [(p, *greedy_here(model, tok(p).input_ids, GREEDY_TOKENS, eos)) for p in GREEDY_PROMPTS]
        best = max(runs, key=lambda r: r[2])  # the first of the most decisive
        assert (v["prompt"], v["tokens"], v["must_match"]) == best, v["artifact"]
        assert any(must < len(t) for _, t, must in runs)  # prompts with a near-tie were tried: the cut mattered
