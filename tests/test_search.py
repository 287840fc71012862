"""``--recipe auto``: the smallest recipe whose gated stages pass, candidates recorded, losers leave nothing."""

from __future__ import annotations

import json

import jsonschema
import pytest
from click.testing import CliRunner

from edgeslm.backends import get_backend
from edgeslm.cli import main
from edgeslm.json_schemas import load_schema
from edgeslm.model.build import meta_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.pipeline.search import predicted_bytes
from edgeslm.quant.recipes import get_recipe

LENIENT = "min_top1 = 0.5\nmax_kl_mean = 1.0\n"
STRICT = "max_kl_mean = 1e-9\n"  # no 4-bit recipe meets it: the candidate fails at its quantization stage


def _target(tmp_path, gates: dict[str, str]) -> str:
    body = "".join(f"[gates.{r}.{stage}]\n{bounds}\n" for (r, stage), bounds in gates.items())
    t = tmp_path / "t.toml"
    t.write_text('name = "t"\nbackends = ["executorch"]\nrecipe = "auto"\ncontext_length = 128\n'
                 "[gates.reauthoring]\nmax_abs_logit_diff = 1e-3\n" + body)
    return str(t)


def _gates(strict: set[str]) -> dict:
    recipes = get_backend("executorch").search
    return {(r, s): STRICT if (r in strict and s == "quantization") else LENIENT
            for r in recipes for s in ("quantization", "lowering")}


def test_ladder_is_ordered_by_predicted_bytes(tiny_dir):
    meta = meta_decoder(load_checkpoint(resolve(str(tiny_dir("llama")))), 128)
    sizes = {r: predicted_bytes(meta, get_recipe(r)) for r in get_backend("executorch").search}
    assert sizes["8da4w-asym-all4"] < sizes["8da4w-asym-emb4"] < sizes["8da4w"] == sizes["8da4w-hqq"] \
        < sizes["8da4w-asym"] < sizes["int8w"]
    assert predicted_bytes(meta, get_recipe("fp32")) > sizes["int8w"]


def _search(tiny_dir, tmp_path, strict: set[str], code: int):
    """Export the tiny llama with --recipe auto (the target's) under gates ``strict`` recipes cannot meet."""
    t = _target(tmp_path, _gates(strict))
    out = tmp_path / "b"
    res = CliRunner().invoke(main, ["export", str(tiny_dir("llama")), "--target", t, "-o", str(out), "--no-bench"])
    assert res.exit_code == code, res.output
    return out


def test_search_skips_failing_candidates_and_records_them(tiny_dir, tmp_path):
    out = _search(tiny_dir, tmp_path, {"8da4w-asym-all4", "8da4w-asym-emb4", "8da4w", "8da4w-hqq"}, 0)
    m = json.loads((out / "manifest.json").read_text())
    (art,) = m["artifacts"]
    assert art["recipe"] == "8da4w-asym" and art["file"] == "model-8da4w-asym.pte"
    assert any("asym" in q for q in art["quantization"])  # the rules it replays with --recipe 8da4w-asym
    record = art["search"]
    assert record["chosen"] == "8da4w-asym"
    tried = [c["recipe"] for c in record["candidates"]]
    assert tried == ["8da4w-asym-all4", "8da4w-asym-emb4", "8da4w", "8da4w-hqq", "8da4w-asym"]  # not int8w: larger
    for loser in record["candidates"][:4]:
        assert loser["stages"]["quantization"]["status"] == "failed" and "lowering" not in loser["stages"]
        assert loser["bytes"] is None and "quantization" in loser["outcome"]
    assert sorted(p.name for p in out.glob("*.pte")) == ["model-8da4w-asym.pte"]  # losers left nothing
    doc = json.loads((out / "parity.json").read_text())
    jsonschema.validate(doc, load_schema("parity"))
    assert doc["search"]["model-8da4w-asym.pte"]["chosen"] == "8da4w-asym"
    assert all(c["artifact"] == "model-8da4w-asym.pte" for c in doc["checks"] if c["artifact"])
    assert "Recipe search: model-8da4w-asym.pte" in (out / "parity.md").read_text()


def test_search_with_no_passing_candidate_fails_with_the_largest(tiny_dir, tmp_path):
    out = _search(tiny_dir, tmp_path, set(get_backend("executorch").search), 1)
    m = json.loads((out / "manifest.json").read_text())
    (art,) = m["artifacts"]
    assert art["recipe"] == "int8w" and art["parity"] == "failed"
    assert [c["recipe"] for c in art["search"]["candidates"]] == ["8da4w-asym-all4", "8da4w-asym-emb4", "8da4w",
                                                                  "8da4w-hqq", "8da4w-asym", "int8w"]


@pytest.mark.parametrize("args, needle", [
    (["-b", "onnx-qnn", "--recipe", "auto"], "recipe 'auto' is not available"),
])
def test_auto_is_refused_where_a_backend_has_no_search(args, needle, tmp_path):
    res = CliRunner().invoke(main, ["export", "./no-such-model", "-t", "android", *args, "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and needle in res.stderr, res.output
