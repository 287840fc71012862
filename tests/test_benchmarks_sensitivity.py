"""benchmarks/sensitivity.py: each group's recipe quantizes that group alone, as the whole recipe would; a dry run
on the demo model writes the table it prints."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

from edgeslm.model.build import meta_decoder
from edgeslm.model.checkpoint import load_checkpoint
from edgeslm.model.source import resolve
from edgeslm.quant.recipes import get_recipe, plan

ROOT = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("sensitivity", ROOT / "benchmarks" / "sensitivity.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_each_group_gets_the_whole_recipes_rules_and_nothing_else():
    meta = meta_decoder(load_checkpoint(resolve("demo")), 128)
    whole = get_recipe("8da4w-asym-emb4")
    full = plan(meta, whole)
    layers = meta.spec.num_layers
    got = dict(_module().groups(meta, whole, ("tables", "blocks", "kinds")))
    assert set(got) == {"embed_tokens", "lm_head", *(f"layers.{i}.*" for i in range(layers)),
                        *(f"*.{k}" for k in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"))}
    def scheme(r):
        return r.scheme, r.group_size, r.method

    covered = []
    for group, rec in got.items():
        part = plan(meta, rec)
        assert part and all(scheme(full[m]) == scheme(r) for m, r in part.items()), group  # as the whole recipe
        covered += [m for m in part] if not group.startswith("*.") else []
    assert sorted(covered) == sorted(full)  # tables and blocks: every quantized module exactly once
    assert set(plan(meta, got["*.down_proj"])) == {f"layers.{i}.mlp.down_proj" for i in range(layers)}


def test_dry_run_table(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sensitivity.py"), "--dry-run", "--groups",
                        "tables", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "sensitivity.md").read_text() == p.stdout
    record = json.loads((tmp_path / "sensitivity.json").read_text())
    rows = {r["group"]: r for r in record["rows"]}
    assert list(rows) == ["embed_tokens", "lm_head", "whole recipe"]
    for r in rows.values():
        assert all(isinstance(r[k], float) and math.isfinite(r[k]) for k in ("kl_mean", "logit_sqnr_db")), r
        assert r["kl_mean"] > 0 and r["bytes_saved"] > 0
    assert rows["whole recipe"]["modules"] > rows["lm_head"]["modules"] == 1
    assert rows["whole recipe"]["kl_mean"] > max(rows["embed_tokens"]["kl_mean"], rows["lm_head"]["kl_mean"])
    assert "| lm_head | 1 |" in p.stdout and "Sum of" not in p.stdout  # no blocks: no sum
