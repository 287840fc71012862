"""Export options: how ``--recipe`` (bare or BACKEND=RECIPE, repeatable) maps onto the backends being built, and
the context length (the target's, capped at the model's max_position_embeddings; an explicit one above it is
refused)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgeslm.cli import main
from edgeslm.errors import InputError
from edgeslm.pipeline.plan import plan_target
from edgeslm.target import load_target


def plan(target, recipe, backends=None):
    said = []
    pairs = plan_target(load_target(target), backends, recipe, None, said.append)
    return pairs, said


def test_bare_recipe_applies_to_the_backends_that_support_it():
    pairs, said = plan("android", ("8da4w",))
    assert pairs == [("executorch", "8da4w"), ("onnx", "int4-asym")]
    assert len(said) == 1 and "applies to executorch" in said[0] and "onnx keeps the target's int4-asym" in said[0]
    # a plain string (Python callers) works the same way
    assert plan("android", "8da4w")[0] == pairs


def test_bare_recipe_alias_is_resolved_first():
    pairs, said = plan("ios", ("int4-block32",))
    assert pairs == [("coreml", "int4"), ("executorch", "8da4w-asym")]  # int4 (an alias) applies to Core ML
    assert "executorch keeps the target's 8da4w-asym" in said[0]


def test_bare_recipe_every_backend_supports_says_nothing():
    assert plan("android", "fp32") == ([("executorch", "fp32"), ("onnx", "fp32")], [])
    assert plan("android", None) == ([("executorch", "8da4w-asym"), ("onnx", "int4-asym")], [])


def test_backend_recipe_sets_one_backend():
    assert plan("android", ("onnx=int8",)) == ([("executorch", "8da4w-asym"), ("onnx", "int8")], [])
    assert plan("android", {"onnx": "int8"})[0] == [("executorch", "8da4w-asym"), ("onnx", "int8")]
    # BACKEND=RECIPE wins over a bare recipe for that backend; the bare one still applies to the others
    assert plan("android", ["fp32", "onnx=int8"]) == ([("executorch", "fp32"), ("onnx", "int8")], [])
    assert plan("ios", ("coreml=int4-block32",))[0] == [("coreml", "int4"), ("executorch", "8da4w-asym")]


@pytest.mark.parametrize("recipe,backends,needles", [
    # a bare recipe no chosen backend supports: the backends and their recipes are listed
    (("palettize4",), None, ["recipe 'palettize4' is not available for the executorch or onnx backends",
                             "executorch supports fp32, 8da4w, 8da4w-asym, 8da4w-asym-emb4, 8da4w-asym-all4, "
                             "8da4w-hqq, int8w, auto; onnx supports fp32, fp16, int4, int4-asym"]),
    (("8da4w",), ("onnx",), ["recipe '8da4w' is not available for the onnx backend", "onnx supports"]),
    # BACKEND= naming a backend not being built, or a recipe that backend lacks
    (("coreml=int4",), None, ["the coreml backend is not being built", "executorch supports", "onnx supports"]),
    (("onnx=8da4w",), None, ["recipe '8da4w' is not available for the onnx backend", "fp32, fp16, int4, int4-asym, int4-asym-all4, int8"]),
    (("onnx=int3",), None, ["unknown recipe 'int3'"]),
    # two bare recipes for one backend, or two recipes for one backend= : ambiguous
    (("fp32", "int8"), None, ["'fp32' and 'int8' both apply to the onnx backend", "--recipe onnx=RECIPE"]),
    (("onnx=int8", "onnx=int4"), None, ["two recipes for the onnx backend"]),
])
def test_recipe_errors(recipe, backends, needles):
    with pytest.raises(InputError) as e:
        plan("android", recipe, backends)
    for n in needles:
        assert n in str(e.value), str(e.value)


def test_cli_recipe_repeatable_and_errors_before_loading(tmp_path):
    res = CliRunner().invoke(main, ["export", "./nowhere", "--recipe", "8da4w", "--recipe", "coreml=int4",
                                    "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "the coreml backend is not being built" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists()


def _short_model(copy_model, limit):
    d = copy_model()
    cfg = json.loads((d / "config.json").read_text())
    cfg["max_position_embeddings"] = limit
    (d / "config.json").write_text(json.dumps(cfg))
    return d


def test_target_context_length_capped_at_the_models_limit(copy_model, tmp_path):
    """android asks for 512 positions; a model made for 128 gets 128, with a notice, recorded in the manifest
    and baked into the artifact."""
    model = _short_model(copy_model, 128)
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(model), "--target", "android", "--backend", "executorch",
                                    "--no-bench", "-o", str(out)])
    assert res.exit_code == 0, res.output
    said = " ".join(res.stderr.split())  # rich wraps status lines
    assert "context length 512 is above the model's max_position_embeddings (128); using 128" in said
    m = json.loads((out / "manifest.json").read_text())
    assert m["context_length"] == 128
    assert m["context_length_from"] == {"source": "model", "target": 512, "max_position_embeddings": 128}
    (art,) = json.loads(CliRunner().invoke(main, ["inspect", str(out), "--json"]).stdout)
    assert art["runner_metadata"]["get_max_seq_len"] == 128  # baked into the .pte for the LLM runner


def test_explicit_context_length_above_the_models_limit_is_refused(copy_model, tmp_path):
    model = _short_model(copy_model, 128)
    res = CliRunner().invoke(main, ["export", str(model), "--target", "android", "--context-length", "200",
                                    "--no-bench", "-o", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "--context-length 200 exceeds the model's max_position_embeddings (128)" in res.stderr
    assert "fix: pass --context-length 128 or less" in res.stderr
    assert not (tmp_path / "o").exists()
