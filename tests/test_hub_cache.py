"""Hub ids resolve through huggingface_hub's local cache, offline, with --revision honoured."""

from __future__ import annotations

import shutil

import pytest

from edgeslm.errors import InputError
from edgeslm.model.source import resolve

HASH_MAIN = "a" * 40
HASH_V1 = "b" * 40


@pytest.fixture
def hf_cache(tmp_path, monkeypatch, tiny_dir):
    """A cache laid out as huggingface_hub writes it: refs/<rev> → snapshots/<commit>/files."""
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    for ref, commit, family in (("main", HASH_MAIN, "llama"), ("v1", HASH_V1, "qwen2")):
        shutil.copytree(tiny_dir(family), repo / "snapshots" / commit)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_resolves_cached_hub_id_offline(hf_cache):
    src = resolve("org/tiny")
    assert src.kind == "hub" and src.commit == HASH_MAIN and src.revision == "main"
    assert (src.path / "config.json").is_file()


def test_revision_is_honoured(hf_cache):
    src = resolve("org/tiny", revision="v1")
    assert src.commit == HASH_V1
    assert '"qwen2"' in (src.path / "config.json").read_text()


def test_uncached_revision_names_the_fix(hf_cache):
    with pytest.raises(InputError) as e:
        resolve("org/tiny", revision="v2")
    assert "org/tiny@v2 is not in the local Hugging Face cache" in str(e.value)
    assert "huggingface-cli download org/tiny --revision v2" in str(e.value)


def test_export_records_hub_provenance(hf_cache, tmp_path):
    import json

    from edgeslm.pipeline import export

    export("org/tiny", "android", tmp_path / "b", recipe="fp32", revision="v1", context_length=64)
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert m["model"]["id"] == "org/tiny" and m["model"]["commit"] == HASH_V1 and m["model"]["family"] == "qwen2"
    assert m["provenance"]["executorch"] and m["provenance"]["torch"] and m["provenance"]["transformers"]
