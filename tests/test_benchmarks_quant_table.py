"""benchmarks/quant_table.py --dry-run on the demo model, peers left out: one ONNX recipe and ``auto`` exported
through the Python API, their rows read from the bundle's parity.json and manifest.json, both result files written."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"tool", "format", "recipe", "algorithm", "bytes", "mb", "bits_per_weight", "kl_mean", "top1_agreement",
        "logit_sqnr_db", "ppl_rise", "export_s", "runtime", "metrics_from"}


def test_dry_run_rows(tmp_path):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quant_table.py"), "--dry-run", "--no-peers",
                        "--recipes", "onnx=int4,onnx=auto,onnx=no-such-recipe", "--no-genai-check", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    record = json.loads((tmp_path / "quant_table.json").read_text())
    assert (tmp_path / "quant_table.md").read_text() == p.stdout
    assert record["parameters"] > 0 and record["context_length"] == 512
    assert record["prompts"] > 0 and record["heldout_tokens"] > 0
    row, auto = record["rows"]
    assert "error" not in row and "error" not in auto, record["rows"]
    # auto: the row names the recipe the search chose, and the notes list what it tried
    assert auto["recipe"].startswith("auto → ") and auto["search"].startswith("chose "), auto
    assert f"- edgeslm onnx {auto['recipe']}: {auto['search']}." in p.stdout
    assert KEYS <= set(row), KEYS - set(row)
    assert (row["tool"], row["format"], row["recipe"]) == ("edgeslm", "onnx", "int4")
    for k in ("kl_mean", "top1_agreement", "logit_sqnr_db", "ppl_rise", "bits_per_weight", "export_s"):
        assert isinstance(row[k], (int, float)) and math.isfinite(row[k]), (k, row[k])
    assert row["bits_per_weight"] == round(row["bytes"] * 8 / record["parameters"], 3)
    assert any("no-such-recipe" in n and "skipped" in n for n in record["notes"])
    assert "| edgeslm | onnx | int4 |" in p.stdout


def _module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("quant_table", ROOT / "benchmarks" / "quant_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _record(command, rows, ppl=20.0):
    return {"generated": "2026-01-01T00:00:00+00:00", "command": command, "model": {"name": "m", "gguf": "m.gguf"},
            "parameters": 1000, "context_length": 512, "prompts": 8, "heldout_tokens": 500,
            "reference_perplexity": ppl, "reference_perplexity_by_source": {"ref": ppl}, "seconds": 1.0,
            "rows": rows, "notes": ["edgeslm onnx recipe 'x': skipped"], "versions": {}}


def test_merged_runs_and_nearest_peer():
    qt = _module()
    ours = {"tool": "edgeslm", "format": "onnx", "recipe": "int4", "algorithm": "rtn", "bytes": 600, "kl_mean": 0.1,
            "top1_agreement": 0.9, "logit_sqnr_db": 10.0, "ppl_rise": 0.05, "export_s": 3.0}
    peer = {"tool": "genai-builder", "format": "onnx", "recipe": "int4", "peer": "builder-int4-rtn", "algorithm": "rtn",
            "bytes": 500, "kl_mean": 0.2, "top1_agreement": 0.8, "logit_sqnr_db": 8.0, "ppl_rise": 0.1, "export_s": 2.0}
    failed = {"tool": "optimum-executorch", "format": "executorch", "recipe": "8da4w", "peer": "o", "error": "pip: x"}
    rec = qt.merge_records([_record("a", [dict(ours, kl_mean=9.0)]), _record("b", [peer, failed]),
                            _record("c", [ours])])
    rows = {(r["tool"], r.get("peer")): r for r in rec["rows"]}
    assert rows[("edgeslm", None)]["kl_mean"] == 0.1  # the later run's row replaces the earlier one's
    assert rows[("edgeslm", None)]["vs_peer"] == {"peer": "builder-int4-rtn", "bytes_ratio": 1.2, "kl_ratio": 0.5,
                                                  "ppl_rise_minus_peer": -0.05}
    assert rows[("edgeslm", None)]["bits_per_weight"] == 4.8
    assert len(rec["runs"]) == 3 and len(rec["reference_perplexity_by_source"]) == 3
    md = qt.render(rec)
    assert "| edgeslm | onnx | int4 | rtn | 4.80 |" in md and "pip: x" in md
    bad = _record("d", [], ppl=20.0)
    bad["heldout_tokens"] = 7
    try:
        qt.merge_records([rec, bad])
    except SystemExit as e:
        assert "heldout_tokens" in str(e)
    else:
        raise AssertionError("runs on different held-out text were merged")


def test_merged_run_drops_the_notes_its_rows_answer():
    qt = _module()
    skipped = "edgeslm onnx recipe 'auto': not in edgeslm/quant/recipes.py RECIPES (or not offered ...): skipped"
    other = "edgeslm executorch recipe 'auto': not in edgeslm/quant/recipes.py RECIPES: skipped"
    rows = [{"tool": "edgeslm", "format": "onnx", "recipe": "auto → int4-asym"},
            {"tool": "genai-builder", "format": "executorch", "recipe": "auto"}]
    assert qt.current_notes([skipped, other, "edgeslm onnx int4: a fact"], rows) == [other, "edgeslm onnx int4: a fact"]
