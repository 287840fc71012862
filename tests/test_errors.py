"""Bad input: one clear line naming the problem and the fix, exit code 2, nothing half-written."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from edgeslm.cli import main


def run_cli(*args):
    return CliRunner().invoke(main, list(args))


def assert_error(res, *needles):
    assert res.exit_code == 2, res.output
    text = res.stderr
    errors = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, text  # one message, not a traceback
    assert "Traceback" not in text
    for n in needles:
        assert n in text, text


def test_unknown_model_id_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = run_cli("export", "nobody/no-such-model", "-o", str(tmp_path / "o"))
    assert_error(res, "nobody/no-such-model", "not in the local Hugging Face cache", "local model folder")
    assert not (tmp_path / "o").exists()


def test_invalid_model_argument(tmp_path):
    res = run_cli("export", "not a//valid id", "-o", str(tmp_path / "o"))
    assert_error(res, "neither a local folder nor a valid Hugging Face model id")


def test_missing_local_folder(tmp_path):
    res = run_cli("export", "./does-not-exist", "-o", str(tmp_path / "o"))
    assert_error(res, "does not exist")


def test_unsupported_architecture(copy_model, tmp_path):
    d = copy_model()
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    cfg["architectures"] = ["GPT2LMHeadModel"]
    (d / "config.json").write_text(json.dumps(cfg))
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "unsupported architecture 'gpt2'", "llama", "qwen3", "gemma3_text")


def test_missing_tokenizer(copy_model, tmp_path):
    d = copy_model()
    (d / "tokenizer.json").unlink()
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "missing tokenizer", "tokenizer.save_pretrained")


def test_truncated_safetensors(copy_model, tmp_path):
    d = copy_model()
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "model.safetensors is corrupt or truncated", "download it again")


def test_garbage_safetensors(copy_model, tmp_path):
    d = copy_model()
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "corrupt or truncated")


def test_pickle_checkpoint_refused(copy_model, tmp_path):
    d = copy_model()
    (d / "model.safetensors").rename(d / "pytorch_model.bin")
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "pickle", "safetensors")


def test_unknown_target_did_you_mean(tiny_dir, tmp_path):
    res = run_cli("export", str(tiny_dir("llama")), "--target", "andriod", "-o", str(tmp_path / "o"))
    assert_error(res, "unknown target 'andriod'", "did you mean 'android'")


def test_unknown_key_in_target_file(tiny_dir, tmp_path):
    from edgeslm.target import builtin_targets

    text = builtin_targets()["android"].read_text().replace("context_length", "context_lenght")
    t = tmp_path / "mine.toml"
    t.write_text(text)
    res = run_cli("export", str(tiny_dir("llama")), "--target", str(t), "-o", str(tmp_path / "o"))
    assert_error(res, "unknown key 'context_lenght'", "supported keys are", "context_length")


def test_unknown_key_in_gate(tiny_dir, tmp_path):
    t = tmp_path / "mine.toml"
    t.write_text('name="x"\nbackends=["executorch"]\nrecipe="fp32"\ncontext_length=64\n'
                 '[gates.fp32.lowering]\nmin_top_1 = 0.9\n')
    res = run_cli("export", str(tiny_dir("llama")), "--target", str(t), "-o", str(tmp_path / "o"))
    assert_error(res, "unknown key 'min_top_1'", "min_top1")


def test_unknown_recipe(tiny_dir, tmp_path):
    res = run_cli("export", str(tiny_dir("llama")), "--recipe", "int3", "-o", str(tmp_path / "o"))
    assert_error(res, "unknown recipe 'int3'", "8da4w")


def test_output_exists(tiny_dir, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    res = run_cli("export", str(tiny_dir("llama")), "-o", str(out))
    assert_error(res, "already exists", "--force")
    assert (out / "keep.txt").read_text() == "mine"


def test_bos_eos_mismatch(copy_model, tmp_path):
    d = copy_model()
    cfg = json.loads((d / "config.json").read_text())
    cfg["eos_token_id"] = 7
    (d / "config.json").write_text(json.dumps(cfg))
    gen = d / "generation_config.json"
    if gen.exists():
        g = json.loads(gen.read_text())
        g["eos_token_id"] = 7
        gen.write_text(json.dumps(g))
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "special tokens disagree", "eos")


def test_context_too_long(tiny_dir, tmp_path):
    res = run_cli("export", str(tiny_dir("llama")), "--context-length", "4096", "-o", str(tmp_path / "o"))
    assert_error(res, "exceeds the model's max_position_embeddings", "--context-length 256")


def test_no_half_written_bundle_on_failure(copy_model, tmp_path, monkeypatch):
    """An error in the middle of writing leaves neither the output nor a temp folder behind."""
    from edgeslm.pipeline import target_build

    def boom(*a, **k):
        raise RuntimeError("lowering exploded")

    monkeypatch.setattr(target_build, "write_parity", boom)
    res = run_cli("export", str(copy_model()), "--recipe", "fp32", "--context-length", "64",
                  "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "internal error" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama-copy"]


def test_recipe_the_backend_lacks(tiny_dir, tmp_path):
    res = run_cli("export", str(tiny_dir("llama")), "--target", "ios", "--backend", "coreml", "--recipe", "8da4w",
                  "-o", str(tmp_path / "o"))
    assert_error(res, "recipe '8da4w' is not available for the coreml backend", "fp16, int8, int4, int4-asym, palettize4")
    assert not (tmp_path / "o").exists()


# Accepted bad input: refused with one line before the heavy work (no "running the transformers reference").

def refused_early(res, *needles):
    assert_error(res, *needles)
    assert "running the transformers reference" not in res.stderr, res.stderr


def test_context_length_zero_or_negative_is_refused(tiny_dir, tmp_path):
    for value in ("0", "-5"):
        res = run_cli("export", str(tiny_dir("llama")), "--context-length", value, "-o", str(tmp_path / "o"))
        refused_early(res, f"--context-length must be a positive number of positions, not {value}")


def test_context_too_short_for_parity_is_refused_before_the_reference(tiny_dir, tmp_path):
    res = run_cli("export", str(tiny_dir("llama")), "--context-length", "10", "-o", str(tmp_path / "o"))
    refused_early(res, "parity needs", "but the context length is 10", "fix: pass --context-length")


@pytest.mark.parametrize("value,needle", [("0", "not 0"), ("-32", "not -32"), ("24", "not 24"),
                                          ("256", "not a multiple of group size 256")])
def test_bad_group_size_is_refused(tiny_dir, tmp_path, value, needle):
    res = run_cli("export", str(tiny_dir("llama")), "--group-size", value, "-o", str(tmp_path / "o"))
    refused_early(res, needle)


def test_unknown_device_in_target_file_is_refused_first(tiny_dir, tmp_path):
    from edgeslm.target import builtin_targets

    text = builtin_targets()["android"].read_text()
    t = tmp_path / "mine.toml"
    t.write_text(re.sub(r'(?m)^device = .*$', 'device = "pixel-99"', text))
    res = run_cli("export", str(tiny_dir("llama")), "--target", str(t), "-o", str(tmp_path / "o"))
    assert_error(res, "pixel-99")
    assert "resolving model" not in res.stderr


def test_weights_of_the_wrong_shape(copy_model, tmp_path):
    from safetensors.torch import load_file, save_file

    d = copy_model()
    w = load_file(d / "model.safetensors")
    name = next(k for k in w if k.endswith("mlp.up_proj.weight"))
    w[name] = w[name].reshape(w[name].shape[1], w[name].shape[0]).contiguous()  # same bytes, wrong shape
    save_file(w, d / "model.safetensors", metadata={"format": "pt"})
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    refused_early(res, name, "config.json implies", "different models")


@pytest.mark.parametrize("header", [b"[]", b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}',
                                    b'{"a": {"dtype": "F32", "shape": "big", "data_offsets": [0, 8]}}'])
def test_malformed_safetensors_header(copy_model, tmp_path, header):
    import struct

    d = copy_model()
    body = b"\0" * 8
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + body[:8 if b"[0, 8]" in header
                                                                                        else 4])
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "model.safetensors is corrupt or truncated")


def test_generation_config_that_is_not_json(copy_model, tmp_path):
    d = copy_model()
    (d / "generation_config.json").write_text("{temperature: 0.7,")
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "generation_config.json is not valid JSON", "delete it")
    (d / "generation_config.json").write_text("[1, 2]")
    res = run_cli("export", str(d), "-o", str(tmp_path / "o"))
    assert_error(res, "generation_config.json holds a JSON list")


@pytest.mark.parametrize("args,needle", [
    (["predict", "B", "--prompt-len", "-5", "--gen-len", "0"], "'--prompt-len': -5"),
    (["predict", "B", "--prompt-len", "-500"], "'--prompt-len': -500"),
    (["bench", "B", "--repeats", "0"], "'--repeats': 0"),
    (["run", "B", "-p", "hi", "-n", "0"], "'--max-new-tokens' / '-n': 0"),
    (["gate", "B", "--top1-drop", "-1"], "'--top1-drop'"),
])
def test_bad_numbers_in_options_are_usage_errors(args, needle):
    assert_error(run_cli(*args), needle, "fix: see `edgeslm")


def test_json_error_object_on_stdout(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    res = run_cli("export", "nobody/no-such-model", "-o", str(tmp_path / "o"), "--json")
    assert_error(res, "nobody/no-such-model")
    doc = json.loads(res.stdout)  # exactly one JSON object: nothing else on stdout
    assert doc["exit_code"] == 2 and "nobody/no-such-model" in doc["error"] and doc["fix"]
    res = run_cli("predict", "B", "--prompt-len", "-5", "--json")
    assert json.loads(res.stdout)["error"].startswith("Invalid value for '--prompt-len'")


@pytest.mark.parametrize("extra,needle", [
    (["-o", "/proc/edgeslm-out"], "cannot write output /proc/edgeslm-out: /proc is not writable"),
    (["--recipe", "=int4"], "--recipe '=int4' names no backend"),
    (["--recipe", "onnx="], "--recipe 'onnx=' names no recipe"),
    (["--revision", "main"], "--revision main applies to Hub ids, but"),
    (["--report-dir", "{out}/reports"], "output and --report-dir folder overlap"),
])
def test_requests_that_cannot_work_are_refused_first(tiny_dir, tmp_path, extra, needle):
    out = str(tmp_path / "o")
    args = ["export", str(tiny_dir("llama")), *[a.format(out=out) for a in extra]]
    res = run_cli(*args, *([] if "-o" in extra else ["-o", out]))
    refused_early(res, needle)
    assert not (tmp_path / "o").exists()



def test_config_transformers_rejects_is_one_line(copy_model, tmp_path):
    d = copy_model()
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_attention_heads"] = 5  # 64 is not a multiple of 5
    (d / "config.json").write_text(json.dumps(cfg))
    assert_error(run_cli("export", str(d), "-o", str(tmp_path / "o")), "cannot read", "config.json",
                 "not a multiple of the number of attention heads")


def test_tokenizer_larger_than_the_embedding(copy_model, tmp_path):
    from transformers import AutoTokenizer

    d = copy_model()
    tok = AutoTokenizer.from_pretrained(d)
    tok.add_tokens([f"added{i}" for i in range(40)])  # unused extras: harmless
    tok.add_tokens(["import"])  # in a parity prompt: its id would index past the embedding
    tok.save_pretrained(d)
    refused_early(run_cli("export", str(d), "-o", str(tmp_path / "o")), f"gives ids [{len(tok) - 1}]",
                  "vocab_size is 512", "resize_token_embeddings")
