"""LoRA adapters at export (issue 17): a locally trained adapter changes the demo model's greedy output, its
artifact in the ExecuTorch runtime reproduces the adapted output, a zero adapter leaves the model unchanged, two
adapters give one bundle with one artifact each and the shared tokenizer, and bad adapters are refused with exit 2
before any heavy work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.model.source import DEMO_DIR
from edgeslm.testing.lora import random_lora, topic_text, train_lora, zero_lora

PROMPT = "Format strings contain replacement fields"


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    trained = train_lora(DEMO_DIR, root / "formats", topic_text("formatstrings", "string-methods"), steps=60,
                         lr=2e-3)
    assert trained["last_loss"] < trained["first_loss"] - 0.3, trained  # it learned something
    zero_lora(DEMO_DIR, root / "zero")
    return root


@pytest.fixture(scope="module")
def lora_bundle(adapters, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora-bundle") / "b"
    res = CliRunner().invoke(main, ["export", "demo", "--target", "android", "--backend", "executorch", "--recipe",
                                    "int8w", "--adapter", str(adapters / "formats"), "--adapter",
                                    str(adapters / "zero"), "-o", str(out), "--no-bench", "--context-length", "128"])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "manifest.json").read_text()), json.loads((out / "parity.json").read_text())


def _greedy_hf(model, ids, n=16):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, min_new_tokens=n)
    return out[0, len(ids):].tolist()


def _greedy_pte(path, ids, n=16):
    from edgeslm.backends.executorch.runtime import PteModel
    from edgeslm.parity.models import RuntimeStepModel

    return RuntimeStepModel(PteModel(path)).greedy(ids, n)


def test_adapter_changes_output_and_the_artifact_reproduces_it(lora_bundle, adapters):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, m, parity = lora_bundle
    ids = AutoTokenizer.from_pretrained(DEMO_DIR)(PROMPT).input_ids
    base = AutoModelForCausalLM.from_pretrained(DEMO_DIR, dtype=torch.float32).eval()
    base_greedy = _greedy_hf(base, ids)
    adapted = PeftModel.from_pretrained(base, str(adapters / "formats")).eval()
    adapted_greedy = _greedy_hf(adapted, ids)
    assert adapted_greedy != base_greedy  # the adapter changes what the model says
    arts = {a["adapter"]: a for a in m["artifacts"]}
    assert set(arts) == {"formats", "zero"}
    assert _greedy_pte(out / arts["formats"]["file"], ids)[:8] == adapted_greedy[:8]
    assert _greedy_pte(out / arts["zero"]["file"], ids)[:8] == base_greedy[:8]  # a zero adapter changes nothing
    stages = [c for c in parity["checks"] if c["stage"] == "adapter"]
    assert len(stages) == 2 and all(c["status"] == "passed" for c in stages)
    assert all(c["metrics"]["max_abs_logit_diff"] < 1e-3 for c in stages)  # PEFT unmerged vs edgeslm merged


def test_one_bundle_two_adapters_manifest(lora_bundle, adapters):
    out, m, _ = lora_bundle
    assert sorted(a["file"] for a in m["artifacts"]) == ["model-int8w-formats.pte", "model-int8w-zero.pte"]
    assert [f["file"] for f in m["tokenizer"]["files"]]  # one shared tokenizer at the bundle root
    rec = {a["name"]: a for a in m["adapters"]}
    assert rec["formats"]["rank"] == 8 and rec["formats"]["alpha"] == 16 and rec["formats"]["scale"] == 2.0
    assert rec["formats"]["artifacts"] == ["model-int8w-formats.pte"]
    assert len(rec["formats"]["sha256"]) == 64 and "q_proj" in rec["formats"]["target_modules"]
    assert CliRunner().invoke(main, ["verify", str(out)]).exit_code == 0


def test_zero_adapter_merges_to_the_base_weights(adapters):
    from edgeslm.model.adapter import MergedWeights, load_adapter
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    ckpt = load_checkpoint(resolve("demo"))
    a = load_adapter(str(adapters / "zero"), ckpt)
    merged = MergedWeights(ckpt.weights, a)
    assert a.pairs and all(torch.equal(merged[k], ckpt.weights[k].float()) for k in a.pairs)
    r = load_adapter(str(random_lora(DEMO_DIR, adapters / "random", seed=1)), ckpt)
    k = next(iter(r.pairs))
    assert not torch.equal(MergedWeights(ckpt.weights, r)[k], ckpt.weights[k].float())


def test_hub_id_adapter_resolves_through_the_hf_cache(adapters, tmp_path, monkeypatch):
    """``--adapter org/name`` is read from huggingface_hub's cache (offline), its commit recorded; an id that is
    not cached is one clear error naming the adapter and the download command."""
    from edgeslm.errors import InputError
    from edgeslm.model.adapter import load_adapter
    from edgeslm.model.checkpoint import load_checkpoint
    from edgeslm.model.source import resolve

    commit = "c" * 40
    repo = tmp_path / "hub" / "models--org--formats-lora"
    shutil.copytree(adapters / "formats", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt = load_checkpoint(resolve("demo"))
    a = load_adapter("org/formats-lora", ckpt)
    rec = a.record()
    assert (rec["id"], rec["source"], rec["revision"], rec["commit"]) == ("org/formats-lora", "hub", "main", commit)
    assert rec["name"] == "formats-lora" and rec["rank"] == 8
    with pytest.raises(InputError) as e:
        load_adapter("org/missing-lora", ckpt)
    assert "adapter org/missing-lora@main is not in the local Hugging Face cache" in str(e.value.problem)
    assert "huggingface-cli download org/missing-lora" in str(e.value.hint)


def _broken(adapters: Path, tmp: Path, how: str) -> Path:
    d = tmp / how
    shutil.copytree(adapters / "zero", d)
    cfg = json.loads((d / "adapter_config.json").read_text())
    if how == "no-rank":
        del cfg["r"]
    elif how == "dora":
        cfg["use_dora"] = True
    elif how == "pickle":
        (d / "adapter_model.safetensors").rename(d / "adapter_model.bin")
    elif how in ("other-shape", "unknown-module"):
        from safetensors.torch import load_file, save_file

        w = load_file(d / "adapter_model.safetensors")
        if how == "other-shape":
            w = {k: torch.zeros(v.shape[0], v.shape[1] + 8) if "lora_A" in k else v for k, v in w.items()}
        else:
            w = {k.replace("q_proj", "qkv_proj"): v for k, v in w.items()}
        save_file(w, d / "adapter_model.safetensors")
    (d / "adapter_config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize("how, needle", [
    ("no-rank", "no valid r"), ("dora", "use_dora"), ("pickle", "adapter_model.safetensors"),
    ("other-shape", "do not fit the base weight"), ("unknown-module", "does not have"),
])
def test_bad_adapters_are_refused_before_work(adapters, tmp_path, how, needle):
    bad = _broken(adapters, tmp_path, how)
    out = tmp_path / "out"
    res = CliRunner().invoke(main, ["export", "demo", "--adapter", str(bad), "-o", str(out), "--no-bench"])
    assert res.exit_code == 2, res.output
    assert needle in res.output and "fix:" in res.output, res.output
    assert "running the transformers reference" not in res.output  # refused before the heavy work
    assert not out.exists()
