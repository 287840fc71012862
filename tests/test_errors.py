"""Bad input: one clear line naming the problem and the fix, exit code 2, nothing half-written."""

from __future__ import annotations

import json

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
    import edgeslm.pipeline as pipeline

    def boom(*a, **k):
        raise RuntimeError("lowering exploded")

    monkeypatch.setattr(pipeline, "write_parity", boom)
    res = run_cli("export", str(copy_model()), "--recipe", "fp32", "--context-length", "64",
                  "-o", str(tmp_path / "o"))
    assert res.exit_code == 2 and "internal error" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["llama-copy"]


def test_recipe_the_backend_lacks(tiny_dir, tmp_path):
    res = run_cli("export", str(tiny_dir("llama")), "--target", "ios", "--backend", "coreml", "--recipe", "8da4w",
                  "-o", str(tmp_path / "o"))
    assert_error(res, "recipe '8da4w' is not available for the coreml backend", "fp16, int8, int4, palettize4")
    assert not (tmp_path / "o").exists()
