"""benchmarks/quant_table.py --dry-run on the demo model, peers left out: one ONNX recipe exported through the
Python API, its row read from the bundle's parity.json and manifest.json, both result files written."""

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
                        "--recipes", "onnx=int4,onnx=no-such-recipe", "--no-genai-check", "--out", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    record = json.loads((tmp_path / "quant_table.json").read_text())
    assert (tmp_path / "quant_table.md").read_text() == p.stdout
    assert record["parameters"] > 0 and record["context_length"] == 512
    assert record["prompts"] > 0 and record["heldout_tokens"] > 0
    (row,) = record["rows"]
    assert "error" not in row, row
    assert KEYS <= set(row), KEYS - set(row)
    assert (row["tool"], row["format"], row["recipe"]) == ("edgeslm", "onnx", "int4")
    for k in ("kl_mean", "top1_agreement", "logit_sqnr_db", "ppl_rise", "bits_per_weight", "export_s"):
        assert isinstance(row[k], (int, float)) and math.isfinite(row[k]), (k, row[k])
    assert row["bits_per_weight"] == round(row["bytes"] * 8 / record["parameters"], 3)
    assert any("no-such-recipe" in n and "skipped" in n for n in record["notes"])
    assert "| edgeslm | onnx | int4 |" in p.stdout
